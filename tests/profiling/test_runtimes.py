"""The device runtimes in the profile: onnxruntime latencies merged into the end rows,
and the measured power of the INT8 edge encoder on a (fake) Jetson power monitor."""
import dataclasses

import pytest

from sci_edge.profiling import runtimes
from tests.profiling.test_power import hwmon_tree

pytest.importorskip("torch")


def _row(name, side, lat):
    from sci_edge.profiling.modules import ModuleRow

    return ModuleRow(name=name, side=side, macs=1, flops=2, params=0, peak_activation_bytes=1,
                     latency_s=lat, bytes_moved=1, per="feature frame")


def test_with_runtime_latency_merges_end_rows_only():
    from sci_edge.profiling.modules import ModelProfile

    p = ModelProfile(4, 4, rows=[_row("fem.rest", "end", {"torch_fp32": 0.3}),
                                 _row("codec.entropy_encode", "end", {"torch_fp32": 0.01}),
                                 _row("codec.synthesis", "cloud", {"torch_fp32": 0.5})])
    lat = runtimes.RuntimeLatency(rows={"fem.rest": {"ort_fp32": 0.2, "ort_int8": 0.1}},
                                  threads=1, repeats=1, versions={}, int8_target="x")
    q = runtimes.with_runtime_latency(p, lat)
    rest, rans, synth = q.rows
    assert rest.latency_s == {"torch_fp32": 0.3, "ort_fp32": 0.2, "ort_int8": 0.1}
    # the same Cython code on every runtime: one time under every name
    assert rans.latency_s == {"torch_fp32": 0.01, "ort_fp32": 0.01, "ort_int8": 0.01}
    assert synth.latency_s == {"torch_fp32": 0.5}
    assert q.end_side.latency_s["ort_int8"] == pytest.approx(0.11)
    assert p.rows[0].latency_s == {"torch_fp32": 0.3}          # the input is left alone


@pytest.mark.skipif(runtimes.unavailable_reason() is not None,
                    reason=str(runtimes.unavailable_reason()))
def test_measured_power_on_a_fake_board(tmp_path):
    # a board drawing 5 V x 1.2 A = 6 W on VDD_IN
    hwmon_tree(tmp_path, rails=(("VDD_IN", 5000, 1200), ("VDD_SOC", 5000, 300)))
    m = runtimes.measure_end_side_power(32, 32, seconds=0.6, idle_seconds=0.3, root=tmp_path,
                                        frames=2, calib=1, threads=1)
    assert m.power.input_rail == "VDD_IN" and m.power.mean_w == pytest.approx(6.0)
    assert m.power.rate_hz >= 10 and m.power.units >= 1
    assert m.energy_per_frame_j == pytest.approx(6.0 * m.frame_s, rel=1e-6)
    assert m.energy_above_idle_per_frame_j == pytest.approx(0.0, abs=1e-9)
    a = m.at_rate(10.0, 10.0)
    assert a["power_at_rate_w"] == pytest.approx(10 * m.energy_per_frame_j)
    assert a["fits"] == (a["power_at_rate_w"] <= 10 and 10 * m.frame_s <= 1)
    d = m.to_dict()
    assert d["power"]["input_rail"] == "VDD_IN" and d["frames_per_run"] == 2
    assert dataclasses.is_dataclass(m)


def test_no_board_fails_before_any_export(tmp_path, monkeypatch):
    from sci_edge.profiling.power import PowerUnavailable

    def boom(*a, **k):
        raise AssertionError("exported although there is no power monitor")

    monkeypatch.setattr("sci_edge.export.bundle.export_bundle", boom)
    with pytest.raises(PowerUnavailable, match="INA3221"):
        runtimes.measure_end_side_power(32, 32, root=tmp_path)
