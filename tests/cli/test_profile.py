"""``sci-edge profile``: options, --json, --markdown, errors; a fake module profile
stands in for sci_edge.profiling.modules (one real smoke test where it exists)."""
import importlib.util
import json
import sys
import types

import pytest

from sci_edge.cli.main import main
from tests.profiling.fakes import FEM_MACS, FEM_PARAMS, fake_profile

pytest.importorskip("torch")
pytest.importorskip("fvcore")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fake(monkeypatch):
    calls = []
    mod = types.ModuleType("sci_edge.profiling.modules")

    def profile_modules(height, width, *, repeats=3, latency=True):
        calls.append((height, width, repeats, latency))
        return fake_profile(height, width, repeats=repeats, latency=latency)

    mod.profile_modules = profile_modules
    monkeypatch.setitem(sys.modules, "sci_edge.profiling.modules", mod)

    # the onnxruntime timings (an export and calibration) stand in too
    from sci_edge.profiling import runtimes

    def runtime_latency(height, width, *, repeats=3, threads=None, calib=4, weights=None):
        calls.append(("ort", height, width))
        return runtimes.RuntimeLatency(rows={"fem": {"ort_fp32": 0.004, "ort_int8": 0.002}},
                                       threads=1, repeats=repeats,
                                       versions={"onnxruntime": "x"}, int8_target="test")

    monkeypatch.setattr(runtimes, "runtime_latency", runtime_latency)
    monkeypatch.setattr(runtimes, "unavailable_reason", lambda: None)
    return calls


