"""A small untrained codec with integer tables, for tests that need one fast."""
from __future__ import annotations

import torch

from sci_edge.models.codec import CodecConfig, CodedSCI
from sci_edge.models.sci import SCIConfig

SMALL = CodecConfig(channels=8, hyper_channels=4, encoder_width=8, hyper_width=8,
                    decoder_width=8, qualities=3, levels=16)


def small_coded(seed: int = 0, task: str = "recon") -> CodedSCI:
    """A CodedSCI with random weights and tables built by update()."""
    torch.manual_seed(seed)
    model = CodedSCI(SCIConfig(task=task), SMALL).eval()
    with torch.no_grad():    # latents of a useful size, so symbols vary; finer with Q
        steps = torch.linspace(0.0, -1.5, SMALL.qualities)[:, None]
        model.codec.log_step.copy_(steps.expand_as(model.codec.log_step))
    model.codec.update(torch.rand(2, 3, 64, 64) * 0.5)
    return model


def save_small(path, seed: int = 0):
    """small_coded written as a stage-3 checkpoint (what load_coded reads)."""
    from sci_edge.models.checkpoint import save_checkpoint

    model = small_coded(seed)
    save_checkpoint(path, kind="codec", model_config=model.model_config(),
                    state=model.state_for_checkpoint())
    return path
