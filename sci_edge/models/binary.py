"""Binarized temporal filters (torch), trained with a straight-through estimator.

A bank holds weight groups of shape (C, L). Each *placement* applies one group
at a start frame inside the FEM's spike window, giving C output channels. The
weights used in the forward pass are sign(w) in {-1, +1} (sign(0) = +1) times a
per-filter scale alpha = mean|w|, plus a bias:

    y[c] = dot(sign(w[c]), spikes[start:start+L]) * alpha[c] + bias[c]

The integer dot product is exact in float32, so this equals the popcount kernel
of :mod:`sci_edge.edge.tfilter` bit for bit (``export()`` gives its masks).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class SignSTE(torch.autograd.Function):
    """sign() forward; identity gradient inside |w| <= 1 (clipped straight-through)."""

    @staticmethod
    def forward(ctx, w):
        ctx.save_for_backward(w)
        return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))

    @staticmethod
    def backward(ctx, grad):
        (w,) = ctx.saved_tensors
        return grad * (w.abs() <= 1).to(grad.dtype)


def binarize(w: torch.Tensor) -> torch.Tensor:
    return SignSTE.apply(w)


class BinaryTemporalBank(nn.Module):
    """Binarized temporal sub-filters over a window of ``window`` spike frames.

    ``lengths[g]`` is the length of weight group g; ``placements`` lists
    (group, start) pairs. Output: (B, len(placements), channels, H, W)."""

    def __init__(self, window: int, lengths: Sequence[int],
                 placements: Sequence[tuple[int, int]], channels: int):
        super().__init__()
        self.window = int(window)
        self.channels = int(channels)
        self.lengths = [int(n) for n in lengths]
        self.placements = [(int(g), int(s)) for g, s in placements]
        for g, s in self.placements:
            if not (0 <= g < len(self.lengths) and 0 <= s and s + self.lengths[g] <= self.window):
                raise ValueError(f"placement (group {g}, start {s}) does not fit the window")
        gen = torch.Generator().manual_seed(0)
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.randn(channels, n, generator=gen) * 0.5) for n in self.lengths])
        self.bias = nn.Parameter(torch.zeros(len(self.placements) * channels))

    def dense_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(P*C, window) binary weights (0 outside each support) and (P*C,) alphas."""
        rows, alphas = [], []
        for g, s in self.placements:
            w = self.weights[g]
            wb = binarize(w)
            rows.append(F.pad(wb, (s, self.window - s - w.shape[1])))
            alphas.append(w.abs().mean(dim=1))
        return torch.cat(rows), torch.cat(alphas)

    def forward(self, window_spikes: torch.Tensor) -> torch.Tensor:
        if window_spikes.shape[1] != self.window:
            raise ValueError(f"expected a window of {self.window} frames, "
                             f"got {window_spikes.shape[1]}")
        x = window_spikes.to(self.bias.dtype)
        wb, alpha = self.dense_weight()
        dot = F.conv2d(x, wb[:, :, None, None])
        y = dot * alpha[None, :, None, None]
        y = y + self.bias[None, :, None, None]
        B, _, H, W = y.shape
        return y.view(B, len(self.placements), self.channels, H, W)

    @torch.no_grad()
    def export(self):
        """The bank as popcount masks for the edge kernel (a BinaryFilterBank)."""
        from ..edge.tfilter import BinaryFilterBank

        wb, alpha = self.dense_weight()
        wb = wb.cpu().numpy()
        bit = np.left_shift(np.uint64(1), np.arange(self.window, dtype=np.uint64))
        pos = ((wb > 0).astype(np.uint64) * bit).sum(axis=1, dtype=np.uint64)
        sup = ((wb != 0).astype(np.uint64) * bit).sum(axis=1, dtype=np.uint64)
        return BinaryFilterBank(pos=pos, support=sup, alpha=alpha.float().cpu().numpy(),
                                bias=self.bias.detach().float().cpu().numpy(), window=self.window)
