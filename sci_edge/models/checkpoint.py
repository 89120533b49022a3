"""Checkpoints: model weights plus the config and code version that made them.

Saved with torch.save as plain dicts of tensors and Python scalars, loaded
with ``weights_only=True`` (no pickled code is ever executed). Here, not under
``sci_edge.train``, so that loading a model does not import the training stack."""
from __future__ import annotations

import subprocess
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..io._atomic import atomic_path

FORMAT = "sci_edge-checkpoint-v1"
KINDS = ("fem", "sci", "codec")


def code_version() -> dict:
    """Package version, git commit (where this is a checkout) and torch version."""
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
                    optimizer: dict | None = None, metrics: dict | None = None,
                    elapsed_s: float | None = None) -> Path:
    """Write a checkpoint atomically. ``kind`` is 'fem' (stage 1) or 'sci' (stage 2);
    ``elapsed_s``: training time so far, so that a resumed run keeps its clock."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": FORMAT, "kind": kind, "model_config": model_config,
           "state": {k: v.detach().cpu() for k, v in state.items()},
           "train_config": train_config or {}, "step": int(step),
           "metrics": metrics or {}, "code_version": code_version()}
    if optimizer is not None:
        doc["optimizer"] = optimizer
    if elapsed_s is not None:
        doc["elapsed_s"] = float(elapsed_s)
    with atomic_path(path) as tmp:
        torch.save(doc, tmp)
    return path


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """A checkpoint's dict; a missing, unreadable or foreign file is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "checkpoint not found")
    try:
        doc = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(path, f"not a readable checkpoint ({type(exc).__name__}: "
                                    f"{first[:200]})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise CheckpointError(path, f"not a sci_edge checkpoint (format {found})")
    for key in ("kind", "model_config", "state"):
        if key not in doc:
            raise CheckpointError(path, f"checkpoint lacks {key!r}")
    if not isinstance(doc["model_config"], dict) or not isinstance(doc["state"], dict):
        raise CheckpointError(path, "model_config and state must be tables")
    return doc


def referenced_state(path: str | Path, ref) -> dict:
    """The state of the weights file that the file at ``path`` names in its
    ``sci_from`` (``{"file": name, "sha256": hex}``): looked for beside ``path``,
    then among the shipped weights, and loaded only if its sha256 matches."""
    import hashlib

    if not isinstance(ref, dict) or not isinstance(ref.get("file"), str) \
            or not isinstance(ref.get("sha256"), str):
        raise CheckpointError(path, "sci_from must name a file and its sha256")
    from .pretrained import WEIGHTS_DIR

    for where in (Path(path).resolve().parent / ref["file"], WEIGHTS_DIR / ref["file"]):
        if where.is_file():
            digest = hashlib.sha256(where.read_bytes()).hexdigest()
            if digest != ref["sha256"]:
                raise CheckpointError(where, f"sha256 {digest[:12]}.. is not the "
                                             f"{ref['sha256'][:12]}.. that {path} was made with")
            return load_checkpoint(where)["state"]
    raise CheckpointError(path, f"it builds on {ref['file']}, which is not beside it "
                                "nor among the shipped weights")
