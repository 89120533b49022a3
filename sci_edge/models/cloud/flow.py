"""Motion between feature maps: a small flow estimator and backward warping.

Until the feature codec delivers refined motion vectors, the long-term
analysis estimates them itself from pairs of decoded features."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..layers import conv3x3


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample x at (px + flow_x, py + flow_y); flow (B, 2, H, W) in pixels, border clamp."""
    B, _, H, W = x.shape
    ys = torch.arange(H, device=x.device, dtype=x.dtype).view(1, H, 1)
    xs = torch.arange(W, device=x.device, dtype=x.dtype).view(1, 1, W)
    gx = (xs + flow[:, 0]) * (2.0 / max(W - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(H - 1, 1)) - 1.0
    return F.grid_sample(x, torch.stack([gx, gy], dim=-1), mode="bilinear",
                         padding_mode="border", align_corners=True)


class FlowEstimator(nn.Module):
    """(reference F, neighbour F) -> flow (B, 2, H, W) that warps the neighbour
    onto the reference. Works at 1/4 resolution; H and W must be multiples of 4."""

    def __init__(self, width: int = 24):
        super().__init__()
        self.down1 = conv3x3(2, width // 2, stride=2)
        self.down2 = conv3x3(width // 2, width, stride=2)
        self.body = nn.Sequential(conv3x3(width, width, dilation=1), nn.LeakyReLU(0.1),
                                  conv3x3(width, width, dilation=2), nn.LeakyReLU(0.1),
                                  conv3x3(width, width, dilation=4), nn.LeakyReLU(0.1))
        self.head = conv3x3(width, 2)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, reference, neighbour):
        x = torch.cat([reference, neighbour], dim=1)
        x = F.leaky_relu(self.down1(x), 0.1)
        x = F.leaky_relu(self.down2(x), 0.1)
        flow = self.head(self.body(x))
        return F.interpolate(flow, scale_factor=4, mode="bilinear", align_corners=False) * 4.0
