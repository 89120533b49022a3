"""Intensity reconstruction from spikes: classic TFP/TFI (learned ones come later)."""
from .classic import (spanning_spikes, spanning_spikes_reference, tfi, tfi_many, tfp, tfp_many)

METHODS = ("tfp", "tfi")

__all__ = ["METHODS", "spanning_spikes", "spanning_spikes_reference", "tfi", "tfi_many", "tfp",
           "tfp_many"]
