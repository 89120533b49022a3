"""The estimate model on hand-computed numbers; the rate options; side totals."""
import pytest

from sci_edge import config
from sci_edge.errors import DataError
from sci_edge.profiling.devices import Budget, DeviceProfile, load_device
from sci_edge.profiling.estimate import (Efficiency, Workload, assumptions, check_flops,
                                         estimate_device, estimate_mode, features_rate,
                                         peak_ops_per_s, side_total)

from .fakes import FEM_MACS, fake_profile


def _n(value):
    return {"value": value, "source": "x"}


def device(int8=1.0, fp16=0.5, fp32=0.25, bandwidth=100.0, modes=None):
    """A made-up device: 1 dense INT8 TOPS at 1000 MHz, 100 GB/s."""
    modes = modes or [{"name": "FULL", "nvpmodel": 0, "watts": 10, "gpu_mhz": 1000,
                       "source": "x"},
                      {"name": "HALF", "nvpmodel": 1, "watts": 20, "gpu_mhz": 500,
                       "source": "x"}]
    return config.build(DeviceProfile, {
        "name": "toy", "title": "toy", "sources": {"x": "made up"},
        "cuda_cores": _n(1), "tensor_cores": _n(1), "peak_gpu_mhz": _n(1000),
        "int8_tops_dense": _n(int8), "int8_tops_sparse": _n(2 * int8), "fp16_tflops": _n(fp16),
        "fp32_tflops": _n(fp32), "memory_bandwidth_gbs": _n(bandwidth), "memory_gb": _n(1),
        "software": {"jetpack": "6.2", "tensorrt": "10.3", "gridsample": True, "source": "x"},
        "modes": modes})


def test_one_gmac_at_one_dense_tops_and_half_efficiency_is_4_ms():
    e = estimate_mode(device(), "FULL", Workload(macs=10**9), budget_w=10,
                      efficiency=Efficiency(0.5, 0.5))
    assert e.latency_s == pytest.approx(4e-3)       # 2e9 ops / (0.5 x 1e12 ops/s)
    assert e.bound == "compute" and e.memory_s == 0
    assert e.energy_j == pytest.approx(4e-3 * 10)
    assert e.rate_max == pytest.approx(250)


def test_memory_bound():
    # 6 GB at 100 GB/s x 0.6 -> 0.1 s; the compute (1 MMAC) is nothing
    e = estimate_mode(device(), "FULL", Workload(macs=10**6, bytes_moved=6 * 10**9),
                      budget_w=10, precision="fp32")
    assert e.bound == "memory" and e.latency_s == pytest.approx(0.1)
    # counted at fp32: INT8 elements are a quarter of that, unless told otherwise
    e = estimate_mode(device(), "FULL", Workload(macs=10**6, bytes_moved=6 * 10**9),
                      budget_w=10, precision="int8")
    assert e.latency_s == pytest.approx(0.025) and e.bytes_scale == 0.25
    e = estimate_mode(device(), "FULL", Workload(macs=10**6, bytes_moved=6 * 10**9),
                      budget_w=10, precision="int8", bytes_scale=0.5)
    assert e.latency_s == pytest.approx(0.05)


def test_peak_scales_with_the_gpu_clock_and_depends_on_precision():
    d = device()
    assert peak_ops_per_s(d, d.mode("FULL"), "int8") == (pytest.approx(1e12), "int8")
    assert peak_ops_per_s(d, d.mode("half"), "int8") == (pytest.approx(0.5e12), "int8")
    assert peak_ops_per_s(d, d.mode("FULL"), "fp16")[0] == pytest.approx(0.5e12)
    assert peak_ops_per_s(d, d.mode("FULL"), "FP32")[0] == pytest.approx(0.25e12)
    w = Workload(macs=10**9)
    full = estimate_mode(d, "FULL", w, budget_w=10)
    half = estimate_mode(d, "HALF", w, budget_w=10)
    assert half.latency_s == pytest.approx(2 * full.latency_s)
    with pytest.raises(DataError, match="precision must be one of int8, fp16, fp32"):
        peak_ops_per_s(d, d.mode("FULL"), "int4")


def test_int8_without_int8_falls_back_to_fp16():
    d = device(int8=0.0)
    e = estimate_mode(d, "FULL", Workload(macs=10**9), budget_w=10, precision="int8")
    assert e.precision == "int8" and e.precision_used == "fp16"
    assert any("FP16 peak" in n for n in e.notes)
    assert e.peak_ops_per_s == pytest.approx(0.5e12)


def test_power_utilisation_and_the_highest_rate_in_budget():
    # 4 ms per frame at 10 W: 40 mJ per frame
    d, w, eff = device(), Workload(macs=10**9), Efficiency(0.5, 0.5)
    e = estimate_mode(d, "FULL", w, budget_w=5, efficiency=eff, rate=100)
    assert e.utilisation == pytest.approx(0.4)
    assert e.power_at_rate_w == pytest.approx(4.0)             # 40 mJ x 100 /s
    assert e.fits and e.mode_within_budget is False            # 10 W mode, 5 W budget
    assert e.max_rate_within_budget == pytest.approx(125)      # 5 W / 40 mJ
    assert any("idling" in n for n in e.notes)
    over = estimate_mode(d, "FULL", w, budget_w=5, efficiency=eff, rate=130)
    assert not over.fits                                       # 5.2 W > 5 W
    busy = estimate_mode(d, "FULL", w, budget_w=50, efficiency=eff, rate=300)
    assert busy.utilisation == pytest.approx(1.2) and not busy.fits   # 250/s at most
    assert busy.max_rate_within_budget == pytest.approx(250)
    plain = estimate_mode(d, "FULL", w, budget_w=50, efficiency=eff)
    assert plain.fits is None and plain.utilisation is None


