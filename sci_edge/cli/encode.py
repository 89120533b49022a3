"""``sci-edge encode``: spikes -> ``.sci``; the command lives in :mod:`.codec`."""
from .codec import register_encode as register

__all__ = ["register"]
