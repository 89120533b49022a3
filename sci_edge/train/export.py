"""Training checkpoint -> inference weights file (what sci_edge/weights ships)."""
from __future__ import annotations

from pathlib import Path

from ..models.checkpoint import load_checkpoint, save_checkpoint

# parts trained on top of a frozen windowed model: the long-reach propagation and
# the rate integration
ADDONS = ("propagation.", "rate.")


def export_weights(checkpoint: str | Path, out: str | Path) -> Path:
    """Strip a training checkpoint to what inference needs (no optimizer state, no clock).

    A codec checkpoint whose cloud side is still exactly the shipped recon model's
    (stage 3 / codec, before the cloud side is fine-tuned), and an SCI model that
    is the shipped recon model plus a trained add-on (``ADDONS``), refer to that file by
    name and sha256 instead of carrying a second copy of it."""
    doc = load_checkpoint(checkpoint)
    state, config = dict(doc["state"]), dict(doc["model_config"])
    if doc["kind"] == "codec":            # its cloud side: the "sci." tensors
        shared = {k[4:]: v for k, v in state.items() if k.startswith("sci.")}
        own = {k: v for k, v in state.items() if not k.startswith("sci.")}
    elif doc["kind"] == "sci" and any(k.startswith(ADDONS) for k in state):
        shared = {k: v for k, v in state.items() if not k.startswith(ADDONS)}
        own = {k: v for k, v in state.items() if k.startswith(ADDONS)}
    else:
        shared = None
    ref = _shipped_reference(shared) if shared is not None else None
    if ref is not None:
        state, config["sci_from"] = own, ref
    return save_checkpoint(out, kind=doc["kind"], model_config=config,
                           state=state, train_config=doc.get("train_config"),
                           step=doc.get("step", 0), metrics=doc.get("metrics"))


def _shipped_reference(part: dict) -> dict | None:
    """``{"file", "sha256"}`` of the shipped recon weights when ``part`` is exactly
    their state, else None."""
    import hashlib

    import torch

    from ..models.pretrained import WEIGHTS_DIR, pretrained_path

    shipped = pretrained_path("recon")
    if not shipped.is_file():
        return None
    ref = load_checkpoint(shipped)["state"]
    if part.keys() != ref.keys() or not all(torch.equal(part[k], ref[k]) for k in ref):
        return None
    return {"file": str(shipped.relative_to(WEIGHTS_DIR)),
            "sha256": hashlib.sha256(shipped.read_bytes()).hexdigest()}
