"""ONNX export of the end-side graphs: checker, onnxruntime parity, metadata."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnx", reason="onnx is not installed (pip install 'sci_edge[export]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
torch = pytest.importorskip("torch")

from sci_edge import __version__  # noqa: E402
from sci_edge.edge.backends import OrtBackend, popcount_feed  # noqa: E402
from sci_edge.edge.tfilter import pack_time  # noqa: E402
from sci_edge.errors import DataError  # noqa: E402
from sci_edge.export import onnx_export  # noqa: E402
from sci_edge.export.onnx_export import (GRAPHS, FEMTail, TokenAttentionExport,  # noqa: E402
                                         export_edge_onnx, fem_weights_hash, torch2onnx)

from . import lively_coded, scene_spikes  # noqa: E402

PARITY = 1e-4


@pytest.fixture(scope="module")
def coded():
    return lively_coded()


@pytest.fixture(scope="module")
def report(coded, tmp_path_factory):
    return export_edge_onnx(coded, tmp_path_factory.mktemp("onnx"), size=(64, 64))


def test_all_four_graphs_pass_the_checker_and_match_torch(report):
    import onnx

    assert list(report) == list(GRAPHS)
    for name, g in report.graphs.items():
        assert report[name] == g.path and g.path.name == f"{name}.onnx" and g.path.is_file()
        onnx.checker.check_model(str(g.path), full_check=True)
        assert g.parity < PARITY, (name, g.parity)
        assert len(g.checked) == 2 and g.checked[0] != g.checked[1]   # dynamic axes ran
        assert g.macs and g.macs > 0
    assert report.max_parity < PARITY
    assert not list(report.out_dir.glob(".*.part"))          # written atomically
    d = report.to_dict()
    assert json.loads(json.dumps(d))["graphs"]["fem_tail"]["parity"] < PARITY
    # fem_tail's INT8 layout: exported and checked too, kept in memory, not written
    assert list(report.int8_sources) == ["fem_tail"]
    assert report.graphs["fem_tail"].int8_source_parity < PARITY
    assert d["graphs"]["fem_tail"]["int8_source_parity"] < PARITY
    assert sorted(p.name for p in report.out_dir.iterdir()) == sorted(f"{g}.onnx" for g in GRAPHS)


def test_shapes_and_metadata(report, coded):
    fem, codec = coded.sci.fem, coded.codec
    c = codec.config
    cin = 4 * fem.config.dorsal_channels + 4 * fem.config.ventral_channels
    want = {"fem_tail": ({"dots": ["B", cin, "H", "W"]}, {"feature": ["B", 1, "H", "W"]}),
            "encoder_analysis": ({"feature": ["B", 1, "H", "W"]},
                                 {"y": ["B", c.channels, "H8", "W8"]}),
            "hyper_intra": ({"v": ["B", c.channels, "H8", "W8"]},
                            {"z": ["B", c.hyper_channels, "H32", "W32"]})}
    want["hyper_inter"] = want["hyper_intra"]
    for name, (ins, outs) in want.items():
        meta = OrtBackend(report[name], threads=1).metadata
        assert json.loads(meta["inputs"]) == ins and json.loads(meta["outputs"]) == outs
        assert report.graphs[name].inputs == ins
        assert meta["graph"] == name and meta["opset"] == "17" and meta["export_form"] == "fp32"
        assert meta["quantization"] == "fp32" and meta["sci_edge_version"] == __version__
        if name == "fem_tail":
            assert meta["model_id"] == "sci-fem-1"
            assert meta["weights_hash"] == fem_weights_hash(fem)
        else:
            assert meta["model_id"] == "sci-codec-1"
            assert meta["weights_hash"] == codec.weights_hash().hex()
    steps = json.loads(OrtBackend(report["encoder_analysis"]).metadata["quant_steps"])
    np.testing.assert_array_equal(np.float32(steps), codec.log_step.detach().exp().numpy())


def test_fem_tail_fed_by_the_popcount_kernel_matches_the_torch_fem(report, coded):
    """The device path: kernel dots of a real spike window -> fem_tail == FEM(window)."""
    fem = coded.sci.fem
    spikes = scene_spikes(1, size=(40, 56), num_steps=13, seed=7)[0]
    bank = fem.export_filter_bank()
    dots = bank.dots_words(pack_time(spikes, num_threads=1), num_threads=1)
    np.testing.assert_array_equal(dots, bank.dots_reference(spikes))
    x = torch.from_numpy(spikes.astype(np.float32))[None]
    with torch.no_grad():
        # the mapping the graph applies first: per-channel alpha and bias of the bank
        # reproduce BinaryTemporalBank.forward, dorsal rows then ventral
        scaled = dots.astype(np.float32) * bank.alpha[:, None, None] + bank.bias[:, None, None]
        np.testing.assert_allclose(scaled, fem.temporal_responses(x)[0].numpy(), atol=1e-6)
        ref = fem(x)[0, 0].numpy()
        for form in onnx_export.FORMS:
            tail = FEMTail(fem, form)(torch.from_numpy(dots.astype(np.float32))[None])
            assert np.abs(tail[0, 0].numpy() - ref).max() < PARITY, form
    got = OrtBackend(report["fem_tail"], threads=1).run(popcount_feed(dots))["feature"]
    assert got.shape == (1, 1, 40, 56)
    assert np.abs(got[0, 0] - ref).max() < PARITY
    assert ref.std() > 1e-3          # the comparison sees a feature with detail


@pytest.mark.parametrize("form", ["fp32", "int8"])
@pytest.mark.parametrize("shift", [False, True])
def test_the_folded_attention_is_the_modules_own(coded, form, shift):
    """TokenAttentionExport (no k, no v, folded weights) == TokenSelfAttention, on
    tokens of every sign and size, in both layouts, with and without the max shift."""
    att = coded.sci.fem.ventral_attn
    P, C = att.tokens, att.channels
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, P, C, 6, 7, generator=gen) * 3
    with torch.no_grad():
        ref = att(x)                                     # (B, P*C, H, W)
        got = TokenAttentionExport(att, form, shift=shift)(x.reshape(2, P * C, 6, 7), 2, 6, 7)
    assert got.shape == ref.shape
    assert (got - ref).abs().max() < 1e-5


def test_taps_are_the_one_output_conv():
    conv = torch.nn.Conv2d(16, 1, 3, padding=1)
    x = torch.randn(2, 16, 5, 9)
    with torch.no_grad():
        assert (onnx_export._TapConv(conv)(x, 2, 5, 9) - conv(x)).abs().max() < 1e-5
    with pytest.raises(DataError, match="one-output"):
        onnx_export._TapConv(torch.nn.Conv2d(16, 2, 3, padding=1))


def test_the_softmax_shift_is_dropped_only_where_the_logits_are_bounded(coded, monkeypatch):
    fem = coded.sci.fem
    tail = FEMTail(fem)
    bank = fem.export_filter_bank()
    # the bound holds: the largest logit of tokens within their bounds is below it
    sup = np.array([bin(int(v)).count("1") for v in bank.support])
    t_max = np.abs(bank.alpha) * sup + np.abs(bank.bias)
    gen = np.random.default_rng(2)
    for att, sl, bound in ((fem.dorsal_attn, slice(0, tail.split), tail.score_bounds[0]),
                           (fem.ventral_attn, slice(tail.split, None), tail.score_bounds[1])):
        P, C = att.tokens, att.channels
        A, a, _, _ = TokenAttentionExport.folded(att)
        t = torch.from_numpy(t_max[sl].reshape(P, C) * gen.choice([-1.0, 1.0], (256, P, C)))
        logits = (t @ A.T + a) @ t.transpose(1, 2)
        assert logits.abs().max() <= bound + 1e-9
    assert [m.shift for m in tail.attention] == \
        [b >= onnx_export.SHIFT_FREE_BOUND for b in tail.score_bounds]
    monkeypatch.setattr(onnx_export, "SHIFT_FREE_BOUND", 0.0)
    assert all(m.shift for form in onnx_export.FORMS for m in FEMTail(fem, form).attention)


def test_the_fem_tail_graphs_have_no_per_pixel_matmuls(report):
    """No Softmax, no relayout in the attention, and every MatMul multiplies by
    constant rows (sums, the readout, out's taps): the per-pixel 4x4 batched MatMuls
    onnxruntime runs one GEMM a pixel for are gone from both layouts."""
    import onnx

    for model in (onnx.load(str(report["fem_tail"])),
                  onnx.load_from_string(report.int8_sources["fem_tail"])):
        inits = {i.name: i for i in model.graph.initializer}
        for n in model.graph.node:       # the exporter shares equal constants by Identity
            if n.op_type == "Identity" and n.input[0] in inits:
                inits[n.output[0]] = inits[n.input[0]]
        ops = [n.op_type for n in model.graph.node]
        assert "Softmax" not in ops
        assert not [n for n in model.graph.node if n.op_type == "Transpose" and "_attn" in n.name]
        for n in model.graph.node:
            if n.op_type == "MatMul":
                assert n.input[0] in inits and len(inits[n.input[0]].dims) == 2
                assert inits[n.input[0]].dims[0] in (1, 9)      # a row, or 3x3 taps


def test_encoder_graphs_give_the_codecs_integers(report, coded):
    """Runtime: pad F_t by edge replication, y = g_a, q = round(y / step): the
    symbols FeatureCodec.encode_frame codes."""
    codec = coded.codec
    rng = np.random.default_rng(3)
    feature = (rng.random((50, 60), dtype=np.float32) * 0.6 + 0.1)
    padded = np.pad(feature, ((0, 14), (0, 4)), mode="edge")[None, None]
    y = OrtBackend(report["encoder_analysis"], threads=1).run({"feature": padded})["y"]
    q_index = codec.config.qualities - 1
    steps = np.float32(json.loads(OrtBackend(report["encoder_analysis"]).metadata["quant_steps"]))
    u = y / steps[q_index][None, :, None, None]
    enc = codec.encode_frame(feature, q_index, None)
    q = np.round(u[0]).astype(np.int32)
    assert q.shape == enc.symbols.shape
    assert np.mean(q == enc.symbols) > 0.999
    z = OrtBackend(report["hyper_intra"], threads=1).run({"v": u})["z"]
    with torch.no_grad():
        z_ref = codec.encoder.hyper_intra(torch.from_numpy(u)).numpy()
    assert np.abs(z - z_ref).max() < PARITY


def test_torch2onnx_is_a_thin_generic_exporter(tmp_path):
    net = torch.nn.Conv2d(2, 3, 3, padding=1)
    path = torch2onnx(net, (torch.zeros(1, 2, 8, 8),), tmp_path / "net.onnx",
                      input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {2: "H", 3: "W"}, "y": {2: "H", 3: "W"}},
                      metadata={"model_id": "tiny", "extra": {"a": 1}})
    b = OrtBackend(path, threads=1)
    assert b.metadata["model_id"] == "tiny" and json.loads(b.metadata["extra"]) == {"a": 1}
    assert json.loads(b.metadata["inputs"]) == {"x": [1, 2, "H", "W"]}
    out = b.run({"x": np.ones((1, 2, 5, 7), np.float32)})["y"]
    with torch.no_grad():
        ref = net(torch.ones(1, 2, 5, 7)).numpy()
    assert np.abs(out - ref).max() < PARITY
    assert net.training        # the exporter restores the module's mode
    with pytest.raises(DataError, match="opset"):
        torch2onnx(net, (torch.zeros(1, 2, 8, 8),), tmp_path / "bad.onnx", input_names=["x"],
                   output_names=["y"], opset=9)


def test_what_cannot_be_exported(coded, tmp_path):
    with pytest.raises(DataError, match="unknown graph"):
        export_edge_onnx(coded, tmp_path, size=(32, 32), graphs=["decoder"])
    with pytest.raises(DataError, match="encoder_analysis"):
        export_edge_onnx(coded.sci.fem, tmp_path, size=(32, 32), graphs=["encoder_analysis"])
    with pytest.raises(DataError, match="cannot export"):
        export_edge_onnx(torch.nn.Identity(), tmp_path)
    rep = export_edge_onnx(coded.sci, tmp_path, size=(16, 24))    # an SCIModel: the FEM only
    assert list(rep) == ["fem_tail"] and rep.graphs["fem_tail"].parity < PARITY
