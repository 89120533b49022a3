"""The whole SCI perception path: FEM (end side) + long-term analysis and a task
head (cloud side).

Time layout: features are taken every ``stride`` spike steps; the output at t
uses the 2K+1 features at t-K*stride .. t+K*stride, each from the FEM's
13-frame window around its time. With the defaults (K=2, stride=7) that is
41 spike frames, t-20 .. t+20. Near the ends of a recording the feature
times are clipped so that every window lies inside it (at least 13 frames).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .cloud.analysis import AnalysisConfig, LongTermAnalysis
from .cloud.heads import ClassificationHead, ReconstructionHead
from .end.fem import FEM, HALF_WINDOW, WINDOW, FEMConfig
from .layers import pad_to_multiple

TASKS = ("recon", "cls")
# The cloud side works down to 1/4 resolution: inputs are padded to a multiple of
# this, and tiles start on this grid so that each sees the full frame's grid.
SPATIAL_MULTIPLE = 4
# Border of context each tile reads in tiled reconstruction, and the smallest tile.
TILE_MARGIN = 32
MIN_TILE = 32


@dataclass(frozen=True)
class SCIConfig:
    task: str = "recon"
    fem: FEMConfig = field(default_factory=FEMConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    num_classes: int = 10
    dropout: float = 0.0        # classification head only (training)

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict:
        return {"task": self.task, "fem": self.fem.to_dict(),
                "analysis": self.analysis.to_dict(), "num_classes": self.num_classes,
                "dropout": self.dropout}

    @classmethod
    def from_dict(cls, d: dict) -> "SCIConfig":
        return cls(task=d.get("task", "recon"), fem=FEMConfig(**d.get("fem", {})),
                   analysis=AnalysisConfig(**d.get("analysis", {})),
                   num_classes=int(d.get("num_classes", 10)),
                   dropout=float(d.get("dropout", 0.0)))

    @property
    def span(self) -> int:
        """Spike frames one output needs (41 with the defaults)."""
        return WINDOW + 2 * self.analysis.neighbors * self.analysis.stride


def feature_times(t: int, num_frames: int, neighbors: int, stride: int) -> list[int]:
    """Centre times of the 2K+1 FEM windows for an output at t, clipped inside."""
    if num_frames < WINDOW:
        raise ValueError(f"the SCI model needs at least {WINDOW} spike frames, got {num_frames}")
    lo, hi = HALF_WINDOW, num_frames - 1 - HALF_WINDOW
    return [min(max(t + k * stride, lo), hi) for k in range(-neighbors, neighbors + 1)]


def gather_windows(spikes: torch.Tensor, centres: list[int]) -> torch.Tensor:
    """(B, T, H, W) spikes -> (B, len(centres), 13, H, W) windows around each centre."""
    return torch.stack([spikes[:, c - HALF_WINDOW:c + HALF_WINDOW + 1] for c in centres], dim=1)


@torch.no_grad()
def fem_features(fem: FEM, spikes, stride: int, *, start: int = HALF_WINDOW,
                 batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """End-side feature stream: F_t for t = start, start+stride, ... while the
    13-frame window fits. Returns (times (N,), features (N, H, W) float32)."""
    arr = np.asarray(spikes)
    if arr.ndim != 3:
        raise ValueError(f"spikes must be (T, H, W), got shape {arr.shape}")
    if int(stride) != stride or stride < 1:
        raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
    if start < HALF_WINDOW:
        raise ValueError(f"start must be >= {HALF_WINDOW} (the window reaches back that far)")
    times = np.arange(start, arr.shape[0] - HALF_WINDOW, int(stride), dtype=np.int64)
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.uint8))[None]
    dev = next(fem.parameters()).device
    fem.eval()
    out = []
    for i in range(0, len(times), batch):
        win = gather_windows(x, [int(t) for t in times[i:i + batch]])[0]
        out.append(fem(win.to(dev, torch.float32))[:, 0].cpu().numpy())
    feats = np.concatenate(out) if out else np.zeros((0, *arr.shape[1:]), np.float32)
    return times, feats


class SCIModel(nn.Module):
    """Spike windows -> firing-rate image (task "recon") or logits ("cls")."""

    def __init__(self, config: SCIConfig | None = None):
        super().__init__()
        self.config = config = config or SCIConfig()
        self.fem = FEM(config.fem)
        self.analysis = LongTermAnalysis(config.analysis)
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
        K = self.config.analysis.neighbors
        padded, (H, W) = pad_to_multiple(features, SPATIAL_MULTIPLE)
        if flows is not None and padded.shape[-2:] != (H, W):
            flows = pad_to_multiple(flows.flatten(1, 2), SPATIAL_MULTIPLE)[0]
            flows = flows.view(*flows.shape[:1], -1, 2, *padded.shape[-2:])
        y, _ = self.analysis(padded, flows)
        out = self.head(y, padded[:, K:K + 1])
        return out[..., :H, :W] if self.config.task == "recon" else out

    def forward(self, windows: torch.Tensor, return_features: bool = False):
        """Spike windows -> output; with ``return_features`` also the features F."""
        features = self.extract(windows)
        out = self.analyse(features)
        return (out, features) if return_features else out

    def windows_at(self, spikes: torch.Tensor, t: int) -> torch.Tensor:
        a = self.config.analysis
        return gather_windows(spikes, feature_times(t, spikes.shape[1], a.neighbors, a.stride))

    @torch.no_grad()
    def reconstruct(self, spikes, times, gain: float, *, ensemble: bool = False,
                    tile: int | None = None, device: str | None = None) -> np.ndarray:
        """Intensity images (len(times), H, W) = predicted firing rate / gain, in [0, 1].

        ``ensemble``: average the model over the 8 flips and quarter turns of the
        spike windows (8x the compute; +0.2 dB on the REDS pairs). It needs the
        spikes: flipping decoded features instead loses about 1 dB, because the
        FEM's spatial layers are not flip-equivariant.
        ``tile``: run the model on tiles of this many pixels a side, each read
        with a ``TILE_MARGIN`` border of context, so memory stays bounded on
        large sensors (a 1000x1000 frame: 8.3 GB whole, 1.7 GB in tiles of 256).
        """
        if self.config.task != "recon":
            raise ValueError("this model classifies; it does not reconstruct")
        if not np.isfinite(gain) or gain <= 0:
            raise ValueError(f"gain must be positive, got {gain!r}")
        if tile is not None and (int(tile) != tile or tile < MIN_TILE):
            raise ValueError(f"tile must be an integer >= {MIN_TILE} pixels, got {tile!r}")
        tile = None if tile is None else int(tile)
        arr = np.asarray(spikes)
        if arr.ndim != 3:
            raise ValueError(f"spikes must be (T, H, W), got shape {arr.shape}")
        dev = torch.device(device or next(self.parameters()).device)
        x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.uint8))[None]
        self.eval()
        out = []
        for t in times:
            if not 0 <= int(t) < arr.shape[0]:
                raise ValueError(f"time {t} outside 0..{arr.shape[0] - 1}")
            windows = self.windows_at(x, int(t))
            rate = self._rate_tiled(windows, dev, ensemble, tile)
            out.append(np.clip(rate / gain, 0.0, 1.0))
        return np.stack(out).astype(np.float32)

    def _rate_tiled(self, windows: torch.Tensor, dev, ensemble: bool,
                    tile: int | None) -> np.ndarray:
        """(1, N, 13, H, W) uint8 windows -> (H, W) firing rate, tile by tile."""
        H, W = windows.shape[-2:]
        if tile is None or (H <= tile and W <= tile):
            return self._rate(windows, dev, ensemble)
        rate = np.empty((H, W), np.float32)
        for y0 in range(0, H, tile):
            for x0 in range(0, W, tile):
                y1, x1 = min(y0 + tile, H), min(x0 + tile, W)
                ya, xa = (max(v - TILE_MARGIN, 0) // SPATIAL_MULTIPLE * SPATIAL_MULTIPLE
                          for v in (y0, x0))
                yb, xb = min(y1 + TILE_MARGIN, H), min(x1 + TILE_MARGIN, W)
                part = self._rate(windows[..., ya:yb, xa:xb], dev, ensemble)
                rate[y0:y1, x0:x1] = part[y0 - ya:y1 - ya, x0 - xa:x1 - xa]
        return rate

    def _rate(self, windows: torch.Tensor, dev, ensemble: bool) -> np.ndarray:
        win = windows.to(dev, torch.float32)
        if not ensemble:
            return self(win)[0, 0].cpu().numpy()
        total = None
        for turns in range(4):
            for flip in (False, True):
                w = torch.rot90(win, turns, dims=(3, 4))
                w = w.flip(4) if flip else w
                r = self(w)
                r = r.flip(3) if flip else r
                r = torch.rot90(r, -turns, dims=(2, 3))
                total = r if total is None else total + r
        return (total / 8)[0, 0].cpu().numpy()

    @torch.no_grad()
    def classify(self, spikes, *, t: int | None = None, device: str | None = None) -> np.ndarray:
        """Logits (B, classes) for spikes (B, T, H, W) at t (default: the middle)."""
        if self.config.task != "cls":
            raise ValueError("this model reconstructs; it does not classify")
        x = torch.as_tensor(np.asarray(spikes, dtype=np.uint8))
        if x.ndim == 3:
            x = x[None]
        t = x.shape[1] // 2 if t is None else t
        dev = torch.device(device or next(self.parameters()).device)
        self.eval()
        return self(self.windows_at(x, t).to(dev, torch.float32)).cpu().numpy()
