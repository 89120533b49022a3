"""Classic-paradigm baselines for the rate-distortion evaluation of the feature codec.

Three ways to put a spike stream on the wire with off-the-shelf tools, each
measured by the real size of the compressed output (never an estimate):

- CAAS (code-as-analysis-signal): the end side's feature maps F_t (float in
  [0, 1], one every ``stride`` spike steps) coded as a 10-bit monochrome video
  by x265 (HEVC) or SVT-AV1: :func:`code_features`.
- ATC (analyse-then-code): reconstruct images first (TFP/TFI), then code those
  images; the same function codes any [0, 1] frames (:func:`code_images` is an
  alias kept for readable call sites).
- CTA (code-then-analyse): code the spikes themselves, losslessly
  (:func:`spikes_lossless`: bit-packed + zstd / xz / JBIG) or lossily
  (:func:`spikes_lossy`: each spike frame a 0/255 picture through x265,
  thresholded back; reconstruct from the result with TFP).

Rates: ``bpsp`` = bits / (spike steps covered x H x W), raw spikes being 1.0;
``bpp`` = bits / (coded frames x H x W). Every result carries ``bits``;
:func:`bpsp` and :func:`bpp` turn them into rates.

Choices worth knowing (measured with ffmpeg 5.1, x265 3.5, SVT-AV1 1.4.1):

- x265 codes gray10le as real 4:0:0 (ffprobe: Rext profile, pix_fmt
  gray10le); HEVC's conformance window handles odd sizes, so nothing is
  padded for sizes >= 16 px. x265 refuses frames under 16 px a side: those
  are padded (edge pixels repeated) to 16 and cropped back after decoding.
- x265 writes a raw Annex-B elementary stream (``-f hevc``), so the bits are
  VPS/SPS/PPS + slices with start codes and no container; its informational
  SEI (the ~2 kB encoder-settings string) is turned off (``info=0``), as it
  is not part of coding the content.
- x265 3.5's AVX/AVX2 kernels corrupt the heap at some small widths (48 px
  aborts with "free(): invalid pointer"); on x86 the SIMD level is capped at
  SSE4.2. x265's kernels are bit-exact across levels (same bitstream, md5
  checked), and the cost is small.
- SVT-AV1 takes only 4:2:0 and frames of at least 64x64: frames are padded
  (edge repeated) to even sizes >= 64, the chroma planes are constant 512
  (neutral grey) and the decoded luma is cropped back. The padding and the
  (nearly free) chroma are counted in the bits: they are what this codec
  needs to carry the frames. At the real spike-camera size (250x400) only
  odd sizes pad, by one row/column.
- AV1 is written as a low-overhead OBU stream (``-f obu``), the raw AV1
  bitstream; an IVF file of the same stream is exactly 32 + 12 x frames bytes
  larger, container overhead not counted here.
- Input levels are round(F x 1023) (10 bit), decoded frames level / 1023.
"""
from __future__ import annotations

import functools
import lzma
import os
import platform
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from .._deps import available as _module_available
from ..errors import DataError, MissingDependencyError, SciEdgeError
from ..io.bitpack import as_spike_array

Codec = Literal["x265", "av1"]
LosslessMethod = Literal["zstd", "xz", "jbig"]

CODECS: tuple[str, ...] = ("x265", "av1")
LOSSLESS_METHODS: tuple[str, ...] = ("zstd", "xz", "jbig")

FPS = 25   # frame rate told to the encoders; rate control by CRF ignores it
DEFAULT_TIMEOUT_S = 600.0

_ENCODER = {"x265": "libx265", "av1": "libsvtav1"}
_DECODERS = {"x265": ("hevc",), "av1": ("libdav1d", "libaom-av1", "av1")}
_CRF_RANGE = {"x265": (0, 51), "av1": (1, 63)}
_DEFAULT_PRESET = {"x265": "medium", "av1": "8"}
_X265_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                 "slower", "veryslow", "placebo")
_AV1_PRESETS = tuple(str(p) for p in range(14))
# smallest coded size per codec: (minimum side, must be even)
_MIN_SIDE = {"x265": (16, False), "av1": (64, True)}


