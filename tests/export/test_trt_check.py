"""TensorRT: the GPU-free compatibility checker, trtexec lines, and (with
tensorrt, marked ``trt``) a real engine build."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'sci_edge[export]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sci_edge._deps import available  # noqa: E402
from sci_edge.errors import DataError, MissingDependencyError  # noqa: E402
from sci_edge.export import trt  # noqa: E402


def _save(tmp_path, name, nodes, inits, opset=17, inputs=None, outputs=None, domains=()):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, "H", "W"])]
    outputs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    model = helper.make_model(graph, opset_imports=opsets)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def _qdq_model(tmp_path, name, zero_point=0, ztype=np.int8, axis=0):
    """x -> Q -> DQ -> Conv(DQ(w)) with the given activation zero-point."""
    w = numpy_helper.from_array(np.ones((3, 2, 1, 1), np.int8), "w_q")
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(np.array(zero_point, ztype), "zp"),
             w, numpy_helper.from_array(np.full(3, 0.01, np.float32), "ws"),
             numpy_helper.from_array(np.zeros(3, np.int8), "wzp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], name="dq"),
             helper.make_node("DequantizeLinear", ["w_q", "ws", "wzp"], ["wd"], name="wdq",
                              axis=axis),
             helper.make_node("Conv", ["xd", "wd"], ["y"], name="conv")]
    return _save(tmp_path, name, nodes, inits)


def test_symmetric_int8_passes_and_zero_points_are_flagged(tmp_path):
    assert trt.check_trt_compat(_qdq_model(tmp_path, "ok"), polygraphy=False) == []
    probs = trt.check_trt_compat(_qdq_model(tmp_path, "zp", zero_point=3), polygraphy=False)
    assert len(probs) == 1 and "zero-point" in probs[0] and "q" in probs[0]
    probs = trt.check_trt_compat(_qdq_model(tmp_path, "u8", 128, np.uint8), polygraphy=False)
    assert any("uint8" in p for p in probs) and any("zero-point" in p for p in probs)
    probs = trt.check_trt_compat(_qdq_model(tmp_path, "axis", axis=1), polygraphy=False)
    assert len(probs) == 1 and "axis 1" in probs[0]


def test_the_exported_flavours(tmp_path):
    """The real pipeline on a small graph: the trt flavour passes, the cpu one does not."""
    pytest.importorskip("torch")
    from sci_edge.export.onnx_export import export_edge_onnx
    from sci_edge.export.quantize import quantize_edge
    from tests.models.codec_fixtures import small_coded

    rep = export_edge_onnx(small_coded(), tmp_path, size=(32, 32), graphs=["hyper_intra"])
    rng = np.random.default_rng(0)
    feeds = [{"v": rng.normal(0, 4, (1, 8, 4, 4)).astype(np.float32)} for _ in range(4)]
    q = quantize_edge(rep, {"hyper_intra": feeds})["hyper_intra"]
    assert trt.check_trt_compat(rep["hyper_intra"]) == []
    assert trt.check_trt_compat(q["trt"]) == []
    probs = trt.check_trt_compat(q["cpu"])
    assert any("zero-point" in p or "uint8" in p for p in probs)
    assert any("int32 DequantizeLinear" in p for p in probs)


def test_ops_and_opsets(tmp_path):
    grid_in = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4]),
               helper.make_tensor_value_info("g", TensorProto.FLOAT, [1, 4, 4, 2])]
    gs = helper.make_node("GridSample", ["x", "g"], ["y"], name="warp")
    assert trt.check_trt_compat(_save(tmp_path, "gs16", [gs], [], 16, grid_in),
                                polygraphy=False) == []
    probs = trt.check_trt_compat(_save(tmp_path, "gs15", [gs], [], 15, grid_in),
                                 polygraphy=False)
    assert len(probs) == 1 and "GridSample" in probs[0] and "16" in probs[0]
    relu = helper.make_node("Relu", ["x"], ["y"], name="r")
    assert "opset 12" in trt.check_trt_compat(_save(tmp_path, "old", [relu], [], 12),
                                              polygraphy=False)[0]
    assert "JetPack 5" in trt.check_trt_compat(_save(tmp_path, "new", [relu], [], 19),
                                               polygraphy=False)[0]
    fused = helper.make_node("FusedConv", ["x"], ["y"], name="f", domain="com.microsoft")
    probs = trt.check_trt_compat(_save(tmp_path, "ms", [fused], [], 17,
                                       domains=["com.microsoft"]), polygraphy=False)
    assert len(probs) == 1 and "com.microsoft.FusedConv" in probs[0]
    ci = helper.make_node("ConvInteger", ["x", "x"], ["y"], name="ci")
    assert "QDQ" in trt.check_trt_compat(_save(tmp_path, "ci", [ci], [], 17),
                                         polygraphy=False)[0]


def test_polygraphy_lint_runs_when_present(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "polygraphy"
    fake.write_text("#!/bin/sh\necho \"lint: invalid graph\" >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    path = _qdq_model(tmp_path, "ok")
    assert trt.check_trt_compat(path) == ["polygraphy check lint failed: lint: invalid graph"]
    assert trt.check_trt_compat(path, polygraphy=False) == []


def test_trtexec_commands(tmp_path):
    path = _qdq_model(tmp_path, "fem_tail.trt-int8")
    cmds = trt.trtexec_commands(path, "int8", timing_cache=tmp_path / "cache.bin")
    jp5, jp6 = cmds["jetpack5 (TensorRT 8.5)"], cmds["jetpack6 (TensorRT 10.3)"]
    assert jp5.startswith(f"trtexec --onnx={path} --saveEngine=")
    assert jp5.endswith("--int8 --fp16") and jp6.endswith("--stronglyTyped")
    assert "--minShapes=x:1x2x32x32" in jp5 and "--maxShapes=x:1x2x1088x1920" in jp6
    assert "trt8.5-int8.engine" in jp5 and "trt10.3-int8.engine" in jp6
    assert "--timingCacheFile=" in jp5
    fp32 = trt.trtexec_commands(path, "fp32")
    assert not any("--int8" in c or "--fp16" in c or "--stronglyTyped" in c
                   for c in fp32.values())
    with pytest.raises(DataError, match="precision"):
        trt.trtexec_commands(path, "int4")


def test_profile_shapes_follow_the_axis_names(tmp_path):
    x = helper.make_tensor_value_info("v", TensorProto.FLOAT, ["B", 8, "H8", "W8"])
    relu = helper.make_node("Relu", ["v"], ["y"], name="r")
    shapes = trt.profile_shapes(onnx.load(str(_save(tmp_path, "h", [relu], [], inputs=[x]))))
    assert shapes["v"] == ((1, 8, 4, 4), (1, 8, 32, 52), (1, 8, 136, 240))


@pytest.mark.skipif(available("tensorrt"), reason="tensorrt is installed")
def test_no_tensorrt_gives_the_trtexec_lines(tmp_path):
    path = _qdq_model(tmp_path, "g")
    with pytest.raises(MissingDependencyError) as info:
        trt.onnx2engine(path, precision="int8")
    msg = str(info.value)
    assert "tensorrt" in msg and "--stronglyTyped" in msg and "--int8 --fp16" in msg
    assert isinstance(info.value, trt.TensorRTMissing) and len(info.value.commands) == 2


def test_engine_requests_checked_before_tensorrt(tmp_path):
    relu = helper.make_node("Relu", ["x"], ["y"], name="r")
    fp32 = _save(tmp_path, "f", [relu], [])
    with pytest.raises(DataError, match="QDQ"):
        trt.onnx2engine(fp32, precision="int8")
    with pytest.raises(DataError, match="int8"):
        trt.onnx2engine(_qdq_model(tmp_path, "q"), precision="fp16")
    with pytest.raises(DataError, match="not ready"):
        trt.onnx2engine(_qdq_model(tmp_path, "zp", zero_point=5), precision="int8")


@pytest.mark.trt
def test_build_and_run_an_engine(tmp_path):
    pytest.importorskip("tensorrt", reason="tensorrt is not installed")
    pytest.importorskip("torch")
    from sci_edge.edge.backends import OrtBackend, load_backend
    from sci_edge.export.onnx_export import export_edge_onnx
    from tests.models.codec_fixtures import small_coded

    rep = export_edge_onnx(small_coded(), tmp_path, size=(64, 64), graphs=["encoder_analysis"])
    engine = trt.onnx2engine(rep["encoder_analysis"], tmp_path, precision="fp32",
                             timing_cache=tmp_path / "timing.cache")
    assert engine.suffix == ".engine" and (tmp_path / "timing.cache").is_file()
    x = {"feature": np.random.default_rng(0).random((1, 1, 64, 96), dtype=np.float32)}
    got = load_backend(engine).run(x)["y"]
    ref = OrtBackend(rep["encoder_analysis"]).run(x)["y"]
    assert np.abs(got - ref).max() < 1e-3
