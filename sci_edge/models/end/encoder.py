"""End-side feature encoder: x_t = F_t / gain -> latents y and hyper-latents z (light).

The analysis transform is an 8x8 block transform (a 1x1 convolution over the
pixel-unshuffled patch, initialised to the orthonormal 2-D DCT) plus a learned
nonlinear residual that embeds 4x4 patches and works at 1/4 and 1/8
resolution with depthwise-separable blocks (its output starts at zero). The
codec therefore starts as a block-transform coder that decodes well from the
first step, and training spends its steps on rate and on what the transform
misses. It costs a few kMAC per pixel. There is no reconstruction loop: a P
frame's temporal context is the previous frame's integer latents, which the
encoder has exactly and for free, so the encoder never runs the decoder.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..layers import conv1x1, conv3x3


class SeparableBlock(nn.Module):
    """depthwise 3x3 -> 1x1 expand -> ReLU -> 1x1 project, with an identity skip."""

    def __init__(self, width: int, expand: int = 2):
        super().__init__()
        self.dw = nn.Conv2d(width, width, 3, padding=1, groups=width)
        self.expand = conv1x1(width, expand * width)
        self.project = conv1x1(expand * width, width)

    def forward(self, x):
        return x + self.project(F.relu(self.expand(self.dw(x))))


BLOCK = 8


def dct_basis(channels: int) -> np.ndarray:
    """(channels, 64) rows of the orthonormal 8x8 2-D DCT-II in the channel order of
    PixelUnshuffle(8) (pixel dy * 8 + dx), lowest frequencies (ky + kx) first; rows
    past 64 are zero."""
    n = np.arange(BLOCK)
    c = np.sqrt(2.0 / BLOCK) * np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * BLOCK))
    c[0] /= math.sqrt(2.0)
    full = np.kron(c, c)                                    # row ky*8+kx, column dy*8+dx
    order = sorted(range(BLOCK * BLOCK), key=lambda k: (k // BLOCK + k % BLOCK, k))
    out = np.zeros((channels, BLOCK * BLOCK))
    m = min(channels, BLOCK * BLOCK)
    out[:m] = full[order[:m]]
    return out


class AnalysisTransform(nn.Module):
    """(B, 1, H, W) normalised features, H and W multiples of 8 -> (B, C, H/8, W/8)."""

    def __init__(self, channels: int, width: int, blocks: int = 2):
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(BLOCK)
        self.block = nn.Conv2d(BLOCK * BLOCK, channels, 1, bias=False)
        with torch.no_grad():
            self.block.weight.copy_(torch.from_numpy(dct_basis(channels)).float()[:, :, None, None])
        self.embed = nn.Sequential(nn.PixelUnshuffle(4), conv1x1(16, width))
        self.stage1 = nn.Sequential(*[SeparableBlock(width) for _ in range(blocks)])
        self.down = nn.Sequential(nn.PixelUnshuffle(2), conv1x1(4 * width, 2 * width))
        self.stage2 = nn.Sequential(*[SeparableBlock(2 * width) for _ in range(blocks)])
        self.out = conv1x1(2 * width, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x):
        residual = self.out(self.stage2(self.down(self.stage1(self.embed(x)))))
        return self.block(self.unshuffle(x)) + residual


class HyperAnalysis(nn.Module):
    """(B, C, h, w) latents in symbol units -> (B, Cz, h/4, w/4) hyper-latents."""

    def __init__(self, channels: int, hyper_channels: int, width: int):
        super().__init__()
        self.net = nn.Sequential(conv3x3(channels, width), nn.ReLU(),
                                 conv3x3(width, width, stride=2), nn.ReLU(),
                                 conv3x3(width, hyper_channels, stride=2))

    def forward(self, v):
        return self.net(v)


class FeatureEncoder(nn.Module):
    """Everything the end side runs per feature frame: the analysis transform and
    the hyper-analysis of intra (I) and inter (P) frames. P frames see the
    latents' change since the previous frame, in symbol units. Input: the
    feature divided by the camera gain (the header's), so that one quality
    index means one image quality at every gain."""

    def __init__(self, channels: int, hyper_channels: int, width: int, hyper_width: int):
        super().__init__()
        self.analysis = AnalysisTransform(channels, width)
        self.hyper_intra = HyperAnalysis(channels, hyper_channels, hyper_width)
        self.hyper_inter = HyperAnalysis(channels, hyper_channels, hyper_width)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.analysis(features)