class ExternalToolError(SciEdgeError, RuntimeError):
    """An external coder (ffmpeg, zstd, pbmtojbg, ...) failed, timed out or gave
    output that does not decode back as it must."""


# ---------------------------------------------------------------- results

@dataclass(frozen=True, eq=False)
class CodedVideo:
    """Frames coded by a video codec and decoded again.

    ``decoded``: (N, H, W) float32 in [0, 1] (10-bit levels / 1023); ``bits``:
    8 x the size of the bitstream; ``coded_size``: (H, W) the encoder saw,
    after any padding; ``pix_fmt``: what was coded (gray10le or yuv420p10le)."""
    decoded: np.ndarray
    bits: int
    codec: str
    crf: int
    preset: str
    coded_size: tuple[int, int]
    pix_fmt: str

    @property
    def frames(self) -> int:
        return int(self.decoded.shape[0])

    @property
    def bpp(self) -> float:
        """Bits per pixel of a coded frame."""
        return bpp(self.bits, self.decoded.shape)

    def bpsp(self, steps: int) -> float:
        """Bits per spike pixel when the N frames stand for ``steps`` spike steps."""
        return bpsp(self.bits, steps, self.decoded.shape[1:])


@dataclass(frozen=True)
class LosslessResult:
    """Spikes coded losslessly: ``bits`` = 8 x compressed size; ``tool``
    says which program and settings; ``verified``: decoded back bit-exact."""
    bits: int
    method: str
    tool: str
    shape: tuple[int, int, int]
    verified: bool

    @property
    def bpsp(self) -> float:
        return bpsp(self.bits, self.shape[0], self.shape[1:])


@dataclass(frozen=True, eq=False)
class LossySpikes:
    """Spikes coded as a 0/255 video and thresholded back: ``decoded`` (T, H, W)
    uint8 of 0/1; ``flipped``: how many spike bits came back wrong."""
    decoded: np.ndarray
    bits: int
    codec: str
    crf: int
    preset: str
    flipped: int

    @property
    def bpsp(self) -> float:
        return bpsp(self.bits, self.decoded.shape[0], self.decoded.shape[1:])


def bpsp(bits: int, steps: int, size: tuple[int, int]) -> float:
    """Bits per spike pixel: ``bits`` / (steps x H x W); raw spikes are 1.0."""
    h, w = size[-2:]
    if steps <= 0 or h <= 0 or w <= 0:
        raise DataError(f"bpsp needs positive steps and size, got {steps} steps of {h}x{w}")
    return bits / (steps * h * w)


def bpp(bits: int, shape: tuple[int, int, int]) -> float:
    """Bits per pixel of coded frames: ``bits`` / (N x H x W) for an (N, H, W) shape."""
    n, h, w = shape
    if n <= 0 or h <= 0 or w <= 0:
        raise DataError(f"bpp needs a non-empty (N, H, W) shape, got {tuple(shape)}")
    return bits / (n * h * w)


# ---------------------------------------------------------------- tools

