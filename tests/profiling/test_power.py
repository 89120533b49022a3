"""Measured power: INA3221 discovery on fake sysfs trees (hwmon and iio layouts), the
sampler, measure_power, nvpmodel parsing; the real root only on a Jetson."""
import importlib.abc
import json
import os
import stat
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from sci_edge.errors import DataError
from sci_edge.profiling.power import (MIN_HZ, NvpMode, PowerError, PowerSampler, PowerSource,
                                      PowerUnavailable, SourceInfo, SysfsSource, Rail,
                                      find_power_source, measure_power, nvpmodel_mode,
                                      parse_nvpmodel_conf, parse_nvpmodel_query,
                                      parse_nvpmodel_status, power_unavailable_reason)

NO_MODE = NvpMode(None, None, "", "not asked in this test")


def _write(path: Path, value) -> None:
    """Atomically, as sysfs looks to a reader: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{value}\n")
    os.replace(tmp, path)


def hwmon_tree(root: Path, rails=(("VDD_IN", 5000, 1000), ("VDD_CPU_GPU_CV", 5000, 400),
                                  ("VDD_SOC", 5000, 300)), device="1-0040", hwmon="hwmon3",
               update_interval=None) -> Path:
    """An Orin-style tree: in<N>_label / in<N>_input (mV) / curr<N>_input (mA)."""
    hw = root / "sys/bus/i2c/drivers/ina3221" / device / "hwmon" / hwmon
    for n, (label, mv, ma) in enumerate(rails, 1):
        _write(hw / f"in{n}_label", label)
        _write(hw / f"in{n}_input", mv)
        _write(hw / f"curr{n}_input", ma)
    # what a real chip has besides: the shunt sum (no curr7) and the driver's files
    _write(hw / "in7_label", "sum of shunt voltages")
    _write(hw / "in7_input", 120)
    _write(hw / "name", "ina3221")
    if update_interval is not None:
        _write(hw / "update_interval", update_interval)
    return hw


def iio_tree(root: Path, rails=(("POM_5V_IN", 3000), ("POM_5V_GPU", 800), ("POM_5V_CPU", 900)),
             device="6-0040") -> Path:
    """A JetPack 4 (Nano) tree: rail_name_<N> / in_power<N>_input (mW)."""
    dev = root / "sys/bus/i2c/drivers/ina3221x" / device / "iio:device0"
    for n, (label, mw) in enumerate(rails):
        _write(dev / f"rail_name_{n}", label)
        _write(dev / f"in_power{n}_input", mw)
        _write(dev / f"in_voltage{n}_input", 5000)
        _write(dev / f"in_current{n}_input", mw // 5)
    return dev


def busy(ms=1.0):
    """Work that holds the GIL the whole time (a pure Python loop)."""
    def work():
        end = time.perf_counter() + ms / 1e3
        while time.perf_counter() < end:
            pass
    return work


def nap(ms=1.0):
    """Work that lets the GIL go (as onnxruntime / TensorRT calls do)."""
    return lambda: time.sleep(ms / 1e3)


# a thread sampler of this process waits for the GIL at each read: its tests use nap()
SAMPLERS = [pytest.param(True, id="process"), pytest.param(False, id="thread")]


# --- discovery ---------------------------------------------------------------------------------

def test_hwmon_layout_labels_units_and_input_rail(tmp_path):
    hw = hwmon_tree(tmp_path)
    _write(hw / "in4_label", "NC")              # an unconnected channel is no rail
    _write(hw / "in4_input", 0)
    _write(hw / "curr4_input", 0)
    src = find_power_source(tmp_path)
    info = src.info
    assert info.kind == "ina3221 hwmon" and info.input_rail == "VDD_IN"
    assert info.labels == ("VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC")
    assert info.rails[0].voltage_file == str(hw / "in1_input")
    assert info.rails[0].current_file == str(hw / "curr1_input")
    # mV x mA -> W: 5000 mV x 1000 mA = 5 W
    assert src.read() == pytest.approx((5.0, 2.0, 1.5))
    assert json.dumps(info.to_dict())
    assert power_unavailable_reason(tmp_path) is None


def test_input_rail_is_preferred_wherever_it_sits(tmp_path):
    hwmon_tree(tmp_path, rails=(("VDD_SOC", 5000, 300), ("VDD_CPU_GPU_CV", 5000, 400),
                                ("vdd_in", 5080, 1500)))
    info = find_power_source(tmp_path).info
    assert info.input_rail == "vdd_in"
    m = measure_power(busy(), seconds=0.2, hz=50, root=tmp_path, nvpmodel=NO_MODE)
    assert m.input_rail == "vdd_in" and m.mean_w == pytest.approx(5.08 * 1.5)


def test_iio_layout_nano_power_files_in_mw(tmp_path):
    dev = iio_tree(tmp_path)
    src = find_power_source(tmp_path)
    assert src.info.kind == "ina3221x iio" and src.info.input_rail == "POM_5V_IN"
    assert src.info.rails[0].power_file == str(dev / "in_power0_input")
    assert src.read() == pytest.approx((3.0, 0.8, 0.9))


def test_iio_layout_without_power_file_uses_v_times_i(tmp_path):
    dev = iio_tree(tmp_path, rails=(("VDD_IN", 4000), ("VDD_CPU_GPU_CV", 1000)))  # Xavier NX
    (dev / "in_power0_input").unlink()
    src = find_power_source(tmp_path)
    assert src.info.input_rail == "VDD_IN" and src.info.rails[0].power_file is None
    assert src.read() == pytest.approx((5000 * 800 / 1e6, 1.0))


def test_hwmon_is_preferred_over_iio_and_duplicate_labels_keep_both(tmp_path):
    iio_tree(tmp_path)
    hwmon_tree(tmp_path, rails=(("VDD_GPU_SOC", 5000, 1000), ("VDD_CPU_CV", 5000, 500)),
               device="1-0040", hwmon="hwmon1")
    hwmon_tree(tmp_path, rails=(("VDD_GPU_SOC", 5000, 200), ("VDDQ_VDD2_1V8AO", 5000, 100)),
               device="1-0041", hwmon="hwmon2")
    info = find_power_source(tmp_path).info
    assert info.kind == "ina3221 hwmon"
    assert info.labels == ("VDD_GPU_SOC@1-0040", "VDD_CPU_CV", "VDD_GPU_SOC@1-0041",
                           "VDDQ_VDD2_1V8AO")
    assert info.input_rail is None                  # AGX-style: no single input rail


def test_no_input_rail_needs_a_named_rail_or_the_sum(tmp_path):
    hwmon_tree(tmp_path, rails=(("VDD_GPU_SOC", 5000, 1000), ("VDD_CPU_CV", 5000, 500),
                                ("VIN_SYS_5V0", 5000, 600)))
    with pytest.raises(PowerError, match=r"no board input rail .*VDD_GPU_SOC, VDD_CPU_CV, "
                                         r"VIN_SYS_5V0.*rail='sum'"):
        measure_power(busy(), seconds=0.2, hz=50, root=tmp_path, nvpmodel=NO_MODE)
    m = measure_power(busy(), seconds=0.2, hz=50, root=tmp_path, rail="sum", nvpmodel=NO_MODE)
    assert m.input_rail == "sum(VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0)"
    assert m.mean_w == pytest.approx(5 + 2.5 + 3)
    with pytest.raises(PowerError, match=r"no rail 'VDD_GPU'.*monitored: VDD_GPU_SOC"):
        measure_power(busy(), seconds=0.2, root=tmp_path, rail="VDD_GPU", nvpmodel=NO_MODE)


def test_nothing_there_gives_the_reason(tmp_path):
    reason = power_unavailable_reason(tmp_path)
    assert reason and "no INA3221 power monitor" in reason
    assert str(tmp_path / "sys/bus/i2c/drivers") in reason and "not a Jetson" in reason
    with pytest.raises(PowerUnavailable, match="not a Jetson"):
        measure_power(busy(), seconds=0.3, root=tmp_path)
    # a driver folder without a readable rail says so rather than "not a Jetson"
    (tmp_path / "sys/bus/i2c/drivers/ina3221/1-0040").mkdir(parents=True)
    assert "no readable rail" in power_unavailable_reason(tmp_path)


class _Watch(importlib.abc.MetaPathFinder):
    """Records every attempt to import jtop and lets it fail (not installed)."""

    def __init__(self):
        self.asked = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "jtop":
            self.asked.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def test_jtop_is_not_imported_unless_allowed(tmp_path, monkeypatch):
    watch = _Watch()
    monkeypatch.delitem(sys.modules, "jtop", raising=False)
    monkeypatch.setattr(sys, "meta_path", [watch, *sys.meta_path])
    reason = power_unavailable_reason(tmp_path)
    assert watch.asked == [] and "jetson-stats" not in reason
    reason = power_unavailable_reason(tmp_path, allow_jtop=True)
    assert watch.asked == ["jtop"]
    assert "not a Jetson" in reason and "jetson-stats" in reason and "AGPL" in reason


def test_jtop_source_through_a_stand_in(tmp_path, monkeypatch):
    """jtop 4's client API as recalled (jtop(interval), start, ok, power, close):
    a stand-in module, not the real package (AGPL, absent here)."""
    class FakeJtop:
        def __init__(self, interval):
            self.interval, self.closed = interval, False

        def start(self):
            pass

        def ok(self):
            return True         # the real ok() waits for an update unless one came already

        @property
        def power(self):
            return {"rail": {"VDD_CPU_GPU_CV": {"power": 1200, "online": True},
                             "VDD_SOC": {"power": 900, "online": True}},
                    "tot": {"power": 4800, "name": "VDD_IN"}}

        def close(self):
            self.closed = True

    monkeypatch.setitem(sys.modules, "jtop", types.SimpleNamespace(jtop=FakeJtop))
    src = find_power_source(tmp_path, allow_jtop=True, hz=50)
    assert src.info.kind == "jtop" and src.info.input_rail == "VDD_IN"
    m = measure_power(nap(), seconds=0.3, hz=50, source=src, nvpmodel=NO_MODE)
    assert m.mean_w == pytest.approx(4.8) and m.rail_mean_w["VDD_SOC"] == pytest.approx(0.9)
    assert m.rate_hz >= MIN_HZ


# --- sampling and measuring --------------------------------------------------------------------

@pytest.mark.parametrize("process", SAMPLERS)
def test_measure_power_figures(tmp_path, process):
    hwmon_tree(tmp_path)
    _write(tmp_path / "etc/nvpmodel.conf", "< POWER_MODEL ID=0 NAME=15W >\n"
                                           "< POWER_MODEL ID=1 NAME=7W >\n< PM_CONFIG DEFAULT=0 >")
    _write(tmp_path / "var/lib/nvpmodel/status", "pmode:0001 fmode:quiet")
    work = busy(0.5) if process else nap(0.5)
    m = measure_power(work, seconds=0.4, root=tmp_path, process=process)
    assert m.rate_hz >= MIN_HZ and m.samples >= 5 and m.requested_hz == 20
    assert m.units > 10 and m.wall_s >= 0.4
    assert m.mean_w == m.median_w == m.max_w == m.min_w == pytest.approx(5.0)
    assert m.rail_mean_w == pytest.approx({"VDD_IN": 5.0, "VDD_CPU_GPU_CV": 2.0, "VDD_SOC": 1.5})
    assert m.energy_per_unit_j == pytest.approx(m.mean_w * m.wall_s / m.units)
    assert m.unit_s == pytest.approx(m.wall_s / m.units)
    assert m.max_interval_s < 0.4
    assert (m.nvpmodel.name, m.nvpmodel.id) == ("7W", 1)
    assert m.source.kind == "ina3221 hwmon" and m.idle is None
    assert any("idle included" in n for n in m.notes)
    d = m.to_dict()
    assert json.loads(json.dumps(d))["source"]["input_rail"] == "VDD_IN"
    assert d["nvpmodel"]["known"] is True


def test_repeats_and_idle_baseline(tmp_path):
    hw = hwmon_tree(tmp_path)
    calls = []

    def work():
        if not calls:                       # the work draws 2 A more than idle
            _write(hw / "curr1_input", 3000)
        calls.append(1)
        time.sleep(0.01)

    m = measure_power(work, repeats=20, idle_seconds=0.2, hz=50, root=tmp_path, nvpmodel=NO_MODE)
    assert m.units == 20 and m.idle is not None
    assert m.idle.median_w == pytest.approx(5.0) and m.idle.samples >= 5
    assert m.idle.rate_hz >= MIN_HZ
    assert m.median_w == pytest.approx(15.0)
    assert m.energy_above_idle_per_unit_j == pytest.approx(
        (m.mean_w - m.idle.mean_w) * m.wall_s / m.units)
    assert m.above_idle_w == pytest.approx(m.mean_w - m.idle.mean_w)


@pytest.mark.parametrize("process", SAMPLERS)
def test_sampler_sees_values_another_thread_changes(tmp_path, process):
    hw = hwmon_tree(tmp_path)
    src = SysfsSource.discover(tmp_path)
    done = threading.Event()

    def writer():
        for ma in (1000, 2000, 3000):
            _write(hw / "curr1_input", ma)
            if done.wait(0.1):
                return

    t = threading.Thread(target=writer)
    with PowerSampler(src, hz=50, process=process) as sampler:
        assert sampler.process is process
        t.start()
        t.join()
    done.set()
    samples = sampler.stop()
    seen = {round(s.watts[0], 6) for s in samples}
    assert {5.0, 10.0, 15.0} <= seen
    times = [s.t for s in samples]
    assert times == sorted(times)
    assert len(samples) / (times[-1] - times[0]) >= MIN_HZ


@pytest.mark.parametrize("process", SAMPLERS)
def test_a_rail_file_disappearing_stops_with_an_error(tmp_path, process):
    hw = hwmon_tree(tmp_path)
    calls = []

    def work():
        calls.append(1)
        if len(calls) == 20:
            (hw / "curr2_input").unlink()
        time.sleep(0.002)

    t0 = time.monotonic()
    with pytest.raises(PowerError, match=r"power sampling stopped after \d+ samples: .*"
                                         r"curr2_input: cannot read"):
        measure_power(work, seconds=5, root=tmp_path, nvpmodel=NO_MODE, process=process)
    assert time.monotonic() - t0 < 2          # stopped at once, not after the 5 s


def test_a_sampling_process_that_dies_is_an_error(tmp_path):
    hwmon_tree(tmp_path)
    sampler = PowerSampler(SysfsSource.discover(tmp_path), hz=50).start()
    sampler._child.kill()
    assert sampler.wait(3)
    with pytest.raises(PowerError, match=r"the sampling process exited \(status -9\)"):
        sampler.stop()


def test_only_sysfs_is_sampled_in_a_process():
    with pytest.raises(DataError, match="sampled on a thread"):
        PowerSampler(SlowSource(), process=True)
    assert PowerSampler(SlowSource()).process is False


def test_a_garbled_reading_is_an_error_not_a_number(tmp_path):
    hw = hwmon_tree(tmp_path)
    src = SysfsSource.discover(tmp_path)
    _write(hw / "in1_input", "")
    with pytest.raises(PowerError, match=r"in1_input: not a number"):
        src.read()


def test_work_errors_pass_through_and_the_thread_ends(tmp_path):
    hwmon_tree(tmp_path)
    before = threading.active_count()

    def work():
        raise ZeroDivisionError("the encoder's own bug")

    with pytest.raises(ZeroDivisionError, match="own bug"):
        measure_power(work, seconds=0.3, root=tmp_path, nvpmodel=NO_MODE)
    assert threading.active_count() == before


@pytest.mark.parametrize("hz", [9.99, 5, 0, -20, float("nan"), float("inf"), "fast"])
def test_sampling_below_10_hz_is_refused(tmp_path, hz):
    hwmon_tree(tmp_path)
    with pytest.raises(DataError, match="sampling rate"):
        measure_power(busy(), seconds=0.3, hz=hz, root=tmp_path, nvpmodel=NO_MODE)
    with pytest.raises(DataError, match=r">= 10 Hz|must be a number"):
        PowerSampler(SysfsSource.discover(tmp_path), hz=hz)


def test_bad_arguments(tmp_path):
    hwmon_tree(tmp_path)
    for kwargs, match in ((dict(seconds=1, repeats=3), "not both"),
                          (dict(repeats=0), "repeats must be"), (dict(repeats=2.5), "repeats"),
                          (dict(seconds=-1), "seconds must be"),
                          (dict(seconds=1, idle_seconds=-1), "idle seconds")):
        with pytest.raises(DataError, match=match):
            measure_power(busy(), root=tmp_path, nvpmodel=NO_MODE, **kwargs)


class SlowSource(PowerSource):
    """Reads that take 150 ms: the sampler cannot reach 10 Hz."""

    @property
    def info(self):
        return SourceInfo("slow", (Rail("VDD_IN", "test"),), "VDD_IN")

    def read(self):
        time.sleep(0.15)
        return (4.0,)


def test_an_achieved_rate_below_10_hz_is_an_error():
    with pytest.raises(PowerError, match=r"Hz, asked 20 Hz\); a measurement needs >= 10 Hz"):
        measure_power(nap(), seconds=0.3, source=SlowSource(), nvpmodel=NO_MODE)


def test_a_short_window_is_an_error_that_says_so(tmp_path):
    hwmon_tree(tmp_path)
    with pytest.raises(PowerError, match=r"too short.*seconds="):
        measure_power(busy(), repeats=1, root=tmp_path, nvpmodel=NO_MODE)


def test_a_sensor_slower_than_10_hz_is_refused(tmp_path):
    hwmon_tree(tmp_path, update_interval=200)
    src = find_power_source(tmp_path)
    assert src.info.update_interval_ms == 200
    with pytest.raises(PowerError, match=r"updates every 200 ms.*update_interval"):
        measure_power(busy(), seconds=0.3, source=src, nvpmodel=NO_MODE)


# --- nvpmodel ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("NV Power Mode: 15W\n0\n", ("15W", 0)),
    ("NVPM WARN: fan mode is not set!\nNV Power Mode: MAXN_SUPER\n2\n", ("MAXN_SUPER", 2)),
    ("NV Fan Mode:quiet\nNV Power Mode: MODE_10W\n\n1\n", ("MODE_10W", 1)),
    ("NV Power Mode: 7W\n", ("7W", None)),
    ("NVPM ERROR: failed to read PARAM\n", (None, None)),
])
def test_nvpmodel_query_parsing(text, expected):
    assert parse_nvpmodel_query(text) == expected


def test_nvpmodel_conf_and_status_parsing():
    conf = ("# comment\n< POWER_MODEL ID=0 NAME=MAXN >\nCPU_ONLINE CORE_0 1\n"
            "< POWER_MODEL ID=1 NAME=5W >\n< PM_CONFIG DEFAULT=0 >\n")
    assert parse_nvpmodel_conf(conf) == ({0: "MAXN", 1: "5W"}, 0)
    assert parse_nvpmodel_status("pmode:0001 fmode:quiet\n") == 1
    assert parse_nvpmodel_status("fmode:quiet") is None


def _script(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_nvpmodel_binary_then_files_then_reason(tmp_path):
    none = nvpmodel_mode(tmp_path)
    assert not none.known and "no nvpmodel binary" in none.reason
    _write(tmp_path / "etc/nvpmodel.conf", "< POWER_MODEL ID=0 NAME=MAXN >\n"
                                           "< PM_CONFIG DEFAULT=0 >")
    assert "default, mode 0" in nvpmodel_mode(tmp_path).reason     # not taken as current
    _write(tmp_path / "var/lib/nvpmodel/status", "pmode:0000")
    files = nvpmodel_mode(tmp_path)
    assert (files.name, files.id, files.reason) == ("MAXN", 0, None)
    _script(tmp_path / "usr/sbin/nvpmodel", "echo 'NV Power Mode: 25W'; echo 1")
    ran = nvpmodel_mode(tmp_path)
    assert (ran.name, ran.id) == ("25W", 1) and ran.source.endswith("nvpmodel -q")


def test_nvpmodel_that_hangs_is_killed(tmp_path):
    _script(tmp_path / "usr/sbin/nvpmodel", "exec sleep 30")
    t0 = time.monotonic()
    mode = nvpmodel_mode(tmp_path, timeout=0.3)
    assert time.monotonic() - t0 < 3
    assert not mode.known and "did not answer within 0.3 s" in mode.reason


# --- the real machine --------------------------------------------------------------------------

def test_real_jetson_power():
    reason = power_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    m = measure_power(busy(2.0), seconds=1.0)
    assert m.rate_hz >= MIN_HZ and m.mean_w > 0 and m.samples >= 5
    assert m.energy_per_unit_j > 0
