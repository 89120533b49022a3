"""Deformable convolution (Dai et al. 2017) from bilinear sampling.

torchvision.ops.deform_conv2d is the usual implementation, but no torchvision
build matches the pinned CPU torch here, so this module computes the same
operator with ``grid_sample``: each of the kh*kw taps samples the input at its
regular position plus a learned offset, and a 1x1 convolution over the stacked
samples applies the kernel. Offsets use torchvision's layout: channel 2k is the
y offset and 2k+1 the x offset of tap k (row-major over the kernel). Samples
outside the input read zero, as in a zero-padded convolution.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def deform_conv2d(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None = None, padding: int = 1,
                  dilation: int = 1) -> torch.Tensor:
    """Stride-1 deformable convolution; output has the input's H and W when
    ``padding == dilation * (k - 1) // 2``."""
    B, C, H, W = (int(v) for v in x.shape)  # plain ints, also while tracing
    O, Cw, kh, kw = (int(v) for v in weight.shape)
    if Cw != C:
        raise ValueError(f"weight expects {Cw} input channels, got {C}")
    Ho = H + 2 * padding - dilation * (kh - 1)
    Wo = W + 2 * padding - dilation * (kw - 1)
    if offset.shape != (B, 2 * kh * kw, Ho, Wo):
        raise ValueError(f"offset must be {(B, 2 * kh * kw, Ho, Wo)}, got {tuple(offset.shape)}")
    ys = torch.arange(Ho, device=x.device, dtype=x.dtype).view(1, Ho, 1)
    xs = torch.arange(Wo, device=x.device, dtype=x.dtype).view(1, 1, Wo)
    sy = 2.0 / max(H - 1, 1)
    sx = 2.0 / max(W - 1, 1)
    samples = []
    for k in range(kh * kw):
        i, j = divmod(k, kw)
        py = ys + (i * dilation - padding) + offset[:, 2 * k]
        px = xs + (j * dilation - padding) + offset[:, 2 * k + 1]
        grid = torch.stack([px * sx - 1.0, py * sy - 1.0], dim=-1)
        samples.append(F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                                     align_corners=True))
    cols = torch.stack(samples, dim=2).reshape(B, C * kh * kw, Ho, Wo)
    return F.conv2d(cols, weight.reshape(O, C * kh * kw, 1, 1), bias)


class DeformConv2d(nn.Module):
    """3x3 (by default) deformable convolution; offsets are an input."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(cout))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.padding = kernel_size // 2

    def forward(self, x, offset):
        return deform_conv2d(x, offset, self.weight, self.bias, padding=self.padding)
