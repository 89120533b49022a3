"""Learned reconstruction: the feature-stream path against the per-output path.

The per-output path (``SCIModel.reconstruct_windowed``) runs the FEM on all
2K+1 windows and the cloud side's per-feature encoder on all 2K+1 features
for every output. The stream path computes each feature and its encoding once
and shares them, so a run of outputs costs less per frame. Both run on the
same spikes in one process, and their outputs are compared (the windowed
analysis alone, ``propagate=False``). A model with long-reach propagation or
rate integration is also timed with it over the same run at the feature rate:
its cost per output beside the windowed path's."""
from __future__ import annotations

import time

import numpy as np

from ..data.motion import Motion, render
from ..sim import simulate
from ._machine import cpu_info


def _scene(height: int, width: int, steps: int, seed: int) -> np.ndarray:
    from ..data.images import load_image

    image = load_image("camera")
    frames = render(image, Motion(kind="mixed", speed=0.5, seed=seed), np.arange(steps),
                    (height, width), span=(0, steps - 1))
    return simulate(frames, alpha=0.6, seed=seed)


def bench_recon(height: int = 250, width: int = 400, run: int = 20, old_frames: int = 3,
                weights: str | None = None, num_threads: int | None = None,
                seed: int = 0) -> dict:
    """Seconds per output frame: one isolated output, and a run of ``run``
    outputs ``stride`` steps apart (the feature rate) and 1 step apart, by the
    stream path; the per-output path on ``old_frames`` of them (it shares
    nothing, so its time per frame does not depend on the run)."""
    import torch

    from .._threads import resolve_threads
    from ..models.pretrained import load_pretrained

    if min(height, width, run, old_frames) < 1:
        raise ValueError("bench sizes must be positive")
    threads = resolve_threads(num_threads)
    torch.set_num_threads(threads)
    from ..models.pretrained import RATE_ADDON, REACH_ADDON, WEIGHTS_DIR

    # the shipped model with its long-reach add-ons when they are shipped: all timed
    model = load_pretrained("recon", path=weights,
                            propagation=weights is None and (WEIGHTS_DIR / REACH_ADDON).is_file())
    with_rate = model if model.rate is not None else None
    if weights is None and (WEIGHTS_DIR / RATE_ADDON).is_file():
        with_rate = load_pretrained("recon", rate=True)
    a = model.config.analysis
    reach = a.neighbors * a.stride + 6
    steps = 2 * reach + run * a.stride + 1
    spikes = _scene(height, width, steps, seed)
    t0 = reach
    runs = {"feature_rate": [t0 + i * a.stride for i in range(run)],
            "every_step": [t0 + i for i in range(run)]}
    gain = 0.6

    def timed(fn, times, **options):
        start = time.perf_counter()
        out = fn(spikes, times, gain, **options)
        return out, time.perf_counter() - start

    def windowed(spikes, times, gain):
        return model.reconstruct(spikes, times, gain, propagate=False)

    for fn in (model.reconstruct_windowed, model.reconstruct):   # warm-up: oneDNN picks its
        fn(spikes, [t0], gain)                                    # kernels per shape, once
    doc = {"benchmark": "recon", "height": height, "width": width, "threads": threads,
           **cpu_info(), "neighbors": a.neighbors, "stride": a.stride, "run": run,
           "old_frames": old_frames}
    single_old, s_old = timed(model.reconstruct_windowed, [t0])
    single_new, s_new = timed(windowed, [t0])
    doc["single"] = {"old_s_per_frame": s_old, "new_s_per_frame": s_new,
                     "speedup": s_old / s_new,
                     "max_abs_diff": float(np.abs(single_old - single_new).max())}
    for name, times in runs.items():
        new, s = timed(windowed, times)
        pick = np.linspace(0, run - 1, min(old_frames, run)).round().astype(int).tolist()
        old, s_o = timed(model.reconstruct_windowed, [times[i] for i in pick])
        per_old, per_new = s_o / len(pick), s / run
        doc[f"run_{name}"] = {
            "times": [times[0], times[-1], times[1] - times[0]] if run > 1 else [times[0]],
            "new_s_per_frame": per_new, "old_s_per_frame": per_old,
            "speedup": per_old / per_new,
            "max_abs_diff": float(np.abs(old - new[pick]).max()),
            "fem_windows_new": _fem_windows(model, spikes.shape[0], times),
            "fem_windows_old": len(times) * (2 * a.neighbors + 1)}
    doc["outputs_match_1e-5"] = all(doc[k]["max_abs_diff"] <= 1e-5
                                    for k in ("single", "run_feature_rate", "run_every_step"))
    if model.propagation is not None:
        # the same run at the feature rate, every feature propagated over the whole
        # recording first (each once per direction)
        _, s = timed(model.reconstruct, runs["feature_rate"])
        win = doc["run_feature_rate"]["new_s_per_frame"]
        doc["propagated_feature_rate"] = {"s_per_frame": s / run, "windowed_s_per_frame": win,
                                          "overhead": (s / run) / win - 1.0,
                                          "features": len(model._grid(
                                              t0, runs["feature_rate"][-1], steps,
                                              t0 % a.stride, None))}
    if with_rate is not None:
        # the windowed output blended with the long-reach mean of the counts
        win = doc["run_feature_rate"]["new_s_per_frame"]
        _, s = timed(with_rate.reconstruct, runs["feature_rate"])
        doc["rate_feature_rate"] = {"s_per_frame": s / run, "windowed_s_per_frame": win,
                                    "overhead": (s / run) / win - 1.0}
    return doc


def _fem_windows(model, num_steps: int, times) -> int:
    """Distinct FEM windows a run of outputs reads (each computed once)."""
    return len({u for t in times for u in model.output_times(t, num_steps)})
