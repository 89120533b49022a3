"""Long-reach propagation over the whole feature stream (cloud side).

The windowed analysis reads 2K+1 features around t. Where the scene holds
still, the information lies in a far longer stretch of the stream, so before
the window is read every feature is replaced by a gated running mean along the
stream, in both directions:

    n_t = min(keep_t * n_{t-1} + 1, cap),   s_t = s_{t-1} + (F_t - s_{t-1}) / n_t

``keep_t`` in (0, 1) comes per pixel from a small CNN that compares the new
feature with the carried state (level, difference, local mean difference,
difference against the noise expected at that level, the count): where
they agree (a static region) the count grows and the state averages over
hundreds of steps; where they do not (motion, an occlusion, a scene cut) the
count falls back towards 1 and the state follows the new feature. The two
directions are merged by their counts, F_t counted once:

    s = (n_fwd s_fwd + n_bwd s_bwd - F_t) / (n_fwd + n_bwd - 1)

and the windowed analysis (AFR: warp + deformable alignment of the 2K+1
propagated features) runs on the result. Each feature passes the gate once
per direction, so the cost is linear in the stream's length.

Causal decoding: ``lookahead`` bounds how many later features an output may
wait for (0: forward only). ``cap`` bounds the count, so the state forgets
with a time constant of ``cap`` features (``--max-reach`` in spike steps).

The state is not warped by motion vectors: a single-channel running mean warped
by sub-pixel vectors at every feature is blurred a little more each time; the
gate resets it under motion instead, and the windowed AFR does the alignment.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from ..layers import gate_net

# the gate's inputs: feature, state, scaled difference, its local mean, the
# difference over the noise expected at that level, log count, and the signed
# difference averaged over 7x7 and 15x15 (where one pixel's difference is lost in
# the noise, a region's is not: slow motion over smooth content)
GATE_INPUTS = 8
DIFF_SCALE = 8.0
NOISE_FLOOR = 0.005
KEEP_BIAS = -4.0        # keep ~0.02 at the start: the stream passes as it is


@dataclass(frozen=True)
class PropagationConfig:
    enabled: bool = False
    width: int = field(default=16, metadata={"min": 1})

    def __post_init__(self):
        from ...config import check_fields

        check_fields(self)

    def to_dict(self) -> dict:
        return asdict(self)


class FeaturePropagation(nn.Module):
    """Features (B, N, H, W) on a regular grid -> propagated features, same shape."""

    def __init__(self, config: PropagationConfig | None = None):
        super().__init__()
        self.config = config = config or PropagationConfig(enabled=True)
        self.gate = gate_net(GATE_INPUTS, config.width, KEEP_BIAS)

    def keep(self, feature: torch.Tensor, state: torch.Tensor, count: torch.Tensor):
        """(B, 1, H, W) each -> keep probability of the carried state, (B, 1, H, W)."""
        d = feature - state
        x = torch.cat([feature, state, d * DIFF_SCALE,
                       F.avg_pool2d(d.abs(), 3, 1, 1, count_include_pad=False) * DIFF_SCALE,
                       d / torch.sqrt(state.clamp_min(0) + NOISE_FLOOR),
                       torch.log(count) / 4.0,
                       F.avg_pool2d(d, 7, 1, 3, count_include_pad=False).abs() * 4 * DIFF_SCALE,
                       F.avg_pool2d(d, 15, 1, 7, count_include_pad=False).abs() * 8 * DIFF_SCALE],
                      dim=1)
        return torch.sigmoid(self.gate(x))

    def step(self, feature, state, count, cap: float):
        """One feature into the carried (state, count): the new (state, count)."""
        if state is None:
            return feature, torch.ones_like(feature)
        k = self.keep(feature, state, count)
        count = torch.clamp(k * count + 1.0, max=cap)
        return state + (feature - state) / count, count

    def _run(self, feats: list[torch.Tensor], cap: float):
        states, counts = [], []
        s = n = None
        for f in feats:
            s, n = self.step(f, s, n, cap)
            states.append(s)
            counts.append(n)
        return states, counts

    def forward(self, features: torch.Tensor, *, cap: float = math.inf,
                lookahead: int | None = None) -> torch.Tensor:
        """``cap``: the largest count (features) a state may reach; ``lookahead``:
        later features each output may use (None: all of them; 0: forward only)."""
        if features.dim() != 4:
            raise ValueError(f"expected features (B, N, H, W), got shape {tuple(features.shape)}")
        if not cap >= 1:
            raise ValueError(f"cap must be >= 1 feature, got {cap!r}")
        if lookahead is not None and (int(lookahead) != lookahead or lookahead < 0):
            raise ValueError(f"lookahead must be an integer >= 0 or None, got {lookahead!r}")
        N = features.shape[1]
        feats = [features[:, i:i + 1] for i in range(N)]
        sf, nf = self._run(feats, cap)
        if lookahead == 0:
            return torch.cat(sf, 1)
        if lookahead is None or lookahead >= N - 1:
            sb, nb = self._run(feats[::-1], cap)
            sb, nb = sb[::-1], nb[::-1]
        else:
            # bounded look-ahead: each output's backward state starts `lookahead`
            # features later (what a live decoder has received by then)
            sb, nb = [], []
            for i in range(N):
                s, n = self._run(feats[i:min(N, i + 1 + lookahead)][::-1], cap)
                sb.append(s[-1])
                nb.append(n[-1])
        return torch.cat([merge(*parts) for parts in zip(feats, sf, nf, sb, nb)], 1)


def merge(feature, forward, n_forward, backward, n_backward):
    """Both directions' states at one time, weighted by their counts; the feature
    itself, in both, is counted once."""
    return (forward * n_forward + backward * n_backward - feature) / (n_forward + n_backward - 1.0)
