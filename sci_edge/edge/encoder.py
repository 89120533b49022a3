"""Spikes -> ``.sci`` on the device, with no torch: the end side of the feature codec.

:class:`EdgeEncoder` runs, per feature time t (every ``stride`` spike steps from
the window's half width while a window fits), the 13-frame window around t
through the popcount kernel (``pack_time`` -> ``dots_words``), the FEM tail,
the feature encoder and the hyper encoder (onnxruntime, fp32 or INT8 graphs of
a device bundle), then the codec's integer work in numpy: rounding, the
integer hyper-synthesis and rANS. It reproduces
:meth:`sci_edge.models.codec.FeatureCodec.encode_frame` step for step, so its
streams carry the bundle's model id and weights hash and decode in the torch
cloud decoder (:func:`sci_edge.models.coding.decompress`) to exactly the
symbols coded here. Float results of the graphs may differ from torch's in
the last bits (INT8 more), which moves a rounding now and then: a different
but equally decodable stream.

Windows are read from a :class:`~sci_edge.io.SpikeSource` a batch at a time
and each frame is written as soon as it is coded: memory stays bounded.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .._threads import resolve_threads
from ..codec.bitstream import Frame, FrameType, SciHeader, SciWriter
from ..codec import skip as blockskip
from ..codec.rates import CodedRates
from ..errors import DataError
from ..io.source import as_source
from .backends import load_backend
from .bundle import GRAPHS, Bundle, load_bundle
from .features import EdgeFEM

INTRA, INTER = 0, 1
ENCODER_PRECISIONS = ("int8", "fp32")
# windows per onnxruntime call: up to this many pixels, at most MAX_BATCH windows. The
# FEM tail's activations take about 5 kB a pixel, so memory grows with the batch while
# speed barely does: one 250x400 window a call keeps a stream under 1 GB.
BATCH_PIXELS = 1 << 17
MAX_BATCH = 8
STAGES = ("read", "popcount", "fem_tail", "encoder", "entropy")


# ---- the torch path's small helpers (sci_edge.models.coding imports torch) ---------------
def is_intra(index: int, intra_period: int) -> bool:
    return index == 0 or (intra_period > 0 and index % intra_period == 0)


def frame_times(num_steps: int, stride: int, start: int = 6, half_window: int = 6) -> range:
    """Spike times of the coded features: start, start + stride, ... while a window fits."""
    return range(int(start), int(num_steps) - int(half_window), int(stride))


def coding_scale(gain: float | None) -> float:
    """What features are divided by before coding: the camera gain, 1 when unknown."""
    return float(np.float32(gain)) if gain else 1.0


def pad_replicate(x: np.ndarray, multiple: int) -> np.ndarray:
    """(..., H, W) -> edge-replicated at the bottom and right to multiples of ``multiple``
    (torch's F.pad(mode="replicate") as the codec pads)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not ph and not pw:
        return x
    return np.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)], mode="edge")


@dataclass
class EdgeEncodeResult(CodedRates):
    path: str
    frames: int
    bits: int              # the real stream size, header included
    num_steps: int
    height: int
    width: int
    seconds: float
    quality: int
    stride: int
    intra_period: int
    gain: float | None     # as the header holds it (float32), None = unknown
    precision: str
    stages: dict[str, float] = field(default_factory=dict)   # seconds per pipeline stage
    symbols: list[np.ndarray] | None = None                  # q per frame, when asked for

    def to_dict(self) -> dict:
        return {**self.rate_dict(), "quality": self.quality,
                "stride": self.stride, "intra_period": self.intra_period, "gain": self.gain,
                "precision": self.precision, "stage_seconds": dict(self.stages)}


