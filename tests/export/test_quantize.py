"""Static INT8 (QDQ) of the exported graphs: both flavours from one calibration."""
from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'sci_edge[export]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
torch = pytest.importorskip("torch")

from onnx import TensorProto, numpy_helper  # noqa: E402

from sci_edge.edge.backends import OrtBackend  # noqa: E402
from sci_edge.errors import DataError  # noqa: E402
from sci_edge.export import quantize as qz  # noqa: E402
from sci_edge.export.onnx_export import GRAPHS, export_edge_onnx  # noqa: E402

from . import lively_coded, psnr, scene_spikes, sqnr  # noqa: E402


@pytest.fixture(scope="module")
def coded():
    return lively_coded()


@pytest.fixture(scope="module")
def fp32(coded, tmp_path_factory):
    return export_edge_onnx(coded, tmp_path_factory.mktemp("int8"), size=(64, 64))


@pytest.fixture(scope="module")
def calibration(coded):
    spikes = scene_spikes(3, size=(64, 64), num_steps=27, seed=0)
    return {g: qz.calibration_inputs(coded, spikes, g) for g in GRAPHS}


@pytest.fixture(scope="module")
def held_out(coded):
    spikes = scene_spikes(1, size=(64, 64), num_steps=27, seed=11)
    return {g: qz.calibration_inputs(coded, spikes, g) for g in GRAPHS}


@pytest.fixture(scope="module")
def int8(fp32, calibration):
    return qz.quantize_edge(fp32, calibration)


def _qdq(path):
    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    return model, inits, [n for n in model.graph.node
                          if n.op_type in ("QuantizeLinear", "DequantizeLinear")]


def test_calibration_inputs_are_what_the_device_feeds(calibration, coded):
    windows = 3 * 3          # 3 sequences of 27 frames: centres 6, 13, 20
    Q = coded.codec.config.qualities
    dots = calibration["fem_tail"]
    assert len(dots) == windows and dots[0]["dots"].shape == (1, 64, 64, 64)
    assert np.all(dots[0]["dots"] == np.round(dots[0]["dots"]))      # raw integer responses
    assert np.abs(dots[0]["dots"]).max() <= 13
    assert len(calibration["encoder_analysis"]) == windows
    assert calibration["encoder_analysis"][0]["feature"].shape == (1, 1, 64, 64)
    assert len(calibration["hyper_intra"]) == windows * Q
    assert len(calibration["hyper_inter"]) == (windows - 3) * Q     # a change needs a previous
    assert calibration["hyper_intra"][0]["v"].shape == (1, 8, 8, 8)