def test_min_stride_for_a_camera_rate():
    d, w, eff = device(), Workload(macs=10**9), Efficiency(0.5, 0.5)
    rate = features_rate(camera_hz=20000, stride=100)           # 200 features/s
    e = estimate_mode(d, "FULL", w, budget_w=50, efficiency=eff, rate=rate,
                      camera_hz=rate.camera_hz)
    assert e.fits and e.min_stride == 80                        # 20000 / 250 per s
    e = estimate_mode(d, "FULL", w, budget_w=5, efficiency=eff, camera_hz=20000)
    assert e.min_stride == 160                                  # 20000 / 125


def test_estimate_device_all_or_some_modes():
    d = device()
    assert [e.mode for e in estimate_device(d, Workload(10**9), budget_w=10)] == ["FULL", "HALF"]
    assert [e.mode for e in estimate_device(d, Workload(10**9), budget_w=10,
                                            modes=["half"])] == ["HALF"]
    with pytest.raises(DataError, match="no power mode 'QUARTER'"):
        estimate_device(d, Workload(10**9), budget_w=10, modes=["QUARTER"])


def test_efficiency_is_checked():
    with pytest.raises(DataError, match="efficiency compute"):
        Efficiency(0.0, 0.5)
    with pytest.raises(DataError, match="bandwidth"):
        Efficiency(0.3, 1.5)


def test_rate_options():
    assert features_rate(feature_rate=210).feature_rate == 210
    r = features_rate(camera_hz=20000, stride=7)
    assert r.feature_rate == pytest.approx(20000 / 7) and r.source == "camera"
    r = features_rate(outputs_per_s=30)
    assert r.feature_rate == 210 and r.features_per_output == 7
    assert features_rate(outputs_per_s=30, features_per_output=5).feature_rate == 150
    assert features_rate(default=210).source == "budget"
    assert "30 isolated outputs/s x 7" in features_rate(outputs_per_s=30).describe()
    with pytest.raises(DataError, match="not --feature-rate and --outputs-per-s"):
        features_rate(feature_rate=10, outputs_per_s=3)
    with pytest.raises(DataError, match="not --feature-rate and --camera-hz"):
        features_rate(feature_rate=10, camera_hz=20000, stride=7)
    with pytest.raises(DataError, match="--camera-hz needs --stride"):
        features_rate(camera_hz=20000)
    with pytest.raises(DataError, match="--stride needs --camera-hz"):
        features_rate(stride=7)
    with pytest.raises(DataError, match="no rate"):
        features_rate()
    with pytest.raises(DataError, match="positive"):
        features_rate(feature_rate=-1)


def test_side_totals_sum_the_end_rows_so_new_rows_join():
    prof = fake_profile(extra_end=True)
    end = side_total(prof.rows, "end")
    assert end.modules == ("fem", "encoder")
    assert end.macs == FEM_MACS + 500_000_000 and end.flops == 2 * end.macs
    assert end.gflops == end.gmacs == pytest.approx(end.macs / 1e9)
    assert end.params == 24_600 + 10_000
    assert end.peak_activation_bytes == 16_000_000             # the largest, not the sum
    assert end.latency_s == {"torch_fp32": pytest.approx(0.016)}
    assert end.per == "feature frame"
    cloud = side_total(prof.rows, "cloud", model="recon")
    assert cloud.modules == ("analysis", "head") and cloud.per == "output"
    with pytest.raises(DataError):
        side_total(prof.rows, "edge")


def test_flops_budget():
    b = Budget()
    c = check_flops(side_total(fake_profile().rows, "end"), b)
    assert c.fits and c.gflops == pytest.approx(1.76) and c.margin == pytest.approx(8.24)
    assert not check_flops(Workload(macs=11 * 10**9), b).fits


def test_the_issue_target_on_orin_nano_8gb():
    """210 feature frames/s of the FEM at 256x256 within 10 W (fake bytes moved)."""
    d = load_device("orin-nano-8gb")
    end = side_total(fake_profile().rows, "end")
    for mode in ("15W", "25W"):
        e = estimate_mode(d, mode, end.workload(), budget_w=10,
                          rate=features_rate(outputs_per_s=30))
        assert e.fits and e.power_at_rate_w < 10 and e.utilisation < 1, e
    # 1.76 GMAC = 3.52 G ops at 33.5 x 612/1020 dense TOPS x 0.3
    e = estimate_mode(d, "15W", end.workload(), budget_w=10)
    assert e.compute_s == pytest.approx(3.52e9 / (0.3 * 33.5e12 * 612 / 1020))


def test_assumptions_state_the_efficiency_and_dense_peak():
    text = " ".join(assumptions(Efficiency(0.25, 0.5), "int8"))
    assert "0.25 x peak" in text and "0.5 x memory bandwidth" in text
    assert "dense INT8" in text and "1 MAC = 1 flop" in text
