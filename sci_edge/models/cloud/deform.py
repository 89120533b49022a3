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


def deform_columns(x: torch.Tensor, offset: torch.Tensor, kh: int = 3, kw: int = 3,
                   padding: int = 1, dilation: int = 1) -> torch.Tensor:
    """The deformable convolution's sampled columns, (B, C*kh*kw, Ho*Wo) in
    (channel, tap) order: the kh*kw sampling grids stacked along H go through one
    ``grid_sample``, whose output already has that layout. The samples equal
    :func:`deform_conv2d`'s bit for bit. ``grid_sample`` runs one image per
    thread on the CPU, so callers batch several images into one call."""
    B, C, H, W = (int(v) for v in x.shape)
    Ho = H + 2 * padding - dilation * (kh - 1)
    Wo = W + 2 * padding - dilation * (kw - 1)
    k = kh * kw
    if offset.shape != (B, 2 * k, Ho, Wo):
        raise ValueError(f"offset must be {(B, 2 * k, Ho, Wo)}, got {tuple(offset.shape)}")
    ys = torch.arange(Ho, device=x.device, dtype=x.dtype).view(1, 1, Ho, 1)
    xs = torch.arange(Wo, device=x.device, dtype=x.dtype).view(1, 1, 1, Wo)
    taps = [(i * dilation - padding, j * dilation - padding) for i in range(kh) for j in range(kw)]
    by = torch.tensor([t[0] for t in taps], device=x.device, dtype=x.dtype).view(1, k, 1, 1)
    bx = torch.tensor([t[1] for t in taps], device=x.device, dtype=x.dtype).view(1, k, 1, 1)
    # the same float operations, in the same order, as deform_conv2d's grids
    py = ys + by + offset[:, 0::2]
    px = xs + bx + offset[:, 1::2]
    grid = torch.stack([px * (2.0 / max(W - 1, 1)) - 1.0, py * (2.0 / max(H - 1, 1)) - 1.0],
                       dim=-1).view(B, k * Ho, Wo, 2)
    cols = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return cols.reshape(B, C * k, Ho * Wo)


def deform_conv2d_gemm(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                       bias: torch.Tensor | None = None, padding: int = 1,
                       dilation: int = 1) -> torch.Tensor:
    """The same operator for inference: :func:`deform_columns`, then one GEMM
    applies the kernel. :func:`deform_conv2d` stacks kh*kw sampled copies instead
    (hundreds of MB per call at 250x400) and runs a 1x1 convolution, which must
    first convert them to channels-last. The sum runs in another order
    (differences ~1e-6)."""
    B, C, H, W = (int(v) for v in x.shape)
    O, Cw, kh, kw = (int(v) for v in weight.shape)
    if Cw != C:
        raise ValueError(f"weight expects {Cw} input channels, got {C}")
    cols = deform_columns(x, offset, kh, kw, padding, dilation)
    Ho = H + 2 * padding - dilation * (kh - 1)
    out = torch.matmul(weight.reshape(O, C * kh * kw), cols)
    if bias is not None:
        out = out + bias.view(1, O, 1)
    return out.view(B, O, Ho, -1)


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
