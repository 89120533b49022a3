"""Spikes -> ``.sci`` and ``.sci`` -> feature stream, with the torch codec.

:func:`compress` runs the end side (FEM features on the stride grid, then the
feature encoder and rANS) over a spike source window by window, writing frames
as they are made; :func:`decompress` runs the cloud side's decoding of a
stream, frame by frame as it arrives, into a :class:`~sci_edge.stream.FeatureStream`
that ``reconstruct_stream`` / ``classify_stream`` consume. :class:`Bitstream`
is the in-memory form (``to_bytes`` / ``from_bytes``).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from ..codec.bitstream import Frame, FrameType, SciHeader, SciReader, SciWriter, encode_sci, \
    read_sci
from ..codec.rates import CodedRates
from ..codec.skip import DEFAULT_KAPPA, check_skip
from ..errors import CodecError, DataError
from ..io.source import as_source
from ..stream import FeatureStream
from .codec import INTER, INTRA, MODEL_ID, CodedSCI
from .end.extract import FeatureExtractor
from .end.fem import HALF_WINDOW

# feature frames computed per FEM batch while encoding (bounded memory)
ENCODE_CHUNK = 8


@dataclass
class Bitstream:
    """A whole ``.sci`` stream in memory: its header and typed frames."""

    header: SciHeader
    frames: list[Frame] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        return encode_sci(self.header, self.frames)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Bitstream":
        header, frames = read_sci(bytes(data))
        return cls(header=header, frames=frames)

    @property
    def bits(self) -> int:
        return 8 * len(self.to_bytes())


@dataclass(frozen=True)
class EncodeResult(CodedRates):
    path: str
    frames: int
    bits: int              # the real file size, header included
    num_steps: int
    height: int
    width: int
    seconds: float

    def to_dict(self) -> dict:
        return self.rate_dict()


def is_intra(index: int, intra_period: int) -> bool:
    return index == 0 or (intra_period > 0 and index % intra_period == 0)


def frame_times(num_steps: int, stride: int, start: int = HALF_WINDOW) -> range:
    """Spike times of the coded features: start, start + stride, ... while a window fits."""
    return range(int(start), int(num_steps) - HALF_WINDOW, int(stride))


def _check_options(model: CodedSCI, quality: int, stride: int, intra_period: int) -> None:
    q = model.codec.config.qualities
    if int(quality) != quality or not 0 <= quality < q:
        raise DataError(f"quality must be an integer in 0..{q - 1}, got {quality!r}")
    if int(stride) != stride or not 1 <= stride <= 0xFFFF:
        raise DataError(f"stride must be an integer in 1..65535, got {stride!r}")
    if int(intra_period) != intra_period or intra_period == 0 or intra_period < -1 \
            or intra_period > 0x7FFF:
        raise DataError(f"intra period must be -1 (only the first frame) or 1..32767, "
                        f"got {intra_period!r}")


def header_for(model: CodedSCI, *, height: int, width: int, num_steps: int, stride: int,
               quality: int, intra_period: int, gain: float | None, start: int = HALF_WINDOW,
               frame_count: int | None = None) -> SciHeader:
    return SciHeader(model_id=MODEL_ID, weights_hash=model.codec.weights_hash(),
                     height=height, width=width, stride=stride, num_steps=num_steps,
                     start=start, gain=gain, intra_period=intra_period, quality=quality,
                     frame_count=frame_count)


def coding_scale(gain: float | None) -> float:
    """What features are divided by before coding: the camera gain, 1 when unknown."""
    return float(np.float32(gain)) if gain else 1.0


@torch.no_grad()
def encode_features(model: CodedSCI, features: Iterable[np.ndarray], *, quality: int,
                    intra_period: int, gain: float | None = None,
                    deadzone: float = 0.0,
                    skip: float | None = DEFAULT_KAPPA) -> Iterable[Frame]:
    """Frames of a sequence of (H, W) features, one at a time."""
    prev = None
    scale = np.float32(coding_scale(gain))
    for k, feature in enumerate(features):
        intra = is_intra(k, intra_period)
        enc = model.codec.encode_frame(feature / scale, quality, None if intra else prev,
                                       deadzone=deadzone, skip=skip)
        prev = enc.symbols
        yield Frame(FrameType.I if intra else FrameType.P, k, enc.parts)


@torch.no_grad()
def compress(model: CodedSCI, spikes, out: str | Path | BinaryIO, *, quality: int,
             stride: int = 5, intra_period: int = 32, gain: float | None = None,
             deadzone: float = 0.0, skip: float | None = DEFAULT_KAPPA,
             progress: Callable[[int, int], None] | None = None) -> EncodeResult:
    """Encode a spike source (array, .dat/.npz source) to ``out``: features every
    ``stride`` steps from step 6 while a window fits. Memory stays bounded: the
    source is read window by window and each feature is dropped once coded.
    ``deadzone``: the encoder's rounding (:mod:`sci_edge.codec.quant`); ``skip``: the
    rate-distortion factor of P frames' block skipping (:mod:`sci_edge.codec.skip`),
    None for none."""
    _check_options(model, quality, stride, intra_period)
    if not 0.0 <= deadzone < 0.5:
        raise DataError(f"deadzone must be in [0, 0.5), got {deadzone!r}")
    check_skip(skip)
    source = as_source(spikes)
    times = frame_times(source.num_frames, stride)
    if len(times) == 0:
        raise DataError(f"{source.name}: {source.num_frames} spike frames, too few for one "
                        f"feature ({2 * HALF_WINDOW + 1} needed)")
    H, W = source.height, source.width
    header = header_for(model, height=H, width=W, num_steps=source.num_frames, stride=stride,
                        quality=quality, intra_period=intra_period, gain=gain)
    extractor = FeatureExtractor(model.sci.fem, source, batch=ENCODE_CHUNK)
    t0 = time.perf_counter()

    def features():
        for i in range(0, len(times), ENCODE_CHUNK):
            chunk = list(times[i:i + ENCODE_CHUNK])
            feats = extractor.get(chunk).cpu().numpy()
            extractor.release(chunk[-1] + 1)
            for j, f in enumerate(feats):
                yield f
                if progress is not None:
                    progress(i + j + 1, len(times))

    with SciWriter(out, header) as writer:
        for frame in encode_features(model, features(), quality=quality,
                                     intra_period=intra_period, gain=header.gain,
                                     deadzone=deadzone, skip=skip):
            writer.write(frame)
        written = writer.bytes_written
    seconds = time.perf_counter() - t0
    return EncodeResult(path=str(out if isinstance(out, (str, Path)) else writer.path),
                        frames=len(times), bits=8 * written, num_steps=source.num_frames,
                        height=H, width=W, seconds=seconds)


@dataclass
class Decoded:
    """A decoded stream: its header, the feature stream for the cloud side, and
    each frame's integer latents (for checks) when asked for."""

    header: SciHeader
    stream: FeatureStream
    symbols: list[np.ndarray] | None
    bits: int


