"""The encoder's rounding of latents to symbols (torch-free, shared by every encoder).

Decoding never sees how a symbol was chosen, so this is the encoder's free choice:
plain rounding, or rounding with a dead zone that keeps a residual at 0 unless it
is clearly larger (``|r| >= 0.5 + deadzone``). On features this zeroes most of the
frame-to-frame flicker that spike noise causes, for a small loss of fidelity."""
from __future__ import annotations

import numpy as np


def symbols(v: np.ndarray, mean: np.ndarray, deadzone: float = 0.0) -> np.ndarray:
    """int32 symbols for latents ``v`` (float, symbol units: u, or u - q_prev for a P
    frame) around the integer ``mean``; q = symbols + mean (+ q_prev)."""
    if not 0.0 <= deadzone < 0.5:
        raise ValueError(f"deadzone must be in [0, 0.5), got {deadzone!r}")
    r = np.asarray(v, np.float32) - np.asarray(mean, np.float32)
    if deadzone == 0.0:
        return np.round(r).astype(np.int32)
    mag = np.floor(np.abs(r) + np.float32(0.5 - deadzone))
    return (np.sign(r) * mag).astype(np.int32)
