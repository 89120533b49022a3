"""Parsers for command-line values; each raises ArgumentTypeError with a clear text."""
from __future__ import annotations

import argparse


def size(text: str) -> tuple[int, int]:
    """'256x400' -> (256, 400) as (height, width)."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like HEIGHTxWIDTH, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return h, w


def _number(cast, *, strict: bool):
    """A parser for numbers > 0 (strict) or >= 0 of type ``cast`` (int or float)."""
    noun = "an integer" if cast is int else "a number"
    bound = "positive" if strict else ">= 0"

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        ok = value > 0 if strict else value >= 0
        if not ok or value == float("inf"):  # also rejects NaN
            raise argparse.ArgumentTypeError(f"expected {noun} {bound}, got {text!r}")
        return value

    parse.__name__ = f"{bound} {cast.__name__}"
    return parse


positive_float = _number(float, strict=True)
non_negative_float = _number(float, strict=False)
positive_int = _number(int, strict=True)
non_negative_int = _number(int, strict=False)


def times(text: str) -> list[int]:
    """'151' or '100,120' or '0:200:10' (start:stop:step, stop excluded), mixed by commas."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if ":" in part:
                fields = [int(f) for f in part.split(":")]
                if len(fields) not in (2, 3) or (len(fields) == 3 and fields[2] <= 0):
                    raise ValueError
                out.extend(range(*fields))
            else:
                out.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--at takes indices like 151, 100,120 or 0:200:10; got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"--at names no spike index: {text!r}")
    if min(out) < 0:
        raise argparse.ArgumentTypeError(f"spike indices must be >= 0, got {min(out)}")
    return out


def _range_parser(name: str, unit: str, *, strict: bool):
    """A parser for 'X' or 'LOW:HIGH' -> (low, high), with 0 < LOW (strict) or 0 <= LOW."""
    bound = "<" if strict else "<="

    def parse(text: str) -> tuple[float, float]:
        parts = text.split(":")
        try:
            lo, hi = (float(parts[0]), float(parts[-1])) if len(parts) in (1, 2) else (None, None)
        except ValueError:
            lo = hi = None
        if lo is None or not ((0 < lo) if strict else (0 <= lo)) or not lo <= hi < float("inf"):
            raise argparse.ArgumentTypeError(
                f"{name} must be X or LOW:HIGH {unit} with 0 {bound} LOW <= HIGH, got {text!r}")
        return lo, hi

    parse.__name__ = f"{name} range"
    return parse


speed_range = _range_parser("speeds", "px per step", strict=False)
gain_range = _range_parser("gains", "(spikes per step at full brightness)", strict=True)


def gain(text: str):
    """``--gain``: 'auto' (estimated from the recording) or a positive number."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"--gain takes 'auto' or a positive number, got {text!r}") from None


def feature_stride(text: str) -> int:
    """Spike steps between coded features: 1..65535 (the .sci header's field)."""
    value = positive_int(text)
    if value > 0xFFFF:
        raise argparse.ArgumentTypeError(f"--stride must be at most 65535, got {text!r}")
    return value


def intra_period(text: str) -> int:
    """-1 (only the first frame intra) or 1..32767."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value != -1 and not 1 <= value <= 0x7FFF:
        raise argparse.ArgumentTypeError(
            f"--intra-period takes -1 (only the first frame) or 1..32767, got {text!r}")
    return value


def skip_factor(text: str) -> float | None:
    """--skip: 'off' (code every block of a P frame) or a rate-distortion factor >= 0."""
    from ..codec.skip import MAX_KAPPA

    if text.strip().lower() in ("off", "none"):
        return None
    value = non_negative_float(text)
    if value > MAX_KAPPA:
        raise argparse.ArgumentTypeError(f"expected 'off' or a number 0..{MAX_KAPPA:g}, "
                                         f"got {text!r}")
    return value


SKIP_HELP = ("P frames' block skipping: 'off', or the rate-distortion factor of skipping a "
             "32x32 block that barely changed (0: only blocks whose coding buys nothing; "
             "larger: fewer bits, staler blocks; default {default})")
