"""Reading luminance frames from images, image folders and videos.

Frames come out as float32 (H, W) grayscale in [0, 1] (ITU-R BT.601 luma).
Videos other than GIF/TIFF are decoded by the ``ffmpeg`` program, which must
be on PATH (``apt-get install ffmpeg``); :func:`write_video` encodes
reconstructions to .mp4/.mkv/.avi through it too.
"""
from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")


def _pil_to_gray(img, path: Path, size: tuple[int, int] | None) -> np.ndarray:
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = arr / scale
    else:
        arr = np.asarray(img.convert("L"), dtype=np.float64) / 255.0
    if size is not None and arr.shape != tuple(size):
        im = Image.fromarray(arr.astype(np.float32), mode="F")
        im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        arr = np.asarray(im, dtype=np.float64)
    return np.clip(arr, 0.0, 1.0).astype(np.float32)


def read_image(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """One grayscale image as float32 (H, W) in [0, 1], resized to ``size`` (H, W)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image not found")
    try:
        with Image.open(path) as img:
            img.load()
            return _pil_to_gray(img, path, size)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from exc


def list_folder_frames(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def iter_folder_frames(folder: str | Path,
                       size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Frames from the images of a folder, in sorted file-name order. All take
    the size of the first unless ``size`` is given."""
    files = list_folder_frames(folder)
    first = read_image(files[0], size)
    yield first
    for f in files[1:]:
        frame = read_image(f, first.shape)
        yield frame


def _probe_size(ffprobe: str, path: Path) -> tuple[int, int]:
    res = subprocess.run([ffprobe, "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=width,height", "-of", "csv=p=0:s=x", str(path)],
                         capture_output=True, text=True, check=False, timeout=60)
    text = res.stdout.strip().splitlines()
    if res.returncode != 0 or not text or "x" not in text[0]:
        raise DataError(f"{path}: no video stream found ({res.stderr.strip()[:200]})")
    w, h = text[0].split("x")[:2]
    return int(h), int(w)


def iter_video_frames(path: str | Path,
                      size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Decode a video into grayscale frames, resized to ``size`` (H, W) if given."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: video not found")
    if path.suffix.lower() in (".gif", ".tif", ".tiff"):
        try:
            with Image.open(path) as img:
                for frame in ImageSequence.Iterator(img):
                    yield _pil_to_gray(frame.copy(), path, size)
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{path}: not a readable animation ({exc})") from exc
        return
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    if ffmpeg is None or ffprobe is None:
        raise DataError(f"{path}: decoding {path.suffix} video needs ffmpeg and ffprobe on PATH "
                        "(apt-get install ffmpeg), or convert it to a folder of PNG frames")
    h, w = size if size is not None else _probe_size(ffprobe, path)
    cmd = [ffmpeg, "-v", "error", "-nostdin", "-i", str(path), "-vf", f"scale={w}:{h}",
           "-f", "rawvideo", "-pix_fmt", "gray16le", "-"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    frame_bytes = h * w * 2
    frames = 0
    try:
        while True:
            buf = proc.stdout.read(frame_bytes)
            if not buf:
                break
            if len(buf) < frame_bytes:
                raise DataError(f"{path}: video ended inside a frame")
            frames += 1
            yield (np.frombuffer(buf, "<u2").reshape(h, w) / 65535.0).astype(np.float32)
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace")
        code = proc.wait()
    if code != 0 or frames == 0:
        raise DataError(f"{path}: ffmpeg could not decode the video: {err.strip()[:300]}")


# container (ffmpeg -f) of each video suffix write_video takes
WRITE_VIDEO_FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".avi": "avi"}


def ffmpeg_path() -> str | None:
    """The ffmpeg program on PATH, or None."""
    return shutil.which("ffmpeg")


def write_video(path: str | Path, frames, fps: float = 10.0, *, crf: int = 18) -> Path:
    """Encode grayscale frames ((H, W) floats in [0, 1], clipped, or uint8) as an H.264
    video (.mp4, .mkv or .avi by the suffix) through ffmpeg on PATH.

    Raw gray8 frames are piped to ``ffmpeg -f rawvideo -pix_fmt gray``; the output
    is yuv420p (what players expect), odd sizes padded by one black row/column. It
    is written to a temp file beside ``path`` and renamed on success, so a failure
    leaves no half-written video."""
    from ..errors import MissingDependencyError, OutputError
    from ._atomic import atomic_path
    from .images import to_uint8

    path = Path(path)
    fmt = WRITE_VIDEO_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise OutputError(path, f"video output must end in {', '.join(WRITE_VIDEO_FORMATS)}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    ffmpeg = ffmpeg_path()
    if ffmpeg is None:
        raise MissingDependencyError("ffmpeg", None, f"needed on PATH to write {path.suffix} "
                                                     "video; or write a .gif or PNGs")
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError("no frames to write")
    first = first if getattr(first, "dtype", None) == np.uint8 else to_uint8(first)
    h, w = first.shape
    with atomic_path(path) as tmp:
        cmd = [ffmpeg, "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "gray",
               "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-",
               "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-crf", str(crf),
               "-pix_fmt", "yuv420p", "-f", fmt, str(tmp)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        broken = False
        try:
            proc.stdin.write(np.ascontiguousarray(first).tobytes())
            for frame in it:
                img = frame if getattr(frame, "dtype", None) == np.uint8 else to_uint8(frame)
                if img.shape != (h, w):
                    raise ValueError(f"frame of size {img.shape} among {(h, w)} frames")
                proc.stdin.write(np.ascontiguousarray(img).tobytes())
        except BrokenPipeError:
            broken = True   # ffmpeg stopped early; its message follows
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        err = proc.stderr.read().decode(errors="replace")
        code = proc.wait()
        if code != 0 or broken:
            raise OutputError(path, f"ffmpeg could not encode the video: {err.strip()[:300]}")
    return path
