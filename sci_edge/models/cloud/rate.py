"""Long-reach rate integration over the stream's spike counts (cloud side).

The FEM's features do not average to the intensity (its binarized filters,
attention and fusion are nonlinear), so no running mean of features ever
catches up with a plain long spike average where the scene holds still. The
end side therefore also sends, with each feature, the spike count of every
pixel over the feature's own ``stride`` steps (``FeatureStream.counts``: the
intervals tile the recording, so the counts of a run of features add up to
the spikes of the whole run). The cloud side integrates them along the stream
in both directions with a learned per-pixel gate; its evidence is how far the
recent counts stray from the carried mean:

    keep_t = gate(e_t, m_{t-1}, n_{t-1}, s),  e_t = R_t - s J_t m_{t-1}   (spikes)
    n_t = min(keep_t n_{t-1} + 1, cap),  m_t = m_{t-1} + (C_t / s - m_{t-1}) / n_t

where R_t = kappa R_{t-1} + C_t and J_t = kappa J_{t-1} + 1 are the recent
counts and intervals, decayed at two rates kappa (a few intervals, and about
ten), both reset with the mean (times keep_t). An integrate-and-fire pixel
under constant light fires ``rate * L`` spikes in any L steps to within one
spike, so any weighting that grows towards the present keeps e_t of a still
pixel within a few spikes however long it has been still, while a change of
light makes it grow with every interval: the gate keeps the mean where the
scene holds still (the mean then is a TFP over hundreds of steps) and resets
it where it moves. The two directions merge by their counts (C_t
counted once), and a second small network blends the merged mean with the
windowed analysis's output, per pixel, by how far the mean reached and how far
the two disagree, here and over neighbourhoods up to 31 pixels, in rate and
relative to the local light (in low light a motion blur in the mean is no
larger in rate than the windowed output's own noise; relative to the light it
is): a static region takes the long mean, a moving one the windowed output.

Cost: each count passes the gate once per direction; the blend runs once per
output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..layers import gate_net
from .propagate import PropagationConfig

GATE_INPUTS = 11
# decay per interval of the recent sums: about 2.5 and 10 intervals
RECENT = (0.6, 0.9)
BLEND_INPUTS = 16
KEEP_BIAS = -2.0        # keep ~0.12 at the start
BLEND_BIAS = -4.0       # ~0.02 of the mean at the start: the windowed output as it is
WINDOWED_STEPS = 43.0   # about the windowed analysis's span: the mean in the spikes it reads


@dataclass(frozen=True)
class RateConfig(PropagationConfig):
    """``model.rate``: on or off, and the width of the gate's and the blend's CNNs."""


@dataclass
class RateState:
    """One direction's carried state: mean rate (spikes per step) and count of
    intervals, each (B, 1, H, W); recent counts and intervals at each decay of
    ``RECENT``, each (B, len(RECENT), H, W)."""
    mean: torch.Tensor
    count: torch.Tensor
    recent: torch.Tensor
    weight: torch.Tensor

    def evidence(self, stride: float) -> torch.Tensor:
        """Recent counts less what the mean predicts for them, (B, len(RECENT), H, W)."""
        return self.recent - float(stride) * self.weight * self.mean


class RateIntegration(nn.Module):
    """Counts (B, N, H, W) on a regular grid -> merged long-reach mean rate and
    reach at chosen grid positions; ``blend`` mixes that with the windowed output."""

    def __init__(self, config: RateConfig | None = None):
        super().__init__()
        self.config = config = config or RateConfig(enabled=True)
        self.gate = gate_net(GATE_INPUTS, config.width, KEEP_BIAS)
        self.mix = gate_net(BLEND_INPUTS, config.width, BLEND_BIAS)

    # --- one direction ---------------------------------------------------------------
    def keep(self, recent: torch.Tensor, weight: torch.Tensor, state: RateState,
             stride: float) -> torch.Tensor:
        """The gate on the recent sums that include the new interval."""
        s = float(stride)
        e = recent - s * weight * state.mean
        short, long = e[:, :1], e[:, 1:]
        x = torch.cat([short / 2.0, long / 2.0,
                       long / torch.sqrt(s * weight[:, 1:] * state.mean + 1.0),
                       _pool(long, 3).abs(), _pool(long, 7).abs() * 2.0,
                       _pool(long, 15).abs() * 4.0, _pool(short, 7).abs() * 2.0,
                       state.mean * 4.0,
                       torch.log(state.count) / 4.0,
                       torch.log1p(state.count * s * state.mean) / 4.0,
                       torch.full_like(short, math.log(s) / 4.0)], dim=1)
        return torch.sigmoid(self.gate(x))

    def step(self, counts: torch.Tensor, state: RateState | None, stride: float,
             cap: float) -> RateState:
        """One interval's counts (B, 1, H, W) into the carried state."""
        rate = counts / float(stride)
        decay = counts.new_tensor(RECENT).view(1, -1, 1, 1)
        if state is None:
            ones = torch.ones_like(counts)
            return RateState(rate, ones, counts.expand(-1, len(RECENT), -1, -1).clone(),
                             ones.expand(-1, len(RECENT), -1, -1).clone())
        recent = decay * state.recent + counts
        weight = decay * state.weight + 1.0
        k = self.keep(recent, weight, state, stride)
        n = torch.clamp(k * state.count + 1.0, max=cap)
        # a reset (keep -> 0) starts the recent sums afresh with this interval
        return RateState(state.mean + (rate - state.mean) / n, n,
                         k * (recent - counts) + counts, k * (weight - 1.0) + 1.0)

    def _run(self, counts: list[torch.Tensor], stride: float, cap: float,
             keep_at: set[int]) -> dict[int, RateState]:
        out, state = {}, None
        for i, c in enumerate(counts):
            state = self.step(c, state, stride, cap)
            if i in keep_at:
                out[i] = state
        return out

    def forward(self, counts: torch.Tensor, stride: float, at: list[int], *,
                cap: float = math.inf, lookahead: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``counts`` (B, N, H, W) spikes per interval of ``stride`` steps -> the
        merged mean rate and its reach (intervals) at grid positions ``at``, each
        (B, len(at), H, W). ``cap``: the largest count a state may reach;
        ``lookahead``: later intervals each output may use (None: all; 0: causal)."""
        if counts.dim() != 4:
            raise ValueError(f"expected counts (B, N, H, W), got shape {tuple(counts.shape)}")
        if not stride >= 1:
            raise ValueError(f"stride must be >= 1, got {stride!r}")
        if not cap >= 1:
            raise ValueError(f"cap must be >= 1 interval, got {cap!r}")
        if lookahead is not None and (int(lookahead) != lookahead or lookahead < 0):
            raise ValueError(f"lookahead must be an integer >= 0 or None, got {lookahead!r}")
        N = counts.shape[1]
        at = [int(i) for i in at]
        if any(not 0 <= i < N for i in at):
            raise ValueError(f"positions {at} outside the {N} intervals")
        cs = [counts[:, i:i + 1].float() for i in range(N)]
        fwd = self._run(cs, stride, cap, set(at))
        whole = lookahead is None or lookahead >= N - 1
        if whole:       # one backward pass serves every output
            bwd = self._run(cs[::-1], stride, cap, {N - 1 - i for i in at})
        means, reach = [], []
        for i in at:
            f = fwd[i]
            if lookahead == 0:
                means.append(f.mean)
                reach.append(f.count)
                continue
            if whole:
                b = bwd[N - 1 - i]
            else:       # what a live decoder has received `lookahead` intervals later
                end = min(N, i + 1 + lookahead)
                b = self._run(cs[i:end][::-1], stride, cap, {end - 1 - i})[end - 1 - i]
            total = f.count + b.count - 1.0
            means.append((f.mean * f.count + b.mean * b.count - cs[i] / float(stride)) / total)
            reach.append(total)
        return torch.cat(means, 1), torch.cat(reach, 1)

    def blend(self, base: torch.Tensor, mean: torch.Tensor, reach: torch.Tensor,
              stride: float | torch.Tensor) -> torch.Tensor:
        """Windowed output ``base`` and the merged ``mean`` / ``reach`` (B, 1, H, W),
        rates -> the blended rate. ``stride``: one for all, or one per item (B,)."""
        if torch.is_tensor(stride):
            s = stride.to(base).reshape(-1, 1, 1, 1).expand_as(base)
        else:
            s = torch.full_like(base, float(stride))
        d = mean - base
        # the disagreement also relative to the local light: in low light a motion
        # blur in the mean is as small in rate as the windowed output's own noise
        level = _pool(base.abs() + mean.abs(), 7) + 0.005
        rel = d / level
        x = torch.cat([base * 4.0, mean * 4.0, d * 8.0,
                       _pool(d.abs(), 3) * 8.0,
                       _pool(d, 7).abs() * 16.0,
                       _pool(d, 15).abs() * 32.0,
                       _pool(d, 31).abs() * 64.0,
                       torch.sqrt(_pool(d * d, 7) + 1e-8) * 8.0,
                       _pool(base, 7) * 4.0,
                       torch.log1p(WINDOWED_STEPS * mean.clamp(min=0)) / 2.0,
                       rel, _pool(rel, 7).abs() * 4.0, _pool(rel, 15).abs() * 8.0,
                       torch.log(reach * s) / 4.0,
                       torch.log1p(reach * s * mean) / 4.0,
                       torch.log(s) / 4.0], dim=1)
        w = torch.sigmoid(self.mix(x))
        return base + w * d


def _pool(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over a k x k neighbourhood (inside the frame only). Separable: the part
    of a window inside the frame is a rectangle, so a mean of row means is exact,
    and a 31-pixel window costs 62 reads a pixel instead of 961."""
    x = F.avg_pool2d(x, (k, 1), 1, (k // 2, 0), count_include_pad=False)
    return F.avg_pool2d(x, (1, k), 1, (0, k // 2), count_include_pad=False)
