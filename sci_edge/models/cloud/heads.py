"""Task heads on the aligned long-term feature Y_t."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..layers import ResBlock, conv3x3


class ReconstructionHead(nn.Module):
    """Y_t -> firing-rate image at t, as a residual on the centre feature F_t."""

    def __init__(self, width: int, blocks: int = 2):
        super().__init__()
        self.body = nn.Sequential(*[ResBlock(width) for _ in range(blocks)])
        self.out = conv3x3(width, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, y, centre_feature):
        return centre_feature + self.out(F.relu(self.body(y)))


class ClassificationHead(nn.Module):
    """Y_t -> class logits (two stride-2 stages, global average pool, linear)."""

    def __init__(self, width: int, num_classes: int):
        super().__init__()
        self.stage1 = conv3x3(width, 2 * width, stride=2)
        self.stage2 = conv3x3(2 * width, 4 * width, stride=2)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, y, centre_feature=None):
        x = F.relu(self.stage1(y))
        x = F.relu(self.stage2(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
