"""End-side latency of the device runtimes (onnxruntime fp32 and INT8) per module row.

The device pipeline is timed by ``sci-edge bench edge``
(:func:`sci_edge.bench.edge.run_edge_bench`: the popcount kernel, then the
exported ``fem_tail``, ``encoder_analysis`` and ``hyper_intra`` graphs, taking
turns with torch in one process); its per-stage medians become the
``ort_fp32`` and ``ort_int8`` latencies of the matching rows. Rows that run the
same numpy or Cython code on every runtime (the integer hyper-synthesis, rANS)
carry their one measured time under those names too, so that the end side's
totals compare like with like. Cloud rows stay torch fp32: the cloud side is
full precision.
"""
from __future__ import annotations

import dataclasses

from .._deps import available

# bench edge's stage -> the profile row it times
STAGE_ROWS = {"popcount": "fem.popcount", "fem": "fem.rest",
              "encoder": "codec.analysis", "hyper": "codec.hyper_encoder"}
BACKENDS = {"ort-fp32": "ort_fp32", "ort-int8": "ort_int8"}
# rows whose code is the same whatever runs the networks
SAME_CODE_ROWS = ("codec.hyper_synthesis", "codec.entropy_encode")


@dataclasses.dataclass(frozen=True)
class RuntimeLatency:
    rows: dict                  # row name -> {backend: median seconds}
    threads: int
    repeats: int
    versions: dict
    int8_target: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def unavailable_reason() -> str | None:
    """Why the onnxruntime rows cannot be measured here, or None."""
    missing = [m for m in ("onnx", "onnxruntime") if not available(m)]
    if missing:
        return f"{' and '.join(missing)} not installed (pip install '.[export]')"
    return None


def runtime_latency(height: int, width: int, *, repeats: int = 3, threads: int | None = None,
                    calib: int = 4, weights=None) -> RuntimeLatency:
    """Per-row onnxruntime latencies at ``height`` x ``width`` (see the module text)."""
    from ..bench.edge import run_edge_bench

    b = run_edge_bench(weights, sizes=[(height, width)], repeats=repeats, threads=threads,
                       calib=calib, encode_frames=1)
    size = b.sizes[0]
    rows: dict[str, dict[str, float]] = {}
    for path, backend in BACKENDS.items():
        stages = size.paths[path].stages
        for stage, row in STAGE_ROWS.items():
            rows.setdefault(row, {})[backend] = float(stages[stage])
    return RuntimeLatency(rows=rows, threads=b.threads, repeats=repeats,
                          versions=dict(b.versions), int8_target=str(b.int8_target))


def with_runtime_latency(profile, latency: RuntimeLatency):
    """``profile`` (a ModelProfile) with the runtimes' latencies merged into its end
    rows; rows with nothing measured for a backend are left without it."""
    rows = []
    for r in profile.rows:
        lat = dict(r.latency_s)
        if r.side == "end":
            lat.update(latency.rows.get(r.name, {}))
            if r.name in SAME_CODE_ROWS and "torch_fp32" in lat:
                for backend in BACKENDS.values():
                    lat.setdefault(backend, lat["torch_fp32"])
        rows.append(dataclasses.replace(r, latency_s=lat))
    return dataclasses.replace(profile, rows=rows)


__all__ = ["RuntimeLatency", "runtime_latency", "with_runtime_latency", "unavailable_reason",
           "STAGE_ROWS"]


# --- measured power on the device -------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class MeasuredEndSide:
    """The end side's energy per feature frame as measured on this board (a Jetson):
    the torch-free INT8 edge encoder coding a natural test scene, frames of
    ``height`` x ``width``, while the board's input rail is sampled."""
    height: int
    width: int
    frames_per_run: int
    power: object                       # sci_edge.profiling.power.PowerMeasurement
    energy_per_frame_j: float           # input rail, idle included
    energy_above_idle_per_frame_j: float | None
    frame_s: float                      # wall seconds per feature frame (this CPU, ORT)

    def at_rate(self, feature_rate: float, budget_w: float) -> dict:
        """Average power at ``feature_rate`` and the verdict against ``budget_w``: the
        measured energy per frame times the rate, and whether this board keeps up."""
        power = self.energy_per_frame_j * feature_rate
        return {"feature_rate": feature_rate, "power_at_rate_w": power,
                "utilisation": feature_rate * self.frame_s,
                "max_rate_within_budget": min(1.0 / self.frame_s,
                                              budget_w / self.energy_per_frame_j),
                "fits": bool(power <= budget_w and feature_rate * self.frame_s <= 1.0)}

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["power"] = self.power.to_dict()
        return d


def measure_end_side_power(height: int, width: int, *, seconds: float = 5.0,
                           idle_seconds: float = 2.0, hz: float = 20.0, rail: str | None = None,
                           allow_jtop: bool = False, root="/", frames: int = 4, calib: int = 4,
                           threads: int | None = None, weights=None) -> MeasuredEndSide:
    """Measure the board's power while the INT8 edge encoder codes ``frames`` feature
    frames again and again for ``seconds`` (after ``idle_seconds`` idle); raises
    :class:`~sci_edge.profiling.power.PowerUnavailable` with the reason off a Jetson
    (checked before any export)."""
    import contextlib
    import io
    import tempfile
    from pathlib import Path

    from ..data.scenes import NaturalScenes
    from ..edge.encoder import EdgeEncoder
    from ..export.bundle import export_bundle
    from ..export.quantize import calibration_spikes
    from ..models.end.fem import WINDOW
    from ..models.pretrained import load_pretrained_codec
    from .power import find_power_source, measure_power

    source = find_power_source(root, allow_jtop=allow_jtop, hz=hz)   # fails fast off a board
    stride = 5
    seq = NaturalScenes("test", size=(height, width), num_steps=WINDOW + (frames - 1) * stride,
                        seed=0)[0]
    try:
        with tempfile.TemporaryDirectory(prefix="sci_edge_power_") as tmp:
            model = load_pretrained_codec(weights)
            with contextlib.redirect_stdout(io.StringIO()):
                export_bundle(model, Path(tmp) / "bundle", int8=True, trt=False,
                              calibration=calibration_spikes(count=calib, size=(128, 128)),
                              size=(64, 64))
            encoder = EdgeEncoder(Path(tmp) / "bundle", precision="int8", threads=threads)
            gain = float(seq.alpha)

            def work():
                res = encoder.encode(seq.spikes, io.BytesIO(),
                                     quality=encoder.bundle.qualities - 1, stride=stride,
                                     gain=gain)
                if res.frames != frames:
                    raise RuntimeError(f"coded {res.frames} frames, expected {frames}")

            work()                                  # warm-up, outside the measurement
            m = measure_power(work, seconds=seconds, idle_seconds=idle_seconds, hz=hz,
                              rail=rail, source=source, root=root)
    finally:
        source.close()
    above = m.energy_above_idle_per_unit_j
    return MeasuredEndSide(height=height, width=width, frames_per_run=frames, power=m,
                           energy_per_frame_j=m.energy_per_unit_j / frames,
                           energy_above_idle_per_frame_j=None if above is None
                           else above / frames,
                           frame_s=m.unit_s / frames)


__all__ += ["MeasuredEndSide", "measure_end_side_power"]
