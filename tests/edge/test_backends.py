"""Torch-free runtimes of the exported graphs, chosen by file suffix."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'sci_edge[export]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sci_edge._deps import available  # noqa: E402
from sci_edge.edge.backends import (OrtBackend, TrtBackend, load_backend,  # noqa: E402
                                    popcount_feed)
from sci_edge.errors import DataError, MissingDependencyError  # noqa: E402
from sci_edge.export.formats import (export_formats, export_path, format_by_name,  # noqa: E402
                                     format_for_path, format_table)
from tests.test_layering import _BLOCK_TORCH  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def tiny_model(path: Path) -> Path:
    """y = 2x + 1 over (1, 2, H, W), with metadata: built without torch."""
    inits = [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one")]
    nodes = [helper.make_node("Mul", ["x", "two"], ["t"]),
             helper.make_node("Add", ["t", "one"], ["y"])]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, "H", "W"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    p = model.metadata_props.add()
    p.key, p.value = "graph", "tiny"
    onnx.save(model, str(path))
    return path


def test_formats_table():
    rows = export_formats()
    assert [f.name for f in rows] == ["onnx-fp32", "onnx-int8", "onnx-int8-trt", "tensorrt"]
    assert format_for_path("a/fem_tail.onnx").name == "onnx-fp32"
    assert format_for_path("fem_tail.int8.onnx").name == "onnx-int8"
    assert format_for_path("FEM_TAIL.TRT-INT8.ONNX").name == "onnx-int8-trt"   # longest suffix
    assert format_for_path("x.engine").backend == "TrtBackend"
    assert format_by_name("engine") is format_by_name("tensorrt")
    assert export_path("out", "hyper_intra", "onnx-int8") == Path("out/hyper_intra.int8.onnx")
    assert "onnx-int8-trt" in format_table()
    for bad in ("model.pt", ".onnx", "x.onnx.bak"):
        with pytest.raises(DataError, match="not an exported model"):
            format_for_path(bad)
    with pytest.raises(DataError, match="unknown export format"):
        format_by_name("tflite")


def test_backends_are_chosen_by_suffix(tmp_path):
    for name, fmt in (("m.onnx", "onnx-fp32"), ("m.int8.onnx", "onnx-int8"),
                      ("m.trt-int8.onnx", "onnx-int8-trt")):
        b = load_backend(tiny_model(tmp_path / name), threads=1)
        assert type(b) is OrtBackend and b.format.name == fmt
    (tmp_path / "m.engine").write_bytes(b"not an engine")
    if available("tensorrt"):
        pytest.skip("tensorrt is installed: the missing-tensorrt error cannot be seen")
    with pytest.raises(MissingDependencyError, match="tensorrt"):
        load_backend(tmp_path / "m.engine")
    with pytest.raises(DataError, match="not an exported model"):
        load_backend(tmp_path / "m.pt")
    with pytest.raises(DataError, match="not a TensorRT engine"):
        TrtBackend(tmp_path / "m.onnx")
    with pytest.raises(DataError, match="not an ONNX model"):
        OrtBackend(tmp_path / "m.engine")


def test_ort_backend_runs_and_checks_its_inputs(tmp_path):
    b = OrtBackend(tiny_model(tmp_path / "m.onnx"), threads=1)
    assert b.metadata == {"graph": "tiny"}
    assert [(t.name, t.shape, t.dtype) for t in b.inputs] == [("x", (1, 2, "H", "W"), "float32")]
    assert [t.name for t in b.outputs] == ["y"]
    x = np.arange(2 * 3 * 5, dtype=np.float64).reshape(1, 2, 3, 5)    # cast to float32
    np.testing.assert_array_equal(b.run({"x": x})["y"], 2 * x + 1)
    np.testing.assert_array_equal(b({"x": x})["y"], 2 * x + 1)
    with pytest.raises(DataError, match="missing"):
        b.run({})
    with pytest.raises(DataError, match="unknown"):
        b.run({"x": x, "z": x})
    with pytest.raises(DataError, match="must be"):
        b.run({"x": np.zeros((1, 3, 4, 4), np.float32)})
    with pytest.raises(DataError, match="not found"):
        OrtBackend(tmp_path / "absent.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(DataError, match="onnxruntime cannot load"):
        OrtBackend(tmp_path / "junk.onnx")


def test_popcount_feed():
    dots = np.arange(-6, 6, dtype=np.int8).reshape(3, 2, 2)
    feed = popcount_feed(dots)
    assert list(feed) == ["dots"] and feed["dots"].dtype == np.float32
    assert feed["dots"].shape == (1, 3, 2, 2) and np.array_equal(feed["dots"][0], dots)
    with pytest.raises(DataError):
        popcount_feed(np.zeros((2, 2)))


def test_backends_run_without_torch(tmp_path):
    path = tiny_model(tmp_path / "m.int8.onnx")
    code = _BLOCK_TORCH + f"""
import numpy as np
import sci_edge.export, sci_edge.export.formats, sci_edge.export.trt, sci_edge.export.quantize
from sci_edge.edge.backends import load_backend
b = load_backend({str(path)!r}, threads=1)
y = b.run({{"x": np.ones((1, 2, 3, 3), np.float32)}})["y"]
assert float(y.max()) == 3.0, y
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'fvcore'))
assert not bad, bad
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
