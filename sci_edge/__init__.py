"""sci_edge: spike coding for intelligence on the edge.

Subpackages: sim (IF camera simulator), io (spike files and sources), recon
(TFP/TFI), data (data sets), edge (torch-free end-side kernels), models (torch:
the end side's FEM and the cloud side's analysis and heads), train, eval,
bench, profiling, cli. ``stream.FeatureStream`` is the seam between end side
and cloud side.
"""
__version__ = "0.1.0"


def load_pretrained(task: str = "recon", **kwargs):
    """The shipped SCI model for ``task`` ("recon" or "cls"); needs torch."""
    from .models.pretrained import load_pretrained as _load

    return _load(task, **kwargs)
