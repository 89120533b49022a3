"""The whole SCI perception path: FEM (end side) + long-term analysis and a task
head (cloud side).

Time layout: features are taken every ``stride`` spike steps; the output at t
uses the 2K+1 features at t-K*stride .. t+K*stride, each from the FEM's
13-frame window around its time. With the defaults (K=2, stride=7) that is
41 spike frames, t-20 .. t+20. Near the ends of a recording the feature
times are clipped so that every window lies inside it (at least 13 frames).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from .cloud.analysis import AnalysisConfig, LongTermAnalysis
from .cloud.heads import ClassificationHead, ReconstructionHead
from .cloud.propagate import FeaturePropagation, PropagationConfig
from .cloud.rate import RateConfig, RateIntegration
from ..errors import DataError
from ..io.source import as_source
from ..stream import FeatureStream, interval_counts
from .end.extract import FeatureExtractor, feature_times, transform_window, untransform
from .end.fem import FEM, HALF_WINDOW, WINDOW, FEMConfig
from .layers import pad_to_multiple

TASKS = ("recon", "cls")
# The cloud side works down to 1/4 resolution: inputs are padded to a multiple of
# this, and tiles start on this grid so that each sees the full frame's grid.
SPATIAL_MULTIPLE = 4
# Border of context each tile reads in tiled reconstruction, and the smallest tile.
TILE_MARGIN = 32
MIN_TILE = 32
# the self-ensemble's transforms of the spike windows: (quarter turns, horizontal flip)
ENSEMBLE = [(turns, flip) for turns in range(4) for flip in (False, True)]


@dataclass(frozen=True)
class SCIConfig:
    task: str = "recon"
    fem: FEMConfig = field(default_factory=FEMConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    num_classes: int = 10
    dropout: float = 0.0        # classification head only (training)
    # long-reach propagation over the whole stream before the window (off: the
    # windowed analysis alone, as in checkpoints made before it existed)
    propagation: PropagationConfig = field(default_factory=PropagationConfig)
    # long-reach integration of the stream's spike counts, blended with the
    # windowed output (off: as in checkpoints made before it existed)
    rate: RateConfig = field(default_factory=RateConfig)

    def __post_init__(self):
        from ..config import FieldError, check_fields

        check_fields(self)      # types; FEMConfig and AnalysisConfig check their own values
        if self.task not in TASKS:
            raise FieldError("task", f"must be one of {', '.join(map(repr, TASKS))}, "
                                     f"got {self.task!r}")
        if self.num_classes < 1:
            raise FieldError("num_classes", f"must be >= 1, got {self.num_classes!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise FieldError("dropout", f"must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict:
        return {"task": self.task, "fem": self.fem.to_dict(),
                "analysis": self.analysis.to_dict(), "num_classes": self.num_classes,
                "dropout": self.dropout, "propagation": self.propagation.to_dict(),
                "rate": self.rate.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "SCIConfig":
        """The inverse of to_dict (a checkpoint's model_config); missing keys take the
        defaults, unknown keys and bad values raise ConfigError (a ValueError)."""
        from ..config import build

        return build(cls, d)

    @property
    def span(self) -> int:
        """Spike frames one output needs (41 with the defaults)."""
        return WINDOW + 2 * self.analysis.neighbors * self.analysis.stride


def gather_windows(spikes: torch.Tensor, centres: list[int]) -> torch.Tensor:
    """(B, T, H, W) spikes -> (B, len(centres), 13, H, W) windows around each centre."""
    return torch.stack([spikes[:, c - HALF_WINDOW:c + HALF_WINDOW + 1] for c in centres], dim=1)


@torch.no_grad()
def fem_features(fem: FEM, spikes, stride: int, *, start: int = HALF_WINDOW,
                 batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """End-side feature stream: F_t for t = start, start+stride, ... while the
    13-frame window fits. Returns (times (N,), features (N, H, W) float32)."""
    source = as_source(spikes)
    if int(stride) != stride or stride < 1:
        raise DataError(f"stride must be an integer >= 1, got {stride!r}")
    if start < HALF_WINDOW:
        raise DataError(f"start must be >= {HALF_WINDOW} (the window reaches back that far)")
    if source.num_frames < WINDOW:     # no window fits: an empty stream
        return np.zeros(0, np.int64), np.zeros((0, source.height, source.width), np.float32)
    stream = FeatureExtractor(fem, source, batch=batch).grid_stream(stride, start=start,
                                                                     counts=False)
    return stream.times, stream.features


class SCIModel(nn.Module):
    """Spike windows -> firing-rate image (task "recon") or logits ("cls").

    Inference goes through the end/cloud seam: the end side (``extractor``)
    produces a :class:`~sci_edge.stream.FeatureStream`, the cloud side
    (``reconstruct_stream`` / ``classify_stream``) consumes one, whoever made it.
    ``forward`` (spike windows -> output) is the training path."""

    def __init__(self, config: SCIConfig | None = None):
        super().__init__()
        self.config = config = config or SCIConfig()
        self.fem = FEM(config.fem)
        self.analysis = LongTermAnalysis(config.analysis)
        self.propagation = (FeaturePropagation(config.propagation)
                            if config.propagation.enabled else None)
        self.rate = RateIntegration(config.rate) if config.rate.enabled else None
        w = config.analysis.width
        self.head = (ReconstructionHead(w) if config.task == "recon"
                     else ClassificationHead(w, config.num_classes, dropout=config.dropout))

    @property
    def num_features(self) -> int:
        return 2 * self.config.analysis.neighbors + 1

    def extract(self, windows: torch.Tensor) -> torch.Tensor:
        """End side: (B, N, 13, H, W) spike windows -> features (B, N, H, W)."""
        B, N, L, H, W = windows.shape
        return self.fem(windows.reshape(B * N, L, H, W)).view(B, N, H, W)

    def analyse(self, features: torch.Tensor, flows: torch.Tensor | None = None) -> torch.Tensor:
        """Cloud side: features (B, N, H, W) -> rate image (B, 1, H, W) or logits."""
        padded, size = pad_to_multiple(features, SPATIAL_MULTIPLE)
        return self._analyse_padded(padded, size, flows)

    def _analyse_padded(self, padded: torch.Tensor, size: tuple[int, int],
                        flows: torch.Tensor | None = None,
                        encoded: torch.Tensor | None = None, fast: bool = False) -> torch.Tensor:
        K = self.config.analysis.neighbors
        H, W = size
        if flows is not None and padded.shape[-2:] != (H, W):
            flows = pad_to_multiple(flows.flatten(1, 2), SPATIAL_MULTIPLE)[0]
            flows = flows.view(*flows.shape[:1], -1, 2, *padded.shape[-2:])
        y, _ = self.analysis(padded, flows, encoded, fast=fast)
        out = self.head(y, padded[:, K:K + 1])
        return out[..., :H, :W] if self.config.task == "recon" else out

    def forward(self, windows: torch.Tensor | None, return_features: bool = False, *,
                sequence: torch.Tensor | None = None, counts: torch.Tensor | None = None,
                count_stride: int | None = None, count_at: int | None = None,
                blend: tuple | None = None):
        """Spike windows -> output; with ``return_features`` also the features F.

        ``sequence`` (B, N, H, W), N odd, instead of windows: features on the
        stride grid, propagated over all N, then the output at the middle one
        (training with propagation). ``counts`` (B, N, H, W) spikes per interval of
        ``count_stride`` steps, with the windows of the output at interval
        ``count_at``: the output blended with the counts' long-reach mean, the
        windowed output and that mean (training the rate integration). ``blend``
        (base, mean, reach, stride) instead: the rate integration's blend alone."""
        if blend is not None:
            return self.rate.blend(*blend)
        if counts is not None:
            base = self.analyse(self.extract(windows))
            mean, reach = self.rate(counts, count_stride, [count_at])
            return self.rate.blend(base, mean, reach, count_stride), base, mean
        if sequence is not None:
            K = self.config.analysis.neighbors
            half = sequence.shape[1] // 2
            prop = self.propagate(sequence)
            return self.analyse(prop[:, half - K:half + K + 1])
        features = self.extract(windows)
        out = self.analyse(features)
        return (out, features) if return_features else out

    def propagate(self, features: torch.Tensor, *, reach: int | None = None,
                  lookahead: int | None = None) -> torch.Tensor:
        """Features (B, N, H, W) on the stride grid -> propagated (the same when the
        model has no propagation). ``reach``: spike steps a state may remember
        (None: the whole stream); ``lookahead``: later features an output may use."""
        if self.propagation is None:
            return features
        cap = math.inf if reach is None else max(1.0, reach / self.config.analysis.stride)
        return self.propagation(features, cap=cap, lookahead=lookahead)

    def windows_at(self, spikes: torch.Tensor, t: int) -> torch.Tensor:
        a = self.config.analysis
        return gather_windows(spikes, feature_times(t, spikes.shape[1], a.neighbors, a.stride))

    # --- the seam --------------------------------------------------------------------
    def output_times(self, t: int, num_steps: int, stride: int | None = None) -> list[int]:
        """The feature times the output at spike time t reads (2K+1, clipped inside),
        ``stride`` apart (default: the model's)."""
        a = self.config.analysis
        return feature_times(int(t), int(num_steps), a.neighbors, stride or a.stride)

    def read_stride(self, stream: FeatureStream, times) -> int:
        """The stride at which outputs at ``times`` read ``stream``: the model's where
        the stream holds those features, else the stream's own (a regular stream
        sent at another feature rate: the windowed analysis then reads its 2K+1
        features that far apart)."""
        s = self.config.analysis.stride
        if stream.stride == s or not _on_its_grid(stream):
            return s
        if all(stream.has(u) for t in times for u in self.output_times(t, stream.num_steps)):
            return s
        return int(stream.stride)

    def extractor(self, spikes, **options) -> FeatureExtractor:
        """The end side in process over ``spikes`` (an array or a SpikeSource)."""
        return FeatureExtractor(self.fem, spikes, **options)

    @torch.no_grad()
    def reconstruct_stream(self, stream: FeatureStream, times, *, gain: float | None = None,
                           reach: int | None = None, lookahead: int | None = None,
                           propagate: bool = True,
                           progress: Callable[[float], None] | None = None) -> np.ndarray:
        """Cloud side: intensity images (len(times), H, W) from a feature stream.

        Each output at t reads the stream's features at ``output_times(t)``; they
        must all be in the stream, or the stream is regular at another stride and
        they are read at that stride (``read_stride``). The gain comes from the
        stream unless given. A model with propagation first propagates a regular
        stream at its stride over all of it (``reach``, ``lookahead``: see
        :meth:`reconstruct`); other streams are read as they are. A model with rate
        integration blends each output with the long-reach mean of the stream's
        counts (a regular stream with counts, at any stride; others: the windowed
        output)."""
        gain = stream.gain if gain is None else gain
        _check_gain(gain)
        _check_reach(reach, lookahead)
        times = [int(t) for t in times]
        if propagate and self.propagation is not None and self._regular(stream):
            stream = self._propagated_stream(stream, times, reach, lookahead)
        source = _StreamFeatures(stream)
        stride = self.read_stride(stream, times)
        rates = self._rates(source, times, stream.num_steps, progress, flows=stream,
                            stride=stride)
        if propagate and self.rate is not None and stream.counts is not None \
                and _on_its_grid(stream):
            rates = self._stream_rate_blend(rates, stream, times, reach, lookahead)
        return np.clip(rates / gain, 0.0, 1.0).astype(np.float32)

    @torch.no_grad()
    def reconstruct(self, spikes, times, gain: float, *, ensemble: bool = False,
                    tile: int | None = None, device: str | None = None,
                    reach: int | None = None, lookahead: int | None = None,
                    propagate: bool = True,
                    progress: Callable[[float], None] | None = None) -> np.ndarray:
        """Intensity images (len(times), H, W) = predicted firing rate / gain, in [0, 1].

        ``spikes``: a (T, H, W) array or a :class:`~sci_edge.io.SpikeSource` (read
        window by window, so a long recording stays on disk). Each FEM feature is
        computed once and shared by every output that reads it, and so is its
        cloud-side encoding: outputs ``stride`` steps apart cost about one FEM
        window each instead of 2K+1.
        ``ensemble``: average the model over the 8 flips and quarter turns of the
        spike windows (8x the compute; +0.2 dB on the REDS pairs). It needs the
        spikes: flipping decoded features instead loses about 1 dB, because the
        FEM's spatial layers are not flip-equivariant.
        ``tile``: run the model on tiles of this many pixels a side, each read
        with a ``TILE_MARGIN`` border of context, so memory stays bounded on
        large sensors.
        ``reach``, ``lookahead`` (a model with propagation): the spike steps a
        propagated state remembers (None: the whole recording; features further
        away than that from every output are not computed) and the later features
        each output may wait for (None: all; 0: causal); the same bounds hold for
        a model with rate integration (its counts are read from ``spikes`` on each
        output's stride grid); ``propagate=False`` runs the windowed analysis
        alone.
        ``progress``: called with the fraction of one output just finished."""
        if self.config.task != "recon":
            raise DataError("this model classifies; it does not reconstruct")
        _check_gain(gain)
        _check_reach(reach, lookahead)
        tile = _check_tile(tile)
        source = as_source(spikes)
        T, H, W = source.shape
        times = [_check_time(t, T) for t in times]
        dev = torch.device(device or next(self.parameters()).device)
        self.eval()
        passes = ENSEMBLE if ensemble else [(0, False)]
        regions = _tiles(H, W, tile)
        step = None if progress is None else (lambda f: progress(f / len(passes) / len(regions)))
        rate = np.zeros((len(times), H, W), np.float32)
        for region, keep in regions:
            (ya, _, xa, _), (y0, y1, x0, x1) = region, keep
            total = None
            for tf in passes:
                ext = FeatureExtractor(self.fem, source, region=region, transform=tf, device=dev)
                if propagate and self.propagation is not None:
                    ext = self._propagated_features(ext, times, T, reach, lookahead)
                r = self._rates(ext, times, T, step, transform=tf)
                total = r if total is None else total + r
            part = total / len(passes) if len(passes) > 1 else total
            rate[:, y0:y1, x0:x1] = part[:, y0 - ya:y1 - ya, x0 - xa:x1 - xa]
        if propagate and self.rate is not None:
            s = self.config.analysis.stride
            rate = self._rate_blend(rate, times, T, reach, lookahead,
                                    lambda ts: interval_counts(source, ts, s))
        return np.clip(rate / gain, 0.0, 1.0).astype(np.float32)

    # --- long-reach propagation ------------------------------------------------------
    def _grid(self, t0: int, t1: int, num_steps: int, residue: int,
              reach: int | None) -> list[int]:
        """Feature times on the stride grid through ``residue`` that outputs in
        [t0, t1] may read: the whole recording, or ``reach`` steps beyond the window."""
        s = self.config.analysis.stride
        lo, hi = HALF_WINDOW, num_steps - 1 - HALF_WINDOW
        if reach is not None:
            a, b = self._reach_span(t0, t1, reach)
            lo, hi = max(lo, a), min(hi, b)
        first = lo + (residue - lo) % s
        return list(range(first, hi + 1, s))

    def _reach_span(self, t0: int, t1: int, reach: int) -> tuple[int, int]:
        """Feature times outputs in [t0, t1] may read with ``reach``: the window, and
        ``reach`` steps beyond it on each side."""
        s, K = self.config.analysis.stride, self.config.analysis.neighbors
        return t0 - K * s - reach, t1 + K * s + reach

    def _propagated_features(self, features: FeatureExtractor, times: list[int],
                             num_steps: int, reach, lookahead) -> "_DictFeatures":
        """The features the outputs at ``times`` read, propagated along the stride
        grid of each output time (outputs off a common grid get their own); the
        clipped times at the recording's ends, off every grid, stay as computed."""
        s = self.config.analysis.stride
        needed = {u for t in times for u in self.output_times(t, num_steps)}
        out: dict[int, torch.Tensor] = {}
        for r in sorted({t % s for t in times}):
            mine = [t for t in times if t % s == r]
            grid = self._grid(min(mine), max(mine), num_steps, r, reach)
            if not grid:
                continue
            feats = features.get(grid)
            features.release(num_steps)       # held below, not twice
            prop = self.propagate(feats[None], reach=reach, lookahead=lookahead)[0]
            out.update((u, f) for u, f in zip(grid, prop) if u in needed)
            del feats, prop
        rest = sorted(needed - set(out))
        if rest:
            out.update(zip(rest, features.get(rest)))
        return _DictFeatures(out)

    def _regular(self, stream: FeatureStream) -> bool:
        s = self.config.analysis.stride
        return len(stream) > 1 and bool(np.all(np.diff(stream.times) == s))

    def _propagated_stream(self, stream: FeatureStream, times: list[int], reach,
                           lookahead) -> FeatureStream:
        keep = np.ones(len(stream), bool)
        if reach is not None and times:
            lo, hi = self._reach_span(min(times), max(times), reach)
            keep = (stream.times >= lo) & (stream.times <= hi)
        ts = stream.times[keep]
        dev = next(self.parameters()).device
        feats = torch.from_numpy(np.ascontiguousarray(stream.features[keep])).to(dev)
        prop = self.propagate(feats[None], reach=reach, lookahead=lookahead)[0]
        return FeatureStream(times=ts, features=prop.cpu().numpy(), num_steps=stream.num_steps,
                             stride=stream.stride, gain=stream.gain, flows=stream.flows,
                             counts=None if stream.counts is None else stream.counts[keep])

    # --- long-reach rate integration ----------------------------------------------------
    def _rate_blend(self, base: np.ndarray, times: list[int], num_steps: int, reach,
                    lookahead, counts_at: Callable[[list[int]], np.ndarray]) -> np.ndarray:
        """Windowed rates (len(times), H, W) blended with the long-reach mean of the
        spike counts on each output's stride grid (outputs off every grid, at the
        recording's clipped ends, stay as they are)."""
        s = self.config.analysis.stride
        out = base.copy()
        for r in sorted({t % s for t in times}):
            mine = [i for i, t in enumerate(times) if t % s == r]
            grid = self._grid(min(times[i] for i in mine), max(times[i] for i in mine),
                              num_steps, r, reach)
            pos = {u: k for k, u in enumerate(grid)}
            mine = [i for i in mine if times[i] in pos]
            if not mine:
                continue
            counts = torch.from_numpy(counts_at(grid).astype(np.float32))
            out[mine] = self.blend_counts(counts, base[mine], [pos[times[i]] for i in mine],
                                          s, reach=reach, lookahead=lookahead)
        return out

    def _stream_rate_blend(self, base: np.ndarray, stream: FeatureStream, times: list[int],
                           reach, lookahead) -> np.ndarray:
        keep = np.ones(len(stream), bool)
        if reach is not None and times:
            lo, hi = self._reach_span(min(times), max(times), reach)
            keep = (stream.times >= lo) & (stream.times <= hi)
        ts = stream.times[keep]
        pos = {int(u): k for k, u in enumerate(ts)}
        mine = [i for i, t in enumerate(times) if t in pos]
        out = base.copy()
        if mine:
            counts = torch.from_numpy(stream.counts[keep].astype(np.float32))
            out[mine] = self.blend_counts(counts, base[mine], [pos[times[i]] for i in mine],
                                          int(stream.stride), reach=reach, lookahead=lookahead)
        return out

    @torch.no_grad()
    def blend_counts(self, counts: torch.Tensor, base: np.ndarray, at: list[int],
                     stride: int, *, reach: int | None = None,
                     lookahead: int | None = None) -> np.ndarray:
        """Counts (N, H, W) on a grid ``stride`` apart, windowed rates ``base``
        (len(at), H, W) at grid positions ``at`` -> blended rates, same shape."""
        dev = next(self.parameters()).device
        cap = math.inf if reach is None else max(1.0, reach / stride)
        mean, n = self.rate(counts[None].to(dev), stride, at, cap=cap, lookahead=lookahead)
        b = torch.from_numpy(np.ascontiguousarray(base, dtype=np.float32)).to(dev)
        out = [self.rate.blend(b[None, k:k + 1], mean[:, k:k + 1], n[:, k:k + 1], stride)
               for k in range(len(at))]
        return torch.cat(out, 1)[0].cpu().numpy()

    @torch.no_grad()
    def _rates(self, features, times: list[int], num_steps: int, progress, *,
               transform: tuple[int, bool] = (0, False), flows: FeatureStream | None = None,
               stride: int | None = None) -> np.ndarray:
        """(len(times), h, w) rates: outputs served in time order, every feature and
        its encoding computed once and dropped when no later output needs it."""
        order = sorted(range(len(times)), key=lambda i: times[i])
        needs = [self.output_times(times[i], num_steps, stride) for i in order]
        enc: dict[int, torch.Tensor] = {}
        out: list[np.ndarray | None] = [None] * len(times)
        lookahead = max(1, getattr(features, "batch", 1))
        dev = next(self.parameters()).device
        for j, i in enumerate(order):
            ft = needs[j]
            # fill whole FEM batches: the features of the next outputs come along
            upcoming = [u for n in needs[j:j + lookahead] for u in n]
            features.compute(upcoming)
            feats = features.get(ft).to(dev)
            padded, size = pad_to_multiple(feats[None], SPATIAL_MULTIPLE)
            new = [u for u in dict.fromkeys(ft) if u not in enc]   # ft repeats at the ends
            if new:
                enc.update(zip(new, self.analysis.encode_features(
                    padded[:, [ft.index(u) for u in new]])[0]))
            encoded = torch.stack([enc[u] for u in ft])[None]
            y = self._analyse_padded(padded, size, _given_flows(flows, ft, self.config),
                                     encoded, fast=True)
            out[i] = untransform(y, transform)[0, 0].cpu().numpy()
            nxt = min(needs[j + 1]) if j + 1 < len(needs) else None
            if nxt is not None:
                features.release(nxt)
                for u in [u for u in enc if u < nxt]:
                    del enc[u]
            if progress is not None:
                progress(1.0)
        return np.stack(out) if out else np.zeros((0, 0, 0), np.float32)

    @torch.no_grad()
    def classify_stream(self, streams, t: int | None = None) -> np.ndarray:
        """Cloud side: logits (B, classes) from one feature stream per sequence,
        at spike time t (default: the middle), one batch."""
        if self.config.task != "cls":
            raise DataError("this model reconstructs; it does not classify")
        streams = [streams] if isinstance(streams, FeatureStream) else list(streams)
        feats = []
        for s in streams:
            tt = s.num_steps // 2 if t is None else int(t)
            feats.append(s.at(self.output_times(tt, s.num_steps)))
        dev = next(self.parameters()).device
        return self.analyse(torch.from_numpy(np.stack(feats)).to(dev)).cpu().numpy()

    @torch.no_grad()
    def classify(self, spikes, *, t: int | None = None, device: str | None = None,
                 batch: int = 64) -> np.ndarray:
        """Logits (B, classes) for spikes (B, T, H, W) (or one (T, H, W)) at t
        (default: the middle): the FEM makes each sequence's feature stream, the
        cloud side classifies the streams, ``batch`` sequences at a time."""
        if self.config.task != "cls":
            raise DataError("this model reconstructs; it does not classify")
        x = np.asarray(spikes)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4:
            raise DataError(f"spikes must be (B, T, H, W) or (T, H, W), got shape {x.shape}")
        T = x.shape[1]
        tt = T // 2 if t is None else _check_time(t, T)
        uniq = sorted(set(self.output_times(tt, T)))
        dev = torch.device(device or next(self.parameters()).device)
        self.eval()
        out = []
        for b0 in range(0, x.shape[0], batch):
            part = x[b0:b0 + batch].astype(np.uint8, copy=False)
            # all windows of the batch through the FEM at once, then one stream each
            wins = torch.from_numpy(np.ascontiguousarray(
                np.stack([part[:, c - HALF_WINDOW:c + HALF_WINDOW + 1] for c in uniq], 1)))
            f = self.extract(wins.to(dev, torch.float32)).cpu().numpy()
            streams = [FeatureStream(times=np.array(uniq), features=fb, num_steps=T)
                       for fb in f]
            out.append(self.classify_stream(streams, tt))
        return np.concatenate(out)

    @torch.no_grad()
    def reconstruct_windowed(self, spikes, times, gain: float, *, ensemble: bool = False,
                             tile: int | None = None) -> np.ndarray:
        """The per-output path: every output runs the whole model on its own 2K+1
        spike windows, sharing nothing. Kept as the reference that
        :meth:`reconstruct` is checked against (tests, ``sci-edge bench recon``)."""
        _check_gain(gain)
        tile = _check_tile(tile)
        arr = np.asarray(spikes)
        x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.uint8))[None]
        dev = next(self.parameters()).device
        self.eval()
        out = []
        for t in times:
            windows = self.windows_at(x, _check_time(t, arr.shape[0]))
            H, W = windows.shape[-2:]
            rate = np.empty((H, W), np.float32)
            for (ya, yb, xa, xb), (y0, y1, x0, x1) in _tiles(H, W, tile):
                part = self._rate_windows(windows[..., ya:yb, xa:xb], dev, ensemble)
                rate[y0:y1, x0:x1] = part[y0 - ya:y1 - ya, x0 - xa:x1 - xa]
            out.append(np.clip(rate / gain, 0.0, 1.0))
        return np.stack(out).astype(np.float32)

    def _rate_windows(self, windows: torch.Tensor, dev, ensemble: bool) -> np.ndarray:
        win = windows.to(dev, torch.float32)
        passes = ENSEMBLE if ensemble else [(0, False)]
        total = None
        for tf in passes:
            r = untransform(self(transform_window(win, tf)), tf)
            total = r if total is None else total + r
        return (total / len(passes))[0, 0].cpu().numpy()