def test_both_flavours_run_in_onnxruntime(int8, fp32, held_out):
    for graph in GRAPHS:
        assert set(int8[graph]) == {"cpu", "trt"}
        assert int8[graph]["cpu"].name == f"{graph}.int8.onnx"
        assert int8[graph]["trt"].name == f"{graph}.trt-int8.onnx"
        ref = OrtBackend(fp32[graph], threads=1)
        name = ref.outputs[0].name
        feed = held_out[graph][0]
        for flavour, path in int8[graph].items():
            b = OrtBackend(path, threads=1)
            meta = json.loads(b.metadata["quantization"])
            assert meta["flavour"] == flavour and meta["format"] == "QDQ"
            assert b.metadata["weights_hash"] == ref.metadata["weights_hash"]
            assert b.run(feed)[name].shape == ref.run(feed)[name].shape
            _, _, qdq = _qdq(path)
            # a graph KEEP_FLOAT keeps float throughout has none, and says so
            whole = any(r.where == "any" for r in qz.KEEP_FLOAT.get(graph, ()))
            assert bool(qdq) != whole, f"{path}: {len(qdq)} Q/DQ nodes"
            if whole:
                convs = {n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"}
                assert convs and convs <= set(meta["float_nodes"])


def test_trt_flavour_is_symmetric_int8(int8):
    for graph in GRAPHS:
        _, inits, qdq = _qdq(int8[graph]["trt"])
        for node in qdq:
            zp = inits[node.input[2]]
            assert zp.data_type == TensorProto.INT8, node.name
            assert not numpy_helper.to_array(zp).any(), node.name
            src = inits.get(node.input[0])
            assert src is None or src.data_type == TensorProto.INT8   # float biases


def test_cpu_flavour_suits_this_machine(int8):
    cfg = qz.quant_config("cpu")
    _, inits, qdq = _qdq(int8["fem_tail"]["cpu"])
    act = {inits[n.input[2]].data_type for n in qdq if n.op_type == "QuantizeLinear"}
    want = TensorProto.UINT8 if cfg["activations"] == "QUInt8" else TensorProto.INT8
    assert act == {want}
    meta = json.loads(OrtBackend(int8["fem_tail"]["cpu"]).metadata["quantization"])
    assert meta["reduce_range"] == cfg["reduce_range"] and meta["per_channel"]


def test_cpu_types_follow_the_machine(monkeypatch):
    from sci_edge.bench import _machine

    for machine, simd, act, reduce in (("aarch64", ["asimd", "asimddp"], "QInt8", False),
                                       ("x86_64", ["avx2", "avx512_vnni"], "QUInt8", False),
                                       ("x86_64", ["avx2"], "QUInt8", True)):
        monkeypatch.setattr(_machine, "cpu_info", lambda m=machine, s=simd: {
            "machine": m, "cpu_model": "x", "cpus": 1, "cpu_simd": s})
        cfg = qz.quant_config("cpu")
        assert (cfg["activations"], cfg["weights"], cfg["reduce_range"]) == (act, "QInt8", reduce)
    assert qz.quant_config("cpu", cpu="arm")["activations"] == "QInt8"
    assert qz.quant_config("cpu", cpu="x86")["reduce_range"]
    with pytest.raises(DataError, match="CPU target"):
        qz.quant_config("cpu", cpu="riscv")
    trt = qz.quant_config("trt")
    assert trt["symmetric_activations"] and trt["activations"] == trt["weights"] == "QInt8"
    with pytest.raises(DataError, match="flavour"):
        qz.quant_config("gpu")


def test_float_nodes_and_the_exact_integer_input(int8):
    for flavour in ("cpu", "trt"):
        model, inits, qdq = _qdq(int8["fem_tail"][flavour])
        props = {p.key: p.value for p in model.metadata_props}
        assert props["export_form"] == "int8"      # quantised from the INT8 layout
        meta = json.loads(props["quantization"])
        kept = meta["float_nodes"]
        assert {"/dorsal_attn_int8/Softmax/Exp", "/ventral_attn_int8/Softmax/Exp",
                "/dorsal_attn_int8/Softmax/Div", "/Clip", "/Add", "/out/MatMul",
                "/ventral_readout/MatMul"} <= set(kept)
        assert all(meta["float_nodes"].values())   # every one with its reason
        # the ventral stream's residual sums stay float, the dorsal one's do not
        assert {"/pfu.0/Add_1", "/pfu.1/Add"} <= set(kept) and "/pfu.0/Add" not in kept
        q_inputs = {n.input[0] for n in qdq if n.op_type == "QuantizeLinear"}
        exp_out = {n.output[0] for n in model.graph.node if n.op_type == "Exp"}
        assert exp_out and not exp_out & q_inputs  # the softmax arithmetic stays float
        assert model.graph.output[0].name == "feature"
        dots_q = [n for n in qdq if n.op_type == "QuantizeLinear" and n.input[0] == "dots"]
        assert len(dots_q) == 1               # popcounts enter the INT8 graph exactly
        assert numpy_helper.to_array(inits[dots_q[0].input[1]]) == 1.0
        # every Shape reads a float tensor, never a dequantised copy made for it
        producer = {o: n.op_type for n in model.graph.node for o in n.output}
        shapes = [n for n in model.graph.node if n.op_type == "Shape"]
        assert shapes and all(producer.get(n.input[0]) != "DequantizeLinear" for n in shapes)
        assert not [n for n in model.graph.node if n.op_type == "MatMul"
                    and "_attn" in n.name and "Softmax" not in n.name]
    # y stays float: the node that makes it and the nodes that feed that one
    model, _, _ = _qdq(int8["encoder_analysis"]["trt"])
    kept = json.loads({p.key: p.value for p in model.metadata_props}["quantization"])["float_nodes"]
    fp32 = onnx.load(str(int8["encoder_analysis"]["trt"]).replace(".trt-int8", ""))
    producer = {o: n for n in fp32.graph.node for o in n.output}
    last = producer["y"]
    want = {last.name} | {producer[i].name for i in last.input
                          if i in producer and producer[i].op_type != "Constant"}
    assert set(kept) == want


def test_int8_stays_close_to_fp32(int8, fp32, held_out):
    """F_t within 25 dB PSNR of FP32, latents within 20 dB SQNR. The trt flavour is
    run as written (optimize=False): on x86 CPUs without VNNI, onnxruntime's int8
    kernels saturate its full-range weights, which TensorRT does not."""
    for graph, metric, floor in (("fem_tail", psnr, 25.0), ("encoder_analysis", sqnr, 20.0),
                                 ("hyper_intra", sqnr, 20.0), ("hyper_inter", sqnr, 20.0)):
        ref = OrtBackend(fp32[graph], threads=1)
        name = ref.outputs[0].name
        for flavour, path in int8[graph].items():
            b = OrtBackend(path, threads=1, optimize=flavour == "cpu")
            scores = [metric(ref.run(f)[name], b.run(f)[name]) for f in held_out[graph][:3]]
            assert min(scores) > floor, (graph, flavour, scores)


def test_layer_sqnr_lists_the_worst_layers_first(int8, fp32, held_out):
    rows = qz.layer_sqnr(fp32["fem_tail"], int8["fem_tail"]["trt"], held_out["fem_tail"][:2])
    assert len(rows) > 10
    dbs = [r.sqnr_db for r in rows]
    assert dbs == sorted(dbs) and all(np.isfinite(dbs))
    name, db = rows[0]
    assert isinstance(name, str) and db < 60
    # against the layout it was quantised from, the attention's tensors match too
    full = qz.layer_sqnr(fp32.int8_sources["fem_tail"], int8["fem_tail"]["trt"],
                         held_out["fem_tail"][:2])
    names = {r.name for r in full}
    assert {r.name for r in rows} < names
    assert any(n.startswith("/dorsal_attn_int8/") for n in names - {r.name for r in rows})
    with_w = qz.layer_sqnr(fp32["hyper_intra"], int8["hyper_intra"]["cpu"],
                           held_out["hyper_intra"][:1], weights=True)
    assert any(r.name.endswith("weight") or "weight" in r.name for r in with_w)


def test_bad_requests(fp32, int8, calibration, tmp_path):
    path = fp32["hyper_intra"]
    feeds = calibration["hyper_intra"][:2]
    with pytest.raises(DataError, match="flavour"):
        qz.onnx2int8(path, tmp_path / "x.int8.onnx", feeds, flavour="gpu")
    with pytest.raises(DataError, match="no node"):
        qz.onnx2int8(path, tmp_path / "x.int8.onnx", feeds, exclude_nodes=["/nope"])
    with pytest.raises(DataError, match="already"):
        qz.onnx2int8(int8["hyper_intra"]["cpu"], tmp_path / "y.int8.onnx", feeds)
    with pytest.raises(DataError, match="calibration"):
        qz.onnx2int8(path, tmp_path / "x.int8.onnx", [])
    with pytest.raises(DataError, match="method"):
        qz.onnx2int8(path, tmp_path / "x.int8.onnx", feeds, method="mse")
    with pytest.raises(DataError, match="graph"):
        qz.calibration_inputs(None, [], "decoder")


def test_exclude_nodes_and_percentile(fp32, calibration, tmp_path):
    path = qz.onnx2int8(fp32["hyper_intra"], tmp_path / "h.int8.onnx",
                        qz.CalibrationReader(calibration["hyper_intra"]),
                        exclude_nodes=["/net/net.0/Conv"], method="percentile")
    meta = json.loads(OrtBackend(path).metadata["quantization"])
    assert "/net/net.0/Conv" in meta["float_nodes"] and meta["calibration"] == "percentile"


def test_fem_tail_calibrates_by_percentile_and_the_others_by_minmax(int8):
    for graph in GRAPHS:
        meta = json.loads(OrtBackend(int8[graph]["cpu"]).metadata["quantization"])
        want = qz.CALIBRATION.get(graph, ("minmax", None))
        assert meta["calibration"] == want[0], graph
        if want[0] == "percentile":
            assert meta["percentile"] == want[1]


def test_fem_tail_learns_its_weights_rounding_in_both_flavours(int8):
    for graph in GRAPHS:
        for flavour in ("cpu", "trt"):
            meta = json.loads(OrtBackend(int8[graph][flavour]).metadata["quantization"])
            assert meta["rounding"] == ("learned" if graph == "fem_tail" else "nearest")
    meta = json.loads(OrtBackend(int8["fem_tail"]["cpu"]).metadata["quantization"])
    err = meta["rounding_mse"]
    assert err and all(after <= before for before, after in err.values())


def test_quantize_edge_takes_the_int8_layout_from_the_report(fp32, calibration, held_out,
                                                             tmp_path):
    """A report gives fem_tail's INT8 layout; a plain path mapping (or sources=) the
    file's own. Both quantise to a close F_t; only the report's is the fast one."""
    feeds = {"fem_tail": calibration["fem_tail"]}
    (tmp_path / "given").mkdir()
    plain = qz.quantize_edge({"fem_tail": fp32["fem_tail"]}, feeds, flavours=("cpu",),
                             out_dir=tmp_path, method="minmax")["fem_tail"]["cpu"]
    given = qz.quantize_edge({"fem_tail": fp32["fem_tail"]}, feeds, flavours=("cpu",),
                             out_dir=tmp_path / "given", method="minmax",
                             sources=fp32.int8_sources)["fem_tail"]["cpu"]
    assert plain.parent == tmp_path and plain.name == "fem_tail.int8.onnx"
    assert json.loads(OrtBackend(plain).metadata["quantization"])["calibration"] == "minmax"
    assert OrtBackend(plain).metadata["export_form"] == "fp32"
    assert OrtBackend(given).metadata["export_form"] == "int8"
    ref = OrtBackend(fp32["fem_tail"], threads=1)
    for path in (plain, given):
        b = OrtBackend(path, threads=1)
        scores = [psnr(ref.run(f)["feature"], b.run(f)["feature"])
                  for f in held_out["fem_tail"][:2]]
        assert min(scores) > 25, (path, scores)


def test_histogram_calibration_takes_mixed_sizes(fp32, coded, tmp_path):
    """Percentile calibration on windows of two sizes (onnxruntime's histogram
    collector stacks each tensor, so the reader crops them to the common size)."""
    spikes = scene_spikes(1, size=(48, 64), num_steps=20, seed=1) + \
        scene_spikes(1, size=(40, 72), num_steps=20, seed=2)
    feeds = qz.calibration_inputs(coded, spikes, "fem_tail")
    cropped = qz.CalibrationReader(feeds).cropped()
    assert {f["dots"].shape[-2:] for f in cropped.feeds} == {(40, 64)}
    centre = feeds[-1]["dots"][..., :, 4:68]
    np.testing.assert_array_equal(cropped.feeds[-1]["dots"], centre)
    path = qz.onnx2int8(fp32["fem_tail"], tmp_path / "f.int8.onnx", feeds, method="percentile",
                        percentile=99.99)
    out = OrtBackend(path).run(feeds[0])["feature"]
    assert out.shape == (1, 1, 48, 64) and np.isfinite(out).all()
    same = qz.CalibrationReader(feeds[:2])
    assert same.cropped() is same
