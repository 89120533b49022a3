"""End-side models: what runs on the camera's device."""
from .fem import FEM, FEMConfig, LightReconHead

__all__ = ["FEM", "FEMConfig", "LightReconHead"]