class _StreamFeatures:
    """A FeatureStream behind the extractor's compute/get/release interface."""

    batch = 1

    def __init__(self, stream: FeatureStream):
        self.stream = stream

    def compute(self, times) -> None:
        pass

    def get(self, times) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.stream.at(times)))

    def release(self, before: int) -> None:
        pass


class _DictFeatures(_StreamFeatures):
    """Features ready by time (the propagated ones) behind the same interface."""

    def __init__(self, features: dict[int, torch.Tensor]):
        self.features = features

    def get(self, times) -> torch.Tensor:
        return torch.stack([self.features[int(t)] for t in times])

    def release(self, before: int) -> None:
        for t in [t for t in self.features if t < before]:
            del self.features[t]


def _on_its_grid(stream: FeatureStream) -> bool:
    """A regular stream: two or more features, exactly its stride apart."""
    return stream.stride is not None and len(stream) > 1 and \
        bool(np.all(np.diff(stream.times) == stream.stride))


def _check_reach(reach, lookahead) -> None:
    if reach is not None and (int(reach) != reach or reach < 1):
        raise DataError(f"reach must be an integer >= 1 spike step, got {reach!r}")
    if lookahead is not None and (int(lookahead) != lookahead or lookahead < 0):
        raise DataError(f"lookahead must be an integer >= 0 features, got {lookahead!r}")