@functools.lru_cache(maxsize=8)
def _ffmpeg_components(ffmpeg: str, kind: str) -> frozenset[str]:
    """Names of ffmpeg's encoders or decoders (``kind`` = "encoders"/"decoders")."""
    try:
        res = subprocess.run([ffmpeg, "-hide_banner", f"-{kind}"], capture_output=True,
                             text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    names = set()
    for line in res.stdout.splitlines():
        parts = line.split()
        # rows look like " V....D libx265   libx265 H.265 / HEVC (codec hevc)"
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "VAS":
            names.add(parts[1])
    return frozenset(names)


def _decoder(ffmpeg: str, codec: str) -> str | None:
    have = _ffmpeg_components(ffmpeg, "decoders")
    return next((d for d in _DECODERS[codec] if d in have), None)


def available(codec: str) -> str | None:
    """None when ``codec`` (x265, av1, zstd, xz, jbig) can run here, else the
    reason it cannot (e.g. "ffmpeg not found on PATH ..."), for a line such as
    ``skipped x265: <reason>``."""
    if codec in CODECS:
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            return "ffmpeg not found on PATH (apt-get install ffmpeg)"
        enc = _ENCODER[codec]
        if enc not in _ffmpeg_components(ffmpeg, "encoders"):
            return f"ffmpeg at {ffmpeg} has no {enc} encoder (ffmpeg -hide_banner -encoders)"
        if _decoder(ffmpeg, codec) is None:
            return f"ffmpeg at {ffmpeg} has no {codec} decoder ({', '.join(_DECODERS[codec])})"
        return None
    if codec == "zstd":
        if shutil.which("zstd") is None and not _module_available("zstandard"):
            return "neither the zstd program nor the zstandard module is installed"
        return None
    if codec == "xz":
        return None   # lzma is in the standard library
    if codec == "jbig":
        missing = [p for p in ("pbmtojbg", "jbgtopbm") if shutil.which(p) is None]
        if missing:
            return f"{' and '.join(missing)} not found on PATH (apt-get install jbigkit-bin)"
        return None
    raise DataError(f"unknown codec {codec!r}: use one of "
                    f"{', '.join(CODECS + LOSSLESS_METHODS)}")


def _require(codec: str) -> None:
    why = available(codec)
    if why is not None:
        tool = {"x265": "ffmpeg/libx265", "av1": "ffmpeg/libsvtav1",
                "jbig": "jbigkit-bin"}.get(codec, codec)
        raise MissingDependencyError(tool, None, why)


def _run(cmd: list[str], *, data: bytes | None, timeout: float, what: str,
         env: dict | None = None) -> bytes:
    """Run ``cmd`` with ``data`` on stdin; its stdout, or ExternalToolError."""
    try:
        res = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout,
                             check=False, env=env)
    except subprocess.TimeoutExpired as exc:
        raise ExternalToolError(f"{what}: {cmd[0]} gave no result within {timeout:g} s") from exc
    except OSError as exc:
        raise ExternalToolError(f"{what}: cannot run {cmd[0]} ({exc})") from exc
    if res.returncode != 0:
        err = res.stderr.decode(errors="replace").strip()[-400:]
        how = (f"killed by signal {-res.returncode}" if res.returncode < 0
               else f"exit status {res.returncode}")
        raise ExternalToolError(f"{what}: {Path(cmd[0]).name} failed ({how}): {err}")
    return res.stdout


# ---------------------------------------------------------------- checks

def _check_codec(codec: str, crf, preset) -> tuple[int, str]:
    if codec not in CODECS:
        raise DataError(f"codec must be one of {', '.join(CODECS)}, got {codec!r}")
    lo, hi = _CRF_RANGE[codec]
    if isinstance(crf, (bool, np.bool_)) or not isinstance(crf, (int, np.integer)):
        raise DataError(f"crf must be an integer, got {crf!r}")
    if not lo <= int(crf) <= hi:
        raise DataError(f"crf for {codec} must lie in [{lo}, {hi}], got {crf}")
    if preset is None:
        preset = _DEFAULT_PRESET[codec]
    preset = str(preset)
    names = _X265_PRESETS if codec == "x265" else _AV1_PRESETS
    if preset not in names:
        raise DataError(f"preset for {codec} must be one of {', '.join(names)}, got {preset!r}")
    return int(crf), preset


