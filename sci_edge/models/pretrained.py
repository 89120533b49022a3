"""Shipped weights: sci_edge/weights/sci_<task>.pt, made by the commands in README.

``load_pretrained("recon")`` / ``load_pretrained("cls")`` return an SCIModel in
eval mode. Checkpoints are loaded with ``weights_only=True``.

A weights file may build on another by reference (``sci_from``: its file name
and sha256) and carry only its own tensors: ``sci_recon_reach.pt`` is the
long-reach propagation over the stream, trained on top of ``sci_recon.pt``
(the windowed model, which the codec's file names in the same way);
``load_pretrained("recon", propagation=True)`` or ``load_model`` of that file
loads both. ``sci_recon_rate.pt`` is the long-reach rate integration of the
stream's spike counts on top of the same windowed model; ``load_pretrained("recon")``
loads it where it is shipped (``rate=False``: the windowed model alone)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CheckpointError, DataError
from .checkpoint import load_checkpoint
from .sci import SCIConfig, SCIModel

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
SHIPPED = {"recon": "sci_recon.pt", "cls": "sci_cls.pt"}
# the recon model's long-reach propagation, on top of SHIPPED["recon"]
REACH_ADDON = "sci_recon_reach.pt"
# the recon model's long-reach rate integration, on top of SHIPPED["recon"]
RATE_ADDON = "sci_recon_rate.pt"


def pretrained_path(task: str) -> Path:
    if task not in SHIPPED:
        raise DataError(f"no shipped weights for task {task!r}; choose from {sorted(SHIPPED)}")
    return WEIGHTS_DIR / SHIPPED[task]


def load_model(path: str | Path, *, device: str = "cpu") -> SCIModel:
    """An SCIModel from a stage-II checkpoint (or shipped weights file)."""
    doc = load_checkpoint(path, map_location=device)
    if doc["kind"] != "sci":
        raise CheckpointError(path, f"a {doc['kind']!r} checkpoint, not a full SCI model "
                                    "(stage-1 checkpoints hold only the FEM)")
    config_doc, state = dict(doc["model_config"]), dict(doc["state"])
    if "sci_from" in config_doc:       # builds on another weights file, by reference
        from .checkpoint import referenced_state

        state = {**referenced_state(path, config_doc.pop("sci_from")), **state}
    try:
        config = SCIConfig.from_dict(config_doc)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(path, f"model_config: {exc}") from exc
    try:
        model = SCIModel(config)
        model.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(path, f"weights do not fit the model they describe "
                                    f"({first})") from exc
    # Channels-last weights make the convolutions run on, and pass on, NHWC
    # activations, the layout oneDNN is fastest in: a 250x400 frame reconstructs
    # 10-15 % faster on this CPU, with the same output to 1e-6.
    return model.to(device, memory_format=torch.channels_last).eval()


def load_pretrained(task: str = "recon", *, path: str | Path | None = None,
                    device: str = "cpu", propagation: bool = False,
                    rate: bool | None = None) -> SCIModel:
    """The shipped SCI model for ``task`` ("recon" or "cls"), or the one at ``path``.

    The shipped recon model comes with its long-reach rate integration of the
    spike counts (``RATE_ADDON``) where that file is shipped (``rate=None``);
    ``rate=False`` gives the windowed model alone, ``rate=True`` insists on the
    add-on. ``propagation=True``: instead, the long-reach propagation of the
    features (``REACH_ADDON``, opt-in: README has both add-ons' figures)."""
    if path is None and task == "recon":
        if propagation and rate:
            raise DataError("choose one long-reach add-on: propagation or rate")
        if propagation:
            path = WEIGHTS_DIR / REACH_ADDON
        elif rate or (rate is None and (WEIGHTS_DIR / RATE_ADDON).is_file()):
            path = WEIGHTS_DIR / RATE_ADDON
    elif path is None and (propagation or rate):
        raise DataError(f"only the recon model has a long-reach add-on, not {task!r}")
    path = Path(path) if path is not None else pretrained_path(task)
    if not path.is_file():
        raise CheckpointError(path, "weights not found (reproduce them with the commands "
                                    "in README)")
    model = load_model(path, device=device)
    if model.config.task != task:
        raise CheckpointError(path, f"weights are for task {model.config.task!r}, not {task!r}")
    return model


CODEC_WEIGHTS = "sci_codec.pt"


def codec_path() -> Path:
    return WEIGHTS_DIR / CODEC_WEIGHTS


def load_pretrained_codec(path: str | Path | None = None, *, device: str = "cpu"):
    """The shipped codec with its cloud side (a CodedSCI), or the one at ``path``
    (a stage-3 checkpoint); it has its integer tables, so it encodes and decodes."""
    from .codec import load_coded

    path = Path(path) if path is not None else codec_path()
    if not path.is_file():
        raise CheckpointError(path, "codec weights not found (reproduce them with "
                                    "`make weights-codec`, see README)")
    model = load_coded(path, device=device)
    if model.codec.tables is None:
        raise CheckpointError(path, "the codec has no integer tables (a last.pt? use the "
                                    "final.pt of a stage-3 run)")
    return model
