"""``sci-edge decode``: ``.sci`` -> features, images or a class; the command lives in
:mod:`.codec`."""
from .codec import register_decode as register

__all__ = ["register"]
