"""Checkpoints: model weights plus the config and code version that made them.

Saved with torch.save as plain dicts of tensors and Python scalars, loaded
with ``weights_only=True`` (no pickled code is ever executed)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import torch

from ..errors import DataError
from ..io._atomic import atomic_path

FORMAT = "sci_edge-checkpoint-v1"


def code_version() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:
        pkg = version("sci_edge")
    except PackageNotFoundError:
        pkg = "unknown"
    commit = None
    try:
        res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).parent, timeout=10, check=False)
        if res.returncode == 0:
            commit = res.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {"package": pkg, "commit": commit, "torch": str(torch.__version__)}


def save_checkpoint(path: str | Path, *, kind: str, model_config: dict, state: dict,
                    train_config: dict | None = None, step: int = 0,
                    optimizer: dict | None = None, metrics: dict | None = None) -> Path:
    """Write a checkpoint atomically. ``kind`` is 'fem' (stage 1) or 'sci' (stage 2)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": FORMAT, "kind": kind, "model_config": model_config,
           "state": {k: v.detach().cpu() for k, v in state.items()},
           "train_config": train_config or {}, "step": int(step),
           "metrics": metrics or {}, "code_version": code_version()}
    if optimizer is not None:
        doc["optimizer"] = optimizer
    with atomic_path(path) as tmp:
        torch.save(doc, tmp)
    return path


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:
        doc = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataError(f"{path}: not a readable checkpoint ({type(exc).__name__}: "
                        f"{first[:200]})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DataError(f"{path}: not a sci_edge checkpoint (format "
                        f"{doc.get('format') if isinstance(doc, dict) else type(doc).__name__})")
    for key in ("kind", "model_config", "state"):
        if key not in doc:
            raise DataError(f"{path}: checkpoint lacks {key!r}")
    return doc
