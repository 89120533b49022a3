"""Training checkpoint -> inference weights file (what sci_edge/weights ships)."""
from __future__ import annotations

from pathlib import Path

from ..models.checkpoint import load_checkpoint, save_checkpoint


def export_weights(checkpoint: str | Path, out: str | Path) -> Path:
    """Strip a training checkpoint to what inference needs (no optimizer state, no clock).

    A codec checkpoint whose cloud side is still exactly the shipped recon model's
    (stage 3 / codec, before the cloud side is fine-tuned), and an SCI model that
    is the shipped recon model plus a trained propagation, refer to that file by
    name and sha256 instead of carrying a second copy of it."""
    import hashlib

    import torch

    doc = load_checkpoint(checkpoint)
    state, config = dict(doc["state"]), dict(doc["model_config"])
    if doc["kind"] == "codec":
        from ..models.pretrained import WEIGHTS_DIR, pretrained_path

        shipped = pretrained_path("recon")
        if shipped.is_file():
            ref = load_checkpoint(shipped)["state"]
            sci = {k[4:]: v for k, v in state.items() if k.startswith("sci.")}
            if sci.keys() == ref.keys() and all(torch.equal(sci[k], ref[k]) for k in ref):
                state = {k: v for k, v in state.items() if not k.startswith("sci.")}
                config["sci_from"] = {
                    "file": str(shipped.relative_to(WEIGHTS_DIR)),
                    "sha256": hashlib.sha256(shipped.read_bytes()).hexdigest()}
    if doc["kind"] == "sci" and any(k.startswith("propagation.") for k in state):
        from ..models.pretrained import WEIGHTS_DIR, pretrained_path

        shipped = pretrained_path("recon")
        if shipped.is_file():
            ref = load_checkpoint(shipped)["state"]
            rest = {k: v for k, v in state.items() if not k.startswith("propagation.")}
            if rest.keys() == ref.keys() and all(torch.equal(rest[k], ref[k]) for k in ref):
                state = {k: v for k, v in state.items() if k.startswith("propagation.")}
                config["sci_from"] = {
                    "file": str(shipped.relative_to(WEIGHTS_DIR)),
                    "sha256": hashlib.sha256(shipped.read_bytes()).hexdigest()}
    return save_checkpoint(out, kind=doc["kind"], model_config=config,
                           state=state, train_config=doc.get("train_config"),
                           step=doc.get("step", 0), metrics=doc.get("metrics"))
