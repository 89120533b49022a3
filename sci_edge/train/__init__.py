"""Training (stages I and II), configs and checkpoints. Needs the ``train`` extra."""
from .config import TrainConfig, load_config
from .loop import laplacian, laplacian_norms, train

__all__ = ["TrainConfig", "laplacian", "laplacian_norms", "load_config", "train"]
