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
    """Y_t -> class logits: three conv stages (two of stride 2), adaptive pooling
    to a 4x4 grid that keeps the layout (a global average would lose it), and
    a two-layer classifier with dropout before each layer (8000 training
    digits overfit without it). Any input size."""

    GRID = 4

    def __init__(self, width: int, num_classes: int, hidden: int = 128, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.stage1 = conv3x3(width, 2 * width, stride=2)
        self.stage2 = conv3x3(2 * width, 4 * width, stride=2)
        self.stage3 = conv3x3(4 * width, 4 * width)
        self.fc1 = nn.Linear(4 * width * self.GRID * self.GRID, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, y, centre_feature=None):
        x = F.relu(self.stage1(y))
        x = F.relu(self.stage2(x))
        x = F.relu(self.stage3(x))
        x = self.dropout(torch.flatten(F.adaptive_avg_pool2d(x, self.GRID), 1))
        return self.fc2(self.dropout(F.relu(self.fc1(x))))
