"""``sci-edge export onnx|int8|trt|bundle``: files, JSON reports, config defaults and
one-line errors. Weights: the small untrained codec of tests.models.codec_fixtures,
exported at 64x64 with 2 calibration sequences (the graphs take any size)."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sci_edge.cli.main import main
from tests.models.codec_fixtures import save_small

torch = pytest.importorskip("torch")
pytest.importorskip("onnx", reason="onnx is not installed (pip install 'sci_edge[export]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

GRAPHS = ("fem_tail", "encoder_analysis", "hyper_intra", "hyper_inter")
ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--size", "64x64"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code, out, err, *needles):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_small(tmp_path_factory.mktemp("export_cli") / "w.pt")


@pytest.fixture(scope="module")
def int8_dir(weights, tmp_path_factory):
    """`export int8` of both flavours, once: (folder, its JSON report)."""
    out = tmp_path_factory.mktemp("int8") / "graphs"
    torch.set_num_threads(1)
    code = main(["export", "int8", "--out", str(out), "--weights", str(weights), *SMALL,
                 "--calib", "2", "--json"])
    assert code == 0
    return out


# --- onnx --------------------------------------------------------------------------------
def test_onnx_writes_checked_graphs(capsys, tmp_path, weights):
    out = tmp_path / "onnx"
    code, stdout, err = run(capsys, "export", "onnx", "--out", out, "--weights", weights,
                            *SMALL, "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    for key in ("command", "out_dir", "opset", "size", "graphs", "max_parity", "weights",
                "weights_hash", "settings"):
        assert key in doc, key
    assert doc["size"] == [64, 64] and doc["opset"] == 17 and doc["config"] is None
    assert set(doc["graphs"]) == set(GRAPHS)
    for g in GRAPHS:
        e = doc["graphs"][g]
        assert Path(e["path"]) == out / f"{g}.onnx" and Path(e["path"]).is_file()
        assert e["parity"] < 1e-4 and e["macs"] > 0
    # the text report: one line per graph with its parity and MACs
    code, stdout, _ = run(capsys, "export", "onnx", "--out", out, "--weights", weights, *SMALL)
    assert code == 0 and stdout.startswith(f"exported 4 graphs to {out}")
    assert all(g in stdout for g in GRAPHS) and "MACs" in stdout and "parity" in stdout


def test_config_supplies_defaults_and_options_win(capsys, tmp_path, weights):
    cfg = tmp_path / "target.toml"
    cfg.write_text('device = "test box"\nsize = [64, 64]\nopset = 16\ncalib = 2\n')
    code, stdout, err = run(capsys, "export", "onnx", "--out", tmp_path / "a", "--weights",
                            weights, "--config", cfg, "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert (doc["size"], doc["opset"], doc["config"]) == ([64, 64], 16, str(cfg))
    assert doc["settings"]["device"] == "test box"
    code, stdout, err = run(capsys, "export", "onnx", "--out", tmp_path / "b", "--weights",
                            weights, "--config", cfg, "--opset", "17", "--json")
    assert code == 0, err
    assert json.loads(stdout)["opset"] == 17


def test_a_bad_config_key_is_one_line(capsys, tmp_path, weights):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("size = [64, 64]\ncalibration = 4\n")
    out = tmp_path / "never"
    line = _one_line_error(*run(capsys, "export", "bundle", "--out", out, "--weights", weights,
                                "--config", cfg), str(cfg), "calibration", "unknown key")
    assert "calib" in line and not out.exists()
    cfg.write_text('cpu = "riscv"\n')
    _one_line_error(*run(capsys, "export", "int8", "--out", out, "--config", cfg), "cpu")


def test_the_shipped_jetson_config_loads():
    from sci_edge.export.config import load_export_config

    path, cfg = load_export_config("jetson_orin_nano")
    assert path == ROOT / "export" / "configs" / "jetson_orin_nano.toml"
    assert cfg.cpu == "arm" and cfg.opset <= 17 and cfg.flavours == ("cpu", "trt")
    assert cfg.int8 and cfg.trt_int8 and cfg.calib >= 12


def test_output_folders_are_checked_before_the_weights_load(capsys, tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    for sub in ("onnx", "int8", "bundle"):
        _one_line_error(*run(capsys, "export", sub, "--out", a_file, "--weights",
                             tmp_path / "missing.pt"), str(a_file), "not a folder")


# --- int8 --------------------------------------------------------------------------------
def test_int8_report_and_files(capsys, int8_dir, weights, tmp_path):
    for g in GRAPHS:
        for suffix in (".onnx", ".int8.onnx", ".trt-int8.onnx"):
            assert (int8_dir / f"{g}{suffix}").is_file(), (g, suffix)
    # the report, again in text for one flavour (calibration is quick at this size)
    out = tmp_path / "cpu_only"
    code, stdout, err = run(capsys, "export", "int8", "--out", out, "--weights", weights,
                            *SMALL, "--calib", "2", "--flavour", "cpu", "--cpu", "arm",
                            "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["flavours"] == ["cpu"] and doc["cpu_target"].startswith("arm")
    assert doc["calibration"]["sequences"] == 2
    assert not list(out.glob("*.trt-int8.onnx"))
    fem = doc["graphs"]["fem_tail"]
    cpu = fem["flavours"]["cpu"]
    assert Path(cpu["path"]).name == "fem_tail.int8.onnx"
    assert cpu["worst_sqnr"] and cpu["min_sqnr_db"] == cpu["worst_sqnr"][0]["sqnr_db"]
    assert any("Softmax" in n for n in fem["float_nodes"])     # KEEP_FLOAT's reasons
    assert all(fem["float_nodes"].values())
    for g in GRAPHS:
        assert doc["graphs"][g]["calibration_inputs"] > 0 and doc["sqnr_inputs"][g] > 0


# --- trt ---------------------------------------------------------------------------------
def test_trt_check_passes_on_the_trt_flavour(capsys, int8_dir):
    code, stdout, err = run(capsys, "export", "trt", "--onnx", int8_dir, "--check", "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["ok"] and len(doc["check"]) == 4
    assert all(f.endswith(".trt-int8.onnx") for f in doc["check"])


def test_trt_check_names_what_the_cpu_flavour_lacks(capsys, int8_dir):
    code, stdout, err = run(capsys, "export", "trt", "--onnx", int8_dir / "fem_tail.int8.onnx",
                            "--check")
    _one_line_error(code, stdout, err, "not ready for TensorRT")
    assert "problem" in stdout and "'trt' INT8 flavour" in stdout


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None,
                    reason="tensorrt is installed here")
def test_trt_without_tensorrt_prints_trtexec_and_exits_2(capsys, int8_dir, tmp_path):
    cache = tmp_path / "timing.cache"
    code, stdout, err = run(capsys, "export", "trt", "--onnx", int8_dir, "--timing-cache",
                            cache)
    _one_line_error(code, stdout, err, "tensorrt", "trtexec")
    for g in GRAPHS:
        assert f"--onnx={int8_dir / g}.trt-int8.onnx" in stdout
    assert stdout.count("jetpack5 (TensorRT 8.5)") == 4 and "--stronglyTyped" in stdout
    assert f"--timingCacheFile={cache}" in stdout
    # the graph the INT8 flavour keeps float (quantize.KEEP_FLOAT) builds as FP16
    kept = [ln for ln in stdout.splitlines() if "hyper_inter.trt-int8.onnx" in ln]
    assert kept and all("--int8" not in ln and "--stronglyTyped" not in ln for ln in kept)
    assert any("--fp16" in ln for ln in kept)
    # JSON too, and fp16 builds the float graphs
    code, stdout, err = run(capsys, "export", "trt", "--onnx", int8_dir, "--precision", "fp16",
                            "--json")
    assert code == 2 and "trtexec" in err
    doc = json.loads(stdout)
    assert doc["tensorrt"] is False and len(doc["trtexec"]) == 4
    assert all(f.endswith(".onnx") and ".int8" not in f for f in doc["trtexec"])


def test_trt_check_runs_without_torch(int8_dir):
    """On the device there is no torch: `export trt` needs only onnx."""
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'torch':
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
sys.meta_path.insert(0, Block())
from sci_edge.cli.main import main
code = main(["export", "trt", "--onnx", {str(int8_dir)!r}, "--check"])
assert not [m for m in sys.modules if m.split('.')[0] == 'torch']
sys.exit(code)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count(": ok") == 4


def test_trt_of_a_folder_without_graphs_is_one_line(capsys, tmp_path):
    _one_line_error(*run(capsys, "export", "trt", "--onnx", tmp_path), "no .trt-int8.onnx")


# --- bundle ------------------------------------------------------------------------------
def test_bundle_writes_a_loadable_bundle(capsys, tmp_path, weights):
    from sci_edge.edge.bundle import load_bundle

    out = tmp_path / "deep" / "bundle"
    code, stdout, err = run(capsys, "export", "bundle", "--out", out, "--weights", weights,
                            *SMALL, "--calib", "2", "--cpu", "arm", "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    for key in ("path", "files", "bytes", "precisions", "int8_cpu_target", "parity",
                "bundle_config", "device_commands", "weights_hash"):
        assert key in doc, key
    assert doc["precisions"] == ["fp32", "int8", "int8-trt"] and doc["int8_cpu_target"] == "arm"
    assert doc["calibration_sequences"] == 2
    b = load_bundle(out)
    assert b.precisions == ("fp32", "int8", "int8-trt")
    cmds = doc["device_commands"]
    assert "sci-edge-encode" in cmds["encode"] and "--bundle bundle" in cmds["encode"]
    assert set(cmds["trtexec"]) == set(GRAPHS)
    line = cmds["trtexec"]["fem_tail"]["jetpack6 (TensorRT 10.3)"]
    assert line.startswith("trtexec --onnx=fem_tail.trt-int8.onnx ")     # relative: copied
    # float only, in text, replacing the bundle in place
    code, stdout, err = run(capsys, "export", "bundle", "--out", out, "--weights", weights,
                            *SMALL, "--no-int8")
    assert code == 0, err
    assert stdout.startswith(f"wrote bundle {out}") and "sci-edge-encode" in stdout
    assert "trtexec" not in stdout
    assert load_bundle(out).precisions == ("fp32",)


def test_bundle_refuses_a_folder_of_other_files(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    _one_line_error(*run(capsys, "export", "bundle", "--out", tmp_path, "--weights",
                         tmp_path / "missing.pt"), "not a device bundle")
    _one_line_error(*run(capsys, "export", "bundle", "--out", tmp_path / "b", "--no-int8",
                         "--trt-int8"), "--trt-int8 needs --int8")