def _check_int(name: str, value, lo: int, hi: int, extra: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or not lo <= value <= hi:
        raise DataError(f"{name} must be an integer in {lo}..{hi}{extra}, got {value!r}")
    return int(value)


class EdgeEncoder:
    """The on-device encoder of a bundle (folder from ``export_bundle``).

    ``precision``: "int8" (the bundle's INT8 CPU graphs) or "fp32";
    ``threads``: for onnxruntime and the popcount kernel (default: all usable
    CPUs, or SCI_EDGE_NUM_THREADS); ``batch``: windows per graph call."""

    def __init__(self, bundle_dir: str | Path | Bundle, *, precision: str = "int8",
                 threads: int | None = None, batch: int | None = None, verify: bool = True):
        if precision not in ENCODER_PRECISIONS:
            raise DataError(f"precision must be one of {', '.join(ENCODER_PRECISIONS)}, "
                            f"got {precision!r}")
        if threads is not None:
            _check_int("threads", threads, 1, 1024)
        if batch is not None:
            _check_int("batch", batch, 1, 1024)
        self.bundle = bundle_dir if isinstance(bundle_dir, Bundle) else \
            load_bundle(Path(bundle_dir).expanduser(), verify=verify)
        self.precision = precision
        self.threads = resolve_threads(threads)
        self.batch = batch
        b = self.bundle
        self.graphs = {g: load_backend(b.graph_path(g, precision), threads=self.threads)
                       for g in GRAPHS}
        self.fem = EdgeFEM(b.filter_bank, self.graphs["fem_tail"], threads=self.threads)
        cz = b.hyper_channels
        self._z_index = {kind: np.arange(cz, dtype=np.int32) + kind * cz
                         for kind in (INTRA, INTER)}

    @property
    def qualities(self) -> int:
        return self.bundle.qualities

    def _batch_size(self, h: int, w: int) -> int:
        return self.batch or max(1, min(MAX_BATCH, BATCH_PIXELS // max(1, h * w)))

    def _windows(self, source, centres: list[int]) -> list[np.ndarray]:
        half, win = self.bundle.half_window, self.bundle.window
        lo, hi = centres[0] - half, centres[-1] + half + 1
        if hi - lo <= win * len(centres):      # overlapping windows: one read
            span = source.read(lo, hi - lo)
            return [span[c - half - lo:c + half + 1 - lo] for c in centres]
        return [source.read(c - half, win) for c in centres]

    def _hyper_indexes(self, kind: int, shape) -> np.ndarray:
        idx = self._z_index[kind]
        return np.broadcast_to(idx[:, None, None], (idx.size, *shape))

    def _code_all(self, kind, z, q, prev, tables) -> tuple[bytes, bytes]:
        """The two parts of a frame that codes every block (q = round(u))."""
        mean, index = tables.synthesis[kind](z)
        sym = q - mean if kind == INTRA else q - prev - mean
        return (tables.hyper.encode(z, self._hyper_indexes(kind, z.shape[1:])),
                tables.gaussian.encode(sym, index))

    def _code_batch(self, u, q, kinds, prev_q, hyper, tables, stages):
        # without skipping, q = round(u) and the P context is the previous frame's q,
        # known before any hyper net runs: the batch goes through each graph at once
        t0 = time.perf_counter()
        prevs, v = [], np.empty_like(u)
        for j, kind in enumerate(kinds):
            prev = None if kind == INTRA else (q[j - 1] if j else prev_q)
            prevs.append(prev)
            v[j] = u[j] if kind == INTRA else u[j] - prev.astype(np.float32)
        z: list = [None] * len(kinds)
        for kind in (INTRA, INTER):
            sel = [j for j, k in enumerate(kinds) if k == kind]
            if sel:
                for j, zj in zip(sel, hyper[kind].run({"v": v[sel]})["z"]):
                    z[j] = np.round(zj).astype(np.int32)
        t1 = time.perf_counter()
        coded = [(kind, self._code_all(kind, z[j], q[j], prevs[j], tables), q[j])
                 for j, kind in enumerate(kinds)]
        stages["encoder"] += t1 - t0
        stages["entropy"] += time.perf_counter() - t1
        return coded, q[-1]

    def _code_skipping(self, u, q, kinds, prev_q, hyper, tables, steps, kappa, stages):
        # a skipped block keeps the previous q, so a P frame's context is known only once
        # the frame before is coded: the hyper nets run frame by frame
        coded = []
        for j, kind in enumerate(kinds):
            t0 = time.perf_counter()
            v = u[j] if kind == INTRA else u[j] - prev_q.astype(np.float32)
            z = np.round(hyper[kind].run({"v": v[None]})["z"][0]).astype(np.int32)
            t1 = time.perf_counter()
            if kind == INTRA:
                parts, qj = self._code_all(kind, z, q[j], None, tables), q[j]
            else:
                parts, qj = blockskip.code_inter(v, q[j], prev_q, z, tables, steps,
                                                 self._hyper_indexes(kind, z.shape[1:]),
                                                 kappa=kappa)
            coded.append((kind, parts, qj))
            prev_q = qj
            stages["encoder"] += t1 - t0
            stages["entropy"] += time.perf_counter() - t1
        return coded, prev_q

    def encode(self, spikes_or_source, out: str | Path | BinaryIO, *, quality: int,
               stride: int = 5, intra_period: int = 32, gain: float | None = None,
               progress: Callable[[int, int], None] | None = None,
               keep_symbols: bool = False,
               skip: float | None = blockskip.DEFAULT_KAPPA) -> EdgeEncodeResult:
        """Encode a spike source (a SpikeSource, or a (T, H, W) 0/1 array) into ``out``
        (a path, written atomically, or a binary stream, flushed frame by frame).
        ``skip``: P frames' block skipping (:mod:`sci_edge.codec.skip`), its
        rate-distortion factor, or None for none (what the torch encoder does alike)."""
        b = self.bundle
        Q = b.qualities
        quality = _check_int("quality", quality, 0, Q - 1, " (the bundle's quality indexes)")
        stride = _check_int("stride", stride, 1, 0xFFFF)
        if isinstance(intra_period, bool) or not isinstance(intra_period, (int, np.integer)) \
                or intra_period == 0 or not -1 <= intra_period <= 0x7FFF:
            raise DataError(f"intra period must be -1 (only the first frame) or 1..32767, "
                            f"got {intra_period!r}")
        intra_period = int(intra_period)
        skip = blockskip.check_skip(skip)
        source = as_source(spikes_or_source)
        half = b.half_window
        times = frame_times(source.num_frames, stride, half, half)
        if len(times) == 0:
            raise DataError(f"{source.name}: {source.num_frames} spike frames, too few for one "
                            f"feature ({b.window} needed)")
        H, W = source.height, source.width
        header = SciHeader(model_id=b.model_id, weights_hash=b.weights_hash, height=H,
                           width=W, stride=stride, num_steps=source.num_frames, start=half,
                           gain=gain, intra_period=intra_period, quality=quality)
        scale = np.float32(coding_scale(header.gain))
        step = b.steps[quality][None, :, None, None]
        tables, fem, analysis = b.tables, self.fem, self.graphs["encoder_analysis"]
        hyper = {INTRA: self.graphs["hyper_intra"], INTER: self.graphs["hyper_inter"]}
        stages = dict.fromkeys(STAGES, 0.0)
        batch = self._batch_size(H, W)
        symbols: list[np.ndarray] | None = [] if keep_symbols else None
        prev_q = None
        n = len(times)
        t_start = time.perf_counter()
        with SciWriter(out, header) as writer:
            for i in range(0, n, batch):
                centres = list(times[i:i + batch])
                t0 = time.perf_counter()
                windows = self._windows(source, centres)
                t1 = time.perf_counter()
                dots = fem.dots(windows)
                t2 = time.perf_counter()
                feats = fem.features(dots)[:, None]                      # (B, 1, H, W)
                t3 = time.perf_counter()
                x = pad_replicate(feats / scale, b.spatial_multiple)
                u = analysis.run({"feature": x})["y"] / step               # float32
                q = np.round(u).astype(np.int32)                          # half to even
                kinds = [INTRA if is_intra(i + j, intra_period) else INTER
                         for j in range(len(centres))]
                t4 = time.perf_counter()
                stages["encoder"] += t4 - t3
                if skip is None:
                    coded, prev_q = self._code_batch(u, q, kinds, prev_q, hyper, tables,
                                                     stages)
                else:
                    coded, prev_q = self._code_skipping(u, q, kinds, prev_q, hyper, tables,
                                                        b.steps[quality], skip, stages)
                for j, (kind, parts, qj) in enumerate(coded):
                    writer.write(Frame(FrameType.I if kind == INTRA else FrameType.P, i + j,
                                       parts))
                    if symbols is not None:
                        symbols.append(qj.copy())
                for name, dt in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2)):
                    stages[name] += dt
                if progress is not None:
                    progress(i + len(centres), n)
            written = writer.bytes_written
        seconds = time.perf_counter() - t_start
        path = out if isinstance(out, (str, Path)) else writer.path
        return EdgeEncodeResult(path=str(path), frames=n, bits=8 * written,
                                num_steps=source.num_frames, height=H, width=W,
                                seconds=seconds, quality=quality, stride=stride,
                                intra_period=intra_period, gain=header.gain,
                                precision=self.precision, stages=stages, symbols=symbols)