@torch.no_grad()
def decompress(model: CodedSCI, source: str | Path | BinaryIO | bytes, *,
               keep_symbols: bool = False, follow: bool = False,
               progress: Callable[[int, int | None], None] | None = None) -> Decoded:
    """Decode a ``.sci`` stream frame by frame into a FeatureStream (gain, stride
    and spike times from the header)."""
    with SciReader(source, follow=follow) as reader:
        header = reader.header
        reader.expect_model(MODEL_ID, model.codec.weights_hash())
        if header.quality >= model.codec.config.qualities:
            raise CodecError(reader.path, f"quality index {header.quality} outside the "
                                          f"model's 0..{model.codec.config.qualities - 1}")
        size = (header.height, header.width)
        scale = np.float32(coding_scale(header.gain))
        feats, syms, times = [], [], []
        prev_q = prev_f = None
        for frame in reader:
            kind = INTRA if frame.kind == FrameType.I else INTER
            if (kind == INTRA) != is_intra(frame.index, header.intra_period):
                want = "I" if kind == INTER else "P"
                raise CodecError(reader.path, f"a {frame.kind.name} frame where the intra "
                                              f"period {header.intra_period} puts a {want} frame",
                                 frame.index)
            try:
                q = model.codec.decode_symbols(frame.parts, kind,
                                               None if kind == INTRA else prev_q, size)
            except ValueError as exc:
                raise CodecError(reader.path, f"undecodable payload ({exc})",
                                 frame.index) from None
            f = model.codec.reconstruct(q, header.quality, None if kind == INTRA else prev_f,
                                        size)
            prev_q, prev_f = q, f
            feats.append(np.clip(f * scale, 0.0, 1.0))
            times.append(header.frame_time(frame.index))
            if keep_symbols:
                syms.append(q)
            if progress is not None:
                progress(frame.index + 1, header.frame_count)
        bits = 8 * reader.bytes_read
    if not feats:
        raise CodecError(reader.path, "the stream holds no frames")
    last = times[-1] + HALF_WINDOW + 1
    num_steps = max(header.num_steps, last)
    stream = FeatureStream(times=np.array(times, np.int64), features=np.stack(feats),
                           num_steps=num_steps, stride=header.stride, gain=header.gain)
    return Decoded(header=header, stream=stream, symbols=syms if keep_symbols else None,
                   bits=bits)
