"""Evaluation of the learned models beside the classic baselines (``sci-edge eval``)."""
from .cls import evaluate_cls
from .recon import evaluate_recon

__all__ = ["evaluate_cls", "evaluate_recon"]
