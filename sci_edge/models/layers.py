"""Small building blocks shared by the end-side and cloud-side models."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation)


def conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1)


def gate_net(cin: int, width: int, bias: float) -> nn.Sequential:
    """conv3x3-LeakyReLU-conv3x3-LeakyReLU-conv1x1 to one logit, starting at ``bias``
    everywhere (last layer's weights zero): the long-reach gates and blends."""
    net = nn.Sequential(conv3x3(cin, width), nn.LeakyReLU(0.1),
                        conv3x3(width, width), nn.LeakyReLU(0.1), conv1x1(width, 1))
    nn.init.zeros_(net[-1].weight)
    nn.init.constant_(net[-1].bias, bias)
    return net


class ResBlock(nn.Module):
    """conv-ReLU-conv with an identity skip."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = conv3x3(width, width)
        self.conv2 = conv3x3(width, width)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class TokenSelfAttention(nn.Module):
    """Self-attention among the P sub-filter responses ("tokens") of each pixel.

    Input (B, P, C, H, W); every pixel attends over its P tokens of C channels
    (single head, 1x1 projections), with a residual connection. Cost per pixel
    is O(P*C^2 + P^2*C): light enough for the end side."""

    def __init__(self, channels: int, tokens: int):
        super().__init__()
        self.channels, self.tokens = channels, tokens
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.scale = 1.0 / math.sqrt(channels)

    def forward(self, x):
        B, P, C, H, W = x.shape
        t = x.permute(0, 3, 4, 1, 2)  # (B, H, W, P, C)
        q, k, v = self.qkv(t).chunk(3, dim=-1)
        attn = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)
        out = t + self.proj(torch.matmul(attn, v))
        return out.permute(0, 3, 4, 1, 2).reshape(B, P * C, H, W)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad H and W up to a multiple; returns the padded tensor and the original size."""
    H, W = x.shape[-2:]
    ph, pw = (-H) % multiple, (-W) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (H, W)
