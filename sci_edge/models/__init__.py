"""PyTorch models: end side (FEM) and cloud side (long-term analysis, heads).

Needs the ``train`` extra (torch). The edge runtime in :mod:`sci_edge.edge`
does not import this package."""
from .end.extract import FeatureExtractor
from .end.fem import FEM, FEMConfig, LightReconHead
from .sci import SCIConfig, SCIModel, feature_times, fem_features, gather_windows

__all__ = ["FEM", "FEMConfig", "FeatureExtractor", "LightReconHead", "SCIConfig", "SCIModel", "feature_times",
           "fem_features", "gather_windows"]