def test_json_one_device_mode(capsys, fake):
    code, out, err = run(capsys, "profile", "--device", "orin-nano-8gb", "--mode", "15w",
                         "--outputs-per-s", "30", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert fake == [(256, 256, 3, True), ("ort", 256, 256)]
    fem = doc["modules"][0]
    assert fem["latency_s"]["ort_int8"] == 0.002 and "torch_fp32" in fem["latency_s"]
    assert doc["end_side"]["latency_s"]["ort_fp32"] == pytest.approx(0.004)
    assert doc["runtimes"]["measured"] is True and "latency" not in doc["runtimes"]
    assert "ort_fp32" not in doc["modules"][1]["latency_s"]          # the cloud: torch only
    from sci_edge.profiling.power import power_unavailable_reason

    why = power_unavailable_reason()
    if why is not None:                                          # not a Jetson: says why
        assert doc["measured_power"] == {"measured": False, "reason": why}
    assert doc["end_side"]["gflops"] == pytest.approx(FEM_MACS / 1e9)      # fvcore
    assert doc["end_side"]["gmacs"] == pytest.approx(1.76)
    assert doc["end_side"]["params"] == FEM_PARAMS
    assert doc["cloud_side"]["gflops"] == pytest.approx(32.0)
    assert [r["name"] for r in doc["modules"]] == ["fem", "analysis", "head"]
    assert doc["rate"]["feature_rate"] == 210 and doc["rate"]["features_per_output"] == 7
    assert doc["budget"]["gflops_check"]["fits"] is True
    [dev] = doc["devices"]
    assert dev["name"] == "orin-nano-8gb" and dev["gridsample"] is True
    [m] = dev["modes"]
    assert m["mode"] == "15W" and m["fits"] is True
    for key in ("latency_s", "energy_j", "power_at_rate_w", "max_rate_within_budget"):
        assert m[key] > 0
    assert m["power_at_rate_w"] == pytest.approx(m["energy_j"] * 210)
    assert any("dense INT8" in a for a in doc["assumptions"])


def test_text_report_all_devices_and_modes(capsys, fake):
    code, out, err = run(capsys, "profile", "--no-latency", "--size", "128x128")
    assert code == 0, err
    assert fake == [(128, 128, 3, False)]
    assert "{" not in out and "end side total" in out and "PASS" in out
    assert "210 feature frames/s (the budget's default rate)" in out
    for name in ("orin-nano-4gb", "agx-orin-64gb", "jetson-nano", "xavier-nx"):
        assert name in out
    assert "MAXN_SUPER" in out and "Assumptions" in out and "unconfirmed" in out


def test_markdown(capsys, fake):
    code, out, _ = run(capsys, "profile", "--device", "orin-nano-8gb", "--markdown",
                       "--camera-hz", "20000", "--stride", "7", "--efficiency", "0.5")
    assert code == 0
    lines = out.splitlines()
    assert any(line.startswith("| module |") for line in lines)
    assert any(line.startswith("| device |") and "min stride" in line for line in lines)
    assert any(line.startswith("|---") for line in lines)
    assert "### Assumptions" in out and "0.5 x peak" in out


def test_a_user_device_file(capsys, fake, tmp_path):
    from sci_edge.profiling.devices import profiles_dir

    path = tmp_path / "board.toml"
    path.write_text((profiles_dir() / "xavier-nx.toml").read_text())
    code, out, err = run(capsys, "profile", "--device", path, "--json", "--precision", "fp16")
    assert code == 0, err
    [dev] = json.loads(out)["devices"]
    assert dev["name"] == "board" and dev["modes"][0]["precision_used"] == "fp16"


@pytest.mark.parametrize("argv, message", [
    (["--feature-rate", "10", "--outputs-per-s", "3"], "not --feature-rate and --outputs-per-s"),
    (["--camera-hz", "20000"], "--camera-hz needs --stride"),
    (["--stride", "7"], "--stride needs --camera-hz"),
    (["--mode", "15W"], "--mode needs --device"),
    (["--device", "orin-nano-8gb", "--mode", "20W"], "known: 15W, 25W, MAXN_SUPER, 7W"),
    (["--device", "orin-nano"], "unknown device 'orin-nano'"),
])
def test_errors_are_one_line_before_any_profiling(capsys, fake, argv, message):
    code, out, err = run(capsys, "profile", *argv)
    assert code == 2 and out == "" and fake == []
    assert err.startswith("sci-edge profile: error: ") and message in err
    assert err.count("\n") == 1


def test_a_broken_device_file(capsys, fake, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('title = "x"\n')
    code, _, err = run(capsys, "profile", "--device", bad)
    assert code == 2 and f"{bad}: " in err and err.count("\n") == 1


@pytest.mark.parametrize("argv", [["--json", "--markdown"], ["--efficiency", "1.5"],
                                  ["--efficiency", "0.3,0.6,0.9"], ["--precision", "int4"]])
def test_bad_options_are_usage_errors(capsys, fake, argv):
    with pytest.raises(SystemExit) as info:
        main(["profile", *argv])
    assert info.value.code == 2


def test_list_devices(capsys):
    code, out, _ = run(capsys, "profile", "--list-devices", "--json")
    names = [d["name"] for d in json.loads(out)["devices"]]
    assert code == 0 and "orin-nano-8gb" in names and "budget" not in names


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("sci_edge.profiling.modules") is None,
                    reason="sci_edge.profiling.modules not there yet")
def test_the_real_module_profile(capsys):
    code, out, err = run(capsys, "profile", "--device", "orin-nano-8gb", "--mode", "15W",
                         "--size", "64x64", "--no-latency", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["end_side"]["params"] > 0 and doc["end_side"]["gflops"] > 0
    assert all(r["side"] in ("end", "cloud") for r in doc["modules"])
    names = {r["name"] for r in doc["modules"]}
    assert {"codec.analysis", "codec.entropy_encode", "codec.synthesis"} <= names
    paper = {p["module"]: p for p in doc["paper"]}
    assert paper["FEM"]["paper_gflops"] == 74.79 and paper["P-encoder"]["ours_gflops"] > 0
    assert doc["end_side"]["macs"] == sum(r["macs"] for r in doc["modules"]
                                          if r["side"] == "end")
