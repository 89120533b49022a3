"""sci_edge: spike coding for intelligence on the edge.

Subpackages: sim (IF camera simulator), io (spike files), recon (TFP/TFI and
the learned reconstruction), data (data sets), edge (torch-free end-side
kernels), models (torch: FEM and cloud-side analysis), train, eval, bench, cli.
"""
__version__ = "0.1.0"


def load_pretrained(task: str = "recon", **kwargs):
    """The shipped SCI model for ``task`` ("recon" or "cls"); needs torch."""
    from .models.pretrained import load_pretrained as _load

    return _load(task, **kwargs)
