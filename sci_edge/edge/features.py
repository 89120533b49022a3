"""The end side's feature extraction on the device, with no torch.

:class:`EdgeFEM` turns 13-frame spike windows into features F_t the way the
torch FEM does, split where the device splits it: the binarized temporal
filters run in the popcount kernel (integer responses, exact), the rest of the
FEM runs as the exported ``fem_tail`` graph (fp32 or INT8, onnxruntime or
TensorRT)::

    fem = EdgeFEM(bank, "bundle/fem_tail.int8.onnx")
    features = fem(windows)          # (B, 13, H, W) uint8 0/1 -> (B, H, W) float32

The encoder (:class:`~sci_edge.edge.encoder.EdgeEncoder`) runs its two halves
separately to time them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .._threads import resolve_threads
from ..errors import DataError
from .backends import Backend, load_backend, popcount_feed
from .tfilter import BinaryFilterBank, pack_time


class EdgeFEM:
    """Popcount kernel + ``fem_tail`` graph. ``tail``: a backend or a graph file
    (loaded with ``threads``, default all usable CPUs or SCI_EDGE_NUM_THREADS)."""

    def __init__(self, bank: BinaryFilterBank, tail: Backend | str | Path, *,
                 threads: int | None = None):
        self.bank = bank
        self.threads = resolve_threads(threads)
        self.tail = tail if isinstance(tail, Backend) else \
            load_backend(Path(tail), threads=self.threads)
        self.window = int(bank.window)

    def dots(self, windows) -> np.ndarray:
        """(B, window, H, W) (or a sequence of (window, H, W)) 0/1 spikes -> the
        kernel's integer responses (B, C, H, W) int8."""
        windows = [np.asarray(w) for w in windows]
        if not windows:
            raise DataError("no spike windows to extract features from")
        shape = windows[0].shape
        if len(shape) != 3 or shape[0] != self.window \
                or any(w.shape != shape for w in windows):
            raise DataError(f"spike windows must all be ({self.window}, H, W), got "
                            f"{sorted({w.shape for w in windows})}")
        th = self.threads
        out = np.empty((len(windows), self.bank.channels, *shape[1:]), np.int8)
        for j, w in enumerate(windows):
            self.bank.dots_words(pack_time(w, num_threads=th), out=out[j], num_threads=th)
        return out

    def features(self, dots: np.ndarray) -> np.ndarray:
        """Integer responses (B, C, H, W) -> F_t (B, H, W) float32."""
        return self.tail.run(popcount_feed(dots))["feature"][:, 0]

    def __call__(self, windows) -> np.ndarray:
        return self.features(self.dots(windows))
