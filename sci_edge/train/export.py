"""Training checkpoint -> inference weights file (what sci_edge/weights ships)."""
from __future__ import annotations

from pathlib import Path

from ..models.checkpoint import load_checkpoint, save_checkpoint


def export_weights(checkpoint: str | Path, out: str | Path) -> Path:
    """Strip a training checkpoint to what inference needs (no optimizer state, no clock)."""
    doc = load_checkpoint(checkpoint)
    return save_checkpoint(out, kind=doc["kind"], model_config=doc["model_config"],
                           state=doc["state"], train_config=doc.get("train_config"),
                           step=doc.get("step", 0), metrics=doc.get("metrics"))
