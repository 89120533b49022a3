"""Throughput of the IF simulator: Cython kernel vs the numpy reference."""
from __future__ import annotations

import platform
import time

import numpy as np

from .._threads import resolve_threads
from ._timing import best_of
from ..sim import SpikeSimulator, num_steps




def bench_sim(height: int = 256, width: int = 400, frames: int = 5, steps_per_frame: int = 50,
              repeats: int = 5, num_threads: int | None = None, seed: int = 0,
              reference_steps: int = 40) -> dict:
    """Pixel-steps per second of the simulator with interpolation on.

    The kernel writes into reused buffers (the steady state of a stream); the
    reference runs on the same frames for ``reference_steps`` steps, and its
    spikes are checked against the kernel's."""
    if min(height, width, frames, steps_per_frame, repeats, reference_steps) < 1:
        raise ValueError("bench sizes must be positive")
    if frames < 2 or steps_per_frame < 2:
        raise ValueError("interpolation needs frames >= 2 and steps_per_frame >= 2")
    threads = resolve_threads(num_threads)
    rng = np.random.default_rng(seed)
    lum = rng.random((frames, height, width), dtype=np.float32)
    T = num_steps(frames, steps_per_frame)
    kwargs = dict(alpha=0.6, reset="soft", seed=seed, steps_per_frame=steps_per_frame,
                  num_threads=threads)

    results = {}
    for packed in (False, True):
        sim = SpikeSimulator(height, width, packed=packed, **kwargs)
        shape = (T, (height * width + 7) // 8) if packed else (T, height, width)
        out = np.empty(shape, np.uint8)

        def run():
            sim.reset_state()
            sim.feed(lum, out=out)

        run()  # warm-up: page in the buffer, load the dispatch
        results[packed] = T * height * width / best_of(repeats, run)

    # Reference on a prefix of the same input: the first ceil(ref_steps/k)+1 frames.
    ref_frames = min(frames, 1 + -(-reference_steps // steps_per_frame))
    ref_sim = SpikeSimulator(height, width, backend="reference", **kwargs)
    t0 = time.perf_counter()
    ref_spikes = ref_sim.feed(lum[:ref_frames])
    ref_time = time.perf_counter() - t0
    ker_spikes = SpikeSimulator(height, width, **kwargs).feed(lum[:ref_frames])
    ref_rate = ref_spikes.size / ref_time
    return {
        "benchmark": "sim",
        "height": height,
        "width": width,
        "frames": frames,
        "steps_per_frame": steps_per_frame,
        "steps": T,
        "interpolation": True,
        "threads": threads,
        "machine": platform.machine(),
        "kernel_pixel_steps_per_s": results[False],
        "kernel_packed_pixel_steps_per_s": results[True],
        "reference_pixel_steps_per_s": ref_rate,
        "speedup": results[False] / ref_rate,
        "bit_exact_vs_reference": bool(np.array_equal(ref_spikes, ker_spikes)),
        "reference_steps": int(ref_spikes.shape[0]),
    }
