"""Throughput of the IF simulator: Cython kernel vs the numpy reference."""
from __future__ import annotations

import time

import numpy as np

from .._kernels import if_sim as _if_sim
from .._threads import resolve_threads
from ._machine import cpu_info
from ._timing import best_of
from ..sim import SpikeSimulator, num_steps, simulate
from ..sim.simulator import empty_output


def bench_sim(height: int = 256, width: int = 400, frames: int = 5, steps_per_frame: int = 50,
              repeats: int = 5, num_threads: int | None = None, seed: int = 0,
              reference_steps: int = 40) -> dict:
    """Pixel-steps per second of the simulator with interpolation on.

    ``kernel_*``: SpikeSimulator.feed into reused output buffers (the steady
    state of a stream), with the block loop the CPU gets (``simd``), and for
    comparison with the generic loop. ``simulate_*``: the public simulate()
    call as a user makes it, set-up, input checks and a new output array
    included. The reference runs on the same frames for ``reference_steps``
    steps, and its spikes are checked against the kernel's."""
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

    pixel_steps = T * height * width
    results = {}
    for packed in (False, True):
        sim = SpikeSimulator(height, width, packed=packed, **kwargs)
        shape = (T, (height * width + 7) // 8) if packed else (T, height, width)
        out = empty_output(shape)  # 64-byte aligned, as feed() allocates

        def run():
            sim.reset_state()
            sim.feed(lum, out=out)

        run()  # warm-up: page in the buffer, load the dispatch
        results[packed] = pixel_steps / best_of(repeats, run)
        if packed:
            continue
        old = _if_sim.set_simd(False)
        try:
            run()
            results["generic"] = pixel_steps / best_of(repeats, run)
        finally:
            _if_sim.set_simd(old)

    for packed in (False, True):
        def call():
            simulate(lum, packed=packed, **kwargs)

        call()
        results["simulate", packed] = pixel_steps / best_of(repeats, call)

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
        **cpu_info(),
        "simd": _if_sim.simd_variant(),
        "kernel_pixel_steps_per_s": results[False],
        "kernel_packed_pixel_steps_per_s": results[True],
        "kernel_generic_pixel_steps_per_s": results["generic"],
        "simulate_pixel_steps_per_s": results["simulate", False],
        "simulate_packed_pixel_steps_per_s": results["simulate", True],
        "reference_pixel_steps_per_s": ref_rate,
        "speedup": results[False] / ref_rate,
        "bit_exact_vs_reference": bool(np.array_equal(ref_spikes, ker_spikes)),
        "reference_steps": int(ref_spikes.shape[0]),
    }
