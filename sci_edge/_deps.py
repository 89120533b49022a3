"""Optional dependencies and the extra that brings each (pyproject's optional-dependencies)."""
from __future__ import annotations

import importlib
import importlib.util

from .errors import MissingDependencyError

# import name -> extra of sci_edge that installs it (None: a system tool or no extra)
EXTRAS = {
    "torch": "train",
    "fvcore": "train",
    "onnxruntime": "edge",
    "onnx": "export",
    "skimage": "data",
    "scipy": "eval",
    "matplotlib": "eval",
    "constriction": "bench",
    "pytest": "dev",
}


def extra_for(module: str | None) -> str | None:
    """The extra that installs ``module`` (its top-level package), or None."""
    if not module:
        return None
    return EXTRAS.get(module.split(".")[0])


def require(module: str, purpose: str = ""):
    """Import ``module`` or raise MissingDependencyError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise   # the module is there but something it needs is not: a real bug
        raise MissingDependencyError(top, extra_for(top), purpose) from exc


def available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