def _given_flows(stream: FeatureStream | None, ft: list[int], config: SCIConfig):
    """Motion vectors supplied with the stream for this output, (1, 2K, 2, H, W), or None
    (the analysis estimates its own). All 2K must be given, or none."""
    if stream is None or not stream.flows:
        return None
    K = config.analysis.neighbors
    centre = ft[K]
    pairs = [stream.flow(centre, u) for k, u in enumerate(ft) if k != K]
    if any(p is None for p in pairs):
        return None
    return torch.from_numpy(np.stack(pairs).astype(np.float32))[None]


def _check_gain(gain) -> None:
    if gain is None or not np.isfinite(gain) or gain <= 0:
        raise DataError(f"gain must be positive, got {gain!r}")


def _check_tile(tile):
    if tile is None:
        return None
    if int(tile) != tile or tile < MIN_TILE:
        raise DataError(f"tile must be an integer >= {MIN_TILE} pixels, got {tile!r}")
    return int(tile)


def _check_time(t, T: int) -> int:
    if int(t) != t or not 0 <= int(t) < T:
        raise DataError(f"spike time {t} outside 0..{T - 1}")
    return int(t)


def _tiles(H: int, W: int, tile: int | None):
    """[(read region, kept region)]: each tile read with a TILE_MARGIN border, the
    read region starting on the SPATIAL_MULTIPLE grid so it sees the frame's grid."""
    if tile is None or (H <= tile and W <= tile):
        return [((0, H, 0, W), (0, H, 0, W))]
    out = []
    for y0 in range(0, H, tile):
        for x0 in range(0, W, tile):
            y1, x1 = min(y0 + tile, H), min(x0 + tile, W)
            ya, xa = (max(v - TILE_MARGIN, 0) // SPATIAL_MULTIPLE * SPATIAL_MULTIPLE
                      for v in (y0, x0))
            yb, xb = min(y1 + TILE_MARGIN, H), min(x1 + TILE_MARGIN, W)
            out.append(((ya, yb, xa, xb), (y0, y1, x0, x1)))
    return out
