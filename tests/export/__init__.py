"""Tests of the edge export (ONNX, INT8, TensorRT checks). Helpers shared by them."""
from __future__ import annotations

import numpy as np
import torch

from tests.models.codec_fixtures import small_coded


def lively_coded(seed: int = 0):
    """small_coded() with some life in its zero-initialised layers: the FEM's output
    conv and tiny readout get weights, so F_t has detail to lose in INT8, and so
    does the residual branch of the codec's analysis transform (where it has one)."""
    model = small_coded(seed)
    fem = model.sci.fem
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        fem.out.weight.normal_(0.0, 0.05, generator=gen)
        fem.ventral_readout.weight.normal_(0.0, 0.05, generator=gen)
        out = getattr(model.codec.encoder.analysis, "out", None)
        if isinstance(out, torch.nn.Conv2d):
            out.weight.normal_(0.0, 0.05, generator=gen)
    return model


def scene_spikes(count: int = 2, size=(64, 64), num_steps: int = 27, seed: int = 0):
    """Simulated natural-scene spike sequences (T, H, W), small and fast."""
    from sci_edge.data.scenes import make_scene_sequence
    from sci_edge.data.deadleaves import dead_leaves

    out = []
    for i in range(count):
        image = dead_leaves(max(size), seed=seed + i)
        seq = make_scene_sequence(image, size=size, num_steps=num_steps, seed=seed + i,
                                  speed=0.7, motion=("pan", "zoom")[i % 2])
        out.append(seq.spikes)
    return out


def psnr(ref: np.ndarray, test: np.ndarray, peak: float = 1.0) -> float:
    mse = float(np.mean((np.asarray(ref, np.float64) - test) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak ** 2 / mse)


def sqnr(ref: np.ndarray, test: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64)
    return 10 * np.log10(np.sum(ref ** 2) / max(np.sum((ref - test) ** 2), 1e-30))
