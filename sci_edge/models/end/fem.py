"""Feature extraction module (FEM): spikes around t -> one smooth feature map F_t.

Two pathways read a window of ``WINDOW`` = 13 spike frames centred on t
(frames t-6 .. t+6):

- dorsal (motion): one bank of C binarized filters of length 7 slid across the
  window with stride 2, i.e. receptive fields [t-6,t], [t-4,t+2], [t-2,t+4],
  [t,t+6] (the paper's Fig. 5a; we take window 7 from the figure, not the 10
  of its text, so that four placements tile the 13-frame window exactly);
- ventral (structure): four banks of C binarized filters centred on t with
  receptive fields 7, 9, 11 and 13 frames (Fig. 5b).

Each pathway's four sub-filter responses attend to each other per pixel
(TokenSelfAttention) and are embedded to ``width`` channels. A linear readout
of the ventral responses gives F^V, a multi-scale firing-rate estimate; the
Pathway Fusion Unit (PFU, N layers) mixes both pathways and
F_t = clip(PFU_N(F^D, F^V) + F^V, 0, 1)  (paper Eq. 7).
F_t is in firing-rate units (spikes per step), so it is independent of the
camera's gain.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..binary import BinaryTemporalBank
from ..layers import TokenSelfAttention, conv1x1, conv3x3

WINDOW = 13
HALF_WINDOW = WINDOW // 2
DORSAL_LENGTH = 7
DORSAL_STARTS = (0, 2, 4, 6)          # receptive fields [t-6,t] .. [t,t+6]
VENTRAL_LENGTHS = (7, 9, 11, 13)      # centred on t


@dataclass(frozen=True)
class FEMConfig:
    dorsal_channels: int = field(default=8, metadata={"min": 1})
    ventral_channels: int = field(default=8, metadata={"min": 1})
    width: int = field(default=16, metadata={"min": 1})
    pfu_layers: int = field(default=2, metadata={"min": 1})

    def __post_init__(self):
        # checked here, not only when loading a TOML file: checkpoints and code build it too
        from ...config import check_fields

        check_fields(self)

    def to_dict(self) -> dict:
        return asdict(self)


class PFULayer(nn.Module):
    """One Pathway Fusion Unit layer: both pathways read their concatenation.
    The last layer updates only the ventral stream (the dorsal one ends there)."""

    def __init__(self, width: int, update_dorsal: bool = True):
        super().__init__()
        self.mix = conv3x3(2 * width, width)
        self.to_ventral = conv3x3(width, width)
        self.to_dorsal = conv1x1(width, width) if update_dorsal else None

    def forward(self, d, v):
        h = F.relu(self.mix(torch.cat([d, v], dim=1)))
        if self.to_dorsal is not None:
            d = d + self.to_dorsal(h)
        return d, v + self.to_ventral(h)


class FEM(nn.Module):
    """Spike window (B, 13, H, W) -> feature F_t (B, 1, H, W) in [0, 1]."""

    window = WINDOW

    def __init__(self, config: FEMConfig | None = None):
        super().__init__()
        self.config = config = config or FEMConfig()
        cd, cv, w = config.dorsal_channels, config.ventral_channels, config.width
        self.dorsal = BinaryTemporalBank(WINDOW, [DORSAL_LENGTH],
                                         [(0, s) for s in DORSAL_STARTS], cd)
        self.ventral = BinaryTemporalBank(
            WINDOW, list(VENTRAL_LENGTHS),
            [(g, HALF_WINDOW - n // 2) for g, n in enumerate(VENTRAL_LENGTHS)], cv)
        self.dorsal_attn = TokenSelfAttention(cd, len(DORSAL_STARTS))
        self.ventral_attn = TokenSelfAttention(cv, len(VENTRAL_LENGTHS))
        self.dorsal_embed = conv3x3(len(DORSAL_STARTS) * cd, w)
        self.ventral_embed = conv3x3(len(VENTRAL_LENGTHS) * cv, w)
        self.ventral_readout = conv1x1(len(VENTRAL_LENGTHS) * cv, 1)
        n = config.pfu_layers
        self.pfu = nn.ModuleList(PFULayer(w, update_dorsal=i < n - 1) for i in range(n))
        self.out = conv3x3(w, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # start F^V small and inside (0, 1), where the clip passes gradients
        nn.init.normal_(self.ventral_readout.weight, std=0.01)
        nn.init.constant_(self.ventral_readout.bias, 0.3)

    def export_filter_bank(self):
        """Both pathways' binarized filters as one popcount bank (dorsal first):
        what the edge kernel runs (sci_edge.edge.BinaryFilterBank)."""
        from ...edge.tfilter import BinaryFilterBank

        d, v = self.dorsal.export(), self.ventral.export()
        return BinaryFilterBank(pos=np.concatenate([d.pos, v.pos]),
                                support=np.concatenate([d.support, v.support]),
                                alpha=np.concatenate([d.alpha, v.alpha]),
                                bias=np.concatenate([d.bias, v.bias]), window=WINDOW)

    def temporal_responses(self, window_spikes: torch.Tensor) -> torch.Tensor:
        """(B, 13, H, W) -> both banks' responses (B, P*C_d + P*C_v, H, W), dorsal first."""
        d = self.dorsal(window_spikes)
        v = self.ventral(window_spikes)
        return torch.cat([d.flatten(1, 2), v.flatten(1, 2)], dim=1)

    def forward(self, window_spikes: torch.Tensor) -> torch.Tensor:
        d_tokens = self.dorsal(window_spikes)
        v_tokens = self.ventral(window_spikes)
        d_flat = self.dorsal_attn(d_tokens)
        v_flat = self.ventral_attn(v_tokens)
        base = self.ventral_readout(v_flat)          # F^V
        d = F.relu(self.dorsal_embed(d_flat))
        v = F.relu(self.ventral_embed(v_flat))
        for layer in self.pfu:
            d, v = layer(d, v)
        return torch.clamp(self.out(v) + base, 0.0, 1.0)


class LightReconHead(nn.Module):
    """Stage I's light head: F_t -> firing-rate image (a small residual CNN)."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.conv1 = conv3x3(1, width)
        self.conv2 = conv3x3(width, 1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, feature):
        return feature + self.conv2(F.relu(self.conv1(feature)))
