"""Training (stages I and II), configs and weight export. Needs the ``train`` extra."""
from .config import TrainConfig, load_config
from .export import export_weights
from .loop import laplacian, laplacian_norms, train

__all__ = ["TrainConfig", "export_weights", "laplacian", "laplacian_norms", "load_config",
           "train"]