def _check_frames(frames, name: str) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim != 3 or 0 in arr.shape:
        raise DataError(f"{name} must be a non-empty (N, H, W) array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"{name} must be floats in [0, 1], got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise DataError(f"{name} hold NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise DataError(f"{name} must lie in [0, 1], found [{lo:.6g}, {hi:.6g}] "
                        "(clip them first)")
    return arr


def _check_spikes(spikes) -> np.ndarray:
    try:
        arr = as_spike_array(spikes)
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    if arr.size and arr.max() > 1:   # as_spike_array leaves uint8 unchecked
        raise DataError(f"spikes must hold only 0 and 1, found the value {arr.max()}")
    if 0 in arr.shape:
        raise DataError(f"spikes must be a non-empty (T, H, W) array, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


# ---------------------------------------------------------------- video coding

def _padded_size(codec: str, h: int, w: int) -> tuple[int, int]:
    side, even = _MIN_SIDE[codec]
    h2, w2 = max(h, side), max(w, side)
    if even:
        h2, w2 = h2 + h2 % 2, w2 + w2 % 2
    return h2, w2


def _x265_params(keyint: int | None = None) -> str:
    params = ["log-level=error", "info=0"]
    if keyint is not None:
        params.append(f"keyint={keyint}")
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        params.append("asm=sse4.2")   # AVX2 kernels of x265 3.5 corrupt the heap at some widths
    return ":".join(params)


def _gop(keyint: int | None, n: int) -> int | None:
    """The GOP length handed to the encoder: None keeps its default, -1 (only the
    first frame intra) becomes one longer than the sequence."""
    if keyint is None:
        return None
    if isinstance(keyint, bool) or not isinstance(keyint, (int, np.integer)) \
            or not (keyint == -1 or keyint >= 1):
        raise DataError(f"keyint must be -1 (only the first frame intra) or >= 1, "
                        f"got {keyint!r}")
    return n + 1 if keyint == -1 else int(keyint)


def _code_levels(levels: np.ndarray, bitdepth: int, codec: str, crf: int, preset: str,
                 save_to, timeout: float,
                 gop: int | None = None) -> tuple[np.ndarray, int, tuple[int, int], str]:
    """Code integer levels (N, H, W) at ``bitdepth`` (8 or 10) and decode them
    (``gop``: from :func:`_gop`). Returns (decoded levels, bits, coded size, pix_fmt)."""
    _require(codec)
    ffmpeg = shutil.which("ffmpeg")
    n, h, w = levels.shape
    ph, pw = _padded_size(codec, h, w)
    if (ph, pw) != (h, w):
        levels = np.pad(levels, ((0, 0), (0, ph - h), (0, pw - w)), mode="edge")
    sample = np.dtype("<u2") if bitdepth == 10 else np.dtype("u1")
    levels = np.ascontiguousarray(levels, dtype=sample)
    if codec == "x265":
        pix_fmt = "gray10le" if bitdepth == 10 else "gray"
        raw = levels.tobytes()
        codec_args = ["-c:v", "libx265", "-preset", preset, "-crf", str(crf),
                      "-x265-params", _x265_params(gop), "-f", "hevc"]
        ext = ".hevc"
    else:
        pix_fmt = "yuv420p10le" if bitdepth == 10 else "yuv420p"
        grey = np.full((2, ph // 2, pw // 2), 1 << (bitdepth - 1), sample).tobytes()
        raw = b"".join(frame.tobytes() + grey for frame in levels)
        codec_args = ["-c:v", "libsvtav1", "-preset", preset, "-crf", str(crf),
                      *(["-g", str(gop)] if gop is not None else []), "-f", "obu"]
        ext = ".obu"
    env = dict(os.environ, SVT_LOG="1")   # SVT-AV1 prints its config at info level otherwise
    with tempfile.TemporaryDirectory(prefix="sci_edge_baseline_") as tmp:
        out = Path(tmp) / f"coded{ext}"
        _run([ffmpeg, "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", pix_fmt,
              "-s", f"{pw}x{ph}", "-r", str(FPS), "-i", "-", *codec_args,
              "-pix_fmt", pix_fmt, str(out)],
             data=raw, timeout=timeout, what=f"{codec} encoding", env=env)
        size = out.stat().st_size
        if size == 0:
            raise ExternalToolError(f"{codec} encoding: ffmpeg wrote an empty bitstream")
        decoded = _run([ffmpeg, "-v", "error", "-nostdin", "-c:v", _decoder(ffmpeg, codec),
                        "-i", str(out), "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"],
                       data=None, timeout=timeout, what=f"{codec} decoding")
        if save_to is not None:
            shutil.copyfile(out, save_to)
    plane = ph * pw
    per_frame = plane if codec == "x265" else plane + 2 * (ph // 2) * (pw // 2)
    got = len(decoded) // sample.itemsize
    if got != n * per_frame:
        raise ExternalToolError(f"{codec} decoding gave {got / per_frame:g} frames of "
                                f"{pw}x{ph} {pix_fmt}, {n} were coded")
    dec = np.frombuffer(decoded, sample).reshape(n, per_frame)[:, :plane]
    dec = dec.reshape(n, ph, pw)[:, :h, :w]
    return dec, 8 * size, (ph, pw), pix_fmt


def code_features(features, codec: Codec, crf: int, *, preset: str | int | None = None,
                  save_to: str | Path | None = None, keyint: int | None = None,
                  timeout: float = DEFAULT_TIMEOUT_S) -> CodedVideo:
    """Code (N, H, W) float frames in [0, 1] as 10-bit video and decode them back.

    ``codec``: "x265" (libx265, 4:0:0 gray10le, raw HEVC stream; preset
    default "medium", CRF 0-51) or "av1" (libsvtav1, yuv420p10le with neutral
    chroma, raw OBU stream; preset default 8, CRF 1-63). ``save_to``: also keep
    the bitstream there (its size x 8 is ``bits``). ``keyint``: at most this
    many frames from one intra frame to the next (the intra period; -1: only the
    first frame), None for the encoder's default (x265: 250). ``timeout``: seconds for
    each of the encode and decode runs. Raises MissingDependencyError when
    ffmpeg or the encoder is missing (see :func:`available`), DataError for bad
    input, ExternalToolError when ffmpeg fails."""
    arr = _check_frames(features, "features")
    crf, preset = _check_codec(codec, crf, preset)
    gop = _gop(keyint, len(arr))
    levels = np.rint(arr.astype(np.float64) * 1023.0).astype(np.uint16)
    dec, bits, coded, pix_fmt = _code_levels(levels, 10, codec, crf, preset, save_to, timeout,
                                             gop)
    return CodedVideo(decoded=(dec.astype(np.float32) / np.float32(1023.0)), bits=bits,
                      codec=codec, crf=crf, preset=preset, coded_size=coded, pix_fmt=pix_fmt)


# ATC codes reconstructed images the same way as features: any [0, 1] frames will do.
code_images = code_features


# ---------------------------------------------------------------- spikes

def _pack(spikes: np.ndarray) -> bytes:
    # each frame a 1-bit image: rows packed MSB-first along W, padded to whole bytes (PBM P4)
    return np.packbits(spikes, axis=-1).tobytes()


def _zstd(data: bytes, timeout: float) -> tuple[bytes, str, Callable[[], bytes]]:
    zstd = shutil.which("zstd")
    if zstd is not None:
        out = _run([zstd, "-19", "-q", "-c"], data=data, timeout=timeout, what="zstd")
        return out, "zstd -19 (CLI)", lambda: _run([zstd, "-d", "-q", "-c"], data=out,
                                                    timeout=timeout, what="zstd decoding")
    import zstandard
    out = zstandard.ZstdCompressor(level=19).compress(data)
    return out, "zstandard level 19", lambda: zstandard.ZstdDecompressor().decompress(out)


_PBM_HEADER = re.compile(rb"P4\s+(\d+)\s+(\d+)\s")


def _jbig(body: bytes, width: int, height: int,
          timeout: float) -> tuple[bytes, str, Callable[[], bytes]]:
    pbm = f"P4\n{width} {height}\n".encode() + body
    # -q: one sequential layer; the default resolution pyramid costs ~4 % more here
    out = _run([shutil.which("pbmtojbg"), "-q", "-"], data=pbm, timeout=timeout,
               what="pbmtojbg")

    def back() -> bytes:
        dec = _run([shutil.which("jbgtopbm"), "-"], data=out, timeout=timeout,
                   what="jbgtopbm")
        m = _PBM_HEADER.match(dec)   # jbgtopbm pads the header's numbers with spaces
        if m is None or (int(m[1]), int(m[2])) != (width, height):
            return b""
        return dec[m.end():]

    return out, f"pbmtojbg -q, one {width}x{height} image", back


def spikes_lossless(spikes, method: LosslessMethod, *, layout: str = "frames",
                    verify: bool = True, timeout: float = DEFAULT_TIMEOUT_S) -> LosslessResult:
    """Code (T, H, W) 0/1 spikes losslessly; ``bits`` is 8 x the compressed size.

    The spikes are bit-packed frame by frame (each frame a 1-bit image, rows
    padded to whole bytes) and compressed by ``method``: "zstd" (zstd -19, the
    CLI, else the zstandard module), "xz" (lzma preset 9, as xz -9) or "jbig"
    (JBIG1 by pbmtojbg, all frames stacked into one tall PBM: one header and
    one adaptive context model instead of T of each). ``layout`` (JBIG only):
    "frames" stacks whole frames; "rows" interleaves them row by row, putting
    the same pixel of the previous steps into JBIG's two-line template, which
    codes periodic spike trains much smaller. The sizes of T, H, W (a few
    bytes of side information) are not counted. ``verify`` decodes the output
    and raises ExternalToolError unless it is bit-exact."""
    arr = _check_spikes(spikes)
    if method not in LOSSLESS_METHODS:
        raise DataError(f"method must be one of {', '.join(LOSSLESS_METHODS)}, got {method!r}")
    if layout not in ("frames", "rows"):
        raise DataError(f"layout must be 'frames' or 'rows', got {layout!r}")
    _require(method)
    if method == "jbig":
        t, h, w = arr.shape
        # "frames": frames one below the other, JBIG's context is then spatial;
        # "rows": row y of every frame in turn, the context then reaches back in time
        tall = arr.reshape(t * h, w) if layout == "frames" else \
            arr.transpose(1, 0, 2).reshape(h * t, w)
        data = _pack(tall)
        out, tool, back = _jbig(data, w, t * h, timeout)
        tool += f" ({layout} stacked)"
    elif method == "zstd":
        data = _pack(arr)
        out, tool, back = _zstd(data, timeout)
    else:
        data = _pack(arr)
        out, tool = lzma.compress(data, preset=9), "lzma preset 9 (xz -9)"
        back = lambda: lzma.decompress(out)  # noqa: E731
    if verify and back() != data:
        raise ExternalToolError(f"{method}: decoding did not give back the coded spikes")
    return LosslessResult(bits=8 * len(out), method=method, tool=tool,
                          shape=tuple(int(n) for n in arr.shape),
                          verified=verify)


def spikes_lossy(spikes, crf: int, *, codec: Codec = "x265", preset: str | int | None = None,
                 save_to: str | Path | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S) -> LossySpikes:
    """Code (T, H, W) 0/1 spikes as an 8-bit video, each spike frame a picture of
    0 and 255 (x265: 4:0:0 gray; av1: 4:2:0, neutral chroma), and threshold the
    decoded pictures at 128 back to spikes. Reconstruct from ``decoded`` (TFP)
    to score it."""
    arr = _check_spikes(spikes)
    crf, preset = _check_codec(codec, crf, preset)
    dec, bits, _, _ = _code_levels(arr * np.uint8(255), 8, codec, crf, preset, save_to,
                                   timeout)
    back = (dec >= 128).astype(np.uint8)
    return LossySpikes(decoded=back, bits=bits, codec=codec, crf=crf, preset=preset,
                       flipped=int(np.count_nonzero(back != arr)))
