"""Per-module profile (sci_edge.profiling.modules)."""
import time

import pytest

pytest.importorskip("fvcore")


def test_profile_modules_small():
    from sci_edge.models.pretrained import load_pretrained
    from sci_edge.profiling import sci_flops
    from sci_edge.profiling.modules import PAPER_GFLOPS, ModuleRow, format_table, profile_modules

    recon, cls = load_pretrained("recon"), load_pretrained("cls")
    t0 = time.perf_counter()
    p = profile_modules(32, 48, repeats=1, latency=True, recon=recon, cls=cls, codec=False)
    assert time.perf_counter() - t0 < 20
    names = [r.name for r in p.rows]
    assert names[:2] == ["fem.popcount", "fem.rest"]
    for n in ("cloud.encoder", "cloud.flow", "cloud.afr", "cloud.merge_fusion",
              "cloud.recon_head", "cls.classification_head"):
        assert n in names
    for r in p.rows:
        assert isinstance(r, ModuleRow) and r.side in ("end", "cloud")
        assert r.flops == 2 * r.macs and r.macs >= 0 and r.params >= 0
        assert r.peak_activation_bytes > 0 and r.bytes_moved > 0
        assert r.latency_s["torch_fp32"] >= 0
        assert r.per == ("feature frame" if r.side == "end" else "output")
    end = [r for r in p.rows if r.side == "end"]
    assert p.end_side.macs == sum(r.macs for r in end)
    assert p.end_side.params == sum(r.params for r in end) == \
        sum(x.numel() for x in recon.fem.parameters())
    assert p.end_side.latency_s["torch_fp32"] == pytest.approx(
        sum(r.latency_s["torch_fp32"] for r in end))
    doc = sci_flops(recon, 32, 48)
    assert p.end_side.macs == doc["end_side_fem_flops_per_feature_frame"]
    assert p.cloud_side.macs == doc["cloud_side_flops_per_output"]
    assert p.cls_cloud_side.macs == sci_flops(cls, 32, 48)["cloud_side_flops_per_output"]
    cloud = [r for r in p.rows if r.side == "cloud" and r.model == "recon"]
    assert p.cloud_side.params == sum(r.params for r in cloud) == \
        sum(x.numel() for n, x in recon.named_parameters() if not n.startswith("fem."))
    assert p.rows[0].popcount_ops == (6 * 64 + 26) * 32 * 48
    d = p.to_dict()
    assert d["end_side"]["macs"] == p.end_side.macs and len(d["rows"]) == len(p.rows)
    assert d["paper"]["FEM"] == PAPER_GFLOPS["FEM"] == 74.79
    assert "fem.popcount" in format_table(p)


def test_profile_modules_counts_only():
    from sci_edge.models.pretrained import load_pretrained
    from sci_edge.profiling.modules import profile_modules

    p = profile_modules(16, 16, latency=False, recon=load_pretrained("recon"), cls=False,
                        codec=False)
    assert all(r.latency_s == {} for r in p.rows)
    assert not [r for r in p.rows if r.model == "cls"]


def test_codec_rows():
    """The codec's rows: end-side encoder, integer hyper-synthesis and rANS per feature
    frame; the cloud side decodes the output's 2K+1 features; totals include them."""
    import numpy as np

    from sci_edge.models.pretrained import load_pretrained, load_pretrained_codec
    from sci_edge.profiling.codec_rows import int_network_macs
    from sci_edge.profiling.flops import count_flops, entropy_coder_ops
    from sci_edge.profiling.modules import profile_modules

    codec = load_pretrained_codec()
    recon = load_pretrained("recon")
    p = profile_modules(40, 72, repeats=1, latency=True, recon=recon, cls=False, codec=codec)
    names = [(r.name, r.side) for r in p.rows]
    assert names[:6] == [("fem.popcount", "end"), ("fem.rest", "end"),
                         ("codec.analysis", "end"), ("codec.hyper_encoder", "end"),
                         ("codec.hyper_synthesis", "end"), ("codec.entropy_encode", "end")]
    assert names[6:9] == [("codec.entropy_decode", "cloud"), ("codec.hyper_synthesis", "cloud"),
                          ("codec.synthesis", "cloud")]
    rows = {(r.name, r.side): r for r in p.rows}
    # frames are padded to multiples of 32: 64 x 96
    x = __import__("torch").zeros(1, 1, 64, 96)
    assert rows["codec.analysis", "end"].macs == count_flops(codec.codec.encoder.analysis, x)["macs"]
    net = codec.codec.tables.synthesis[1]
    macs = int_network_macs(net, (2, 3))[0]
    w = [layer.weight for layer in net.layers]
    assert macs == sum(a.shape[0] * a.shape[1] * a.shape[2] ** 2 for a in w) * 6
    assert rows["codec.hyper_synthesis", "end"].macs == macs
    assert rows["codec.hyper_synthesis", "cloud"].macs == 7 * macs
    cfg = codec.codec.config
    symbols = cfg.channels * 8 * 12 + cfg.hyper_channels * 2 * 3
    assert rows["codec.entropy_encode", "end"].other_ops == entropy_coder_ops(symbols)
    assert rows["codec.entropy_decode", "cloud"].other_ops == \
        7 * entropy_coder_ops(symbols, decode=True)
    for r in p.rows:
        assert r.latency_s["torch_fp32"] > 0 and r.peak_activation_bytes > 0, r.name
    end = [r for r in p.rows if r.side == "end"]
    assert p.end_side.macs == sum(r.macs for r in end)
    assert p.cloud_side.macs == sum(r.macs for r in p.rows if r.side == "cloud")
    assert p.cloud_side.macs > rows["codec.synthesis", "cloud"].macs > 0
    assert np.isclose(p.end_side.latency_s["torch_fp32"],
                      sum(r.latency_s["torch_fp32"] for r in end))


def test_the_rate_integration_has_its_own_cloud_row():
    import torch

    from sci_edge.models import SCIConfig, SCIModel
    from sci_edge.models.cloud.analysis import AnalysisConfig
    from sci_edge.models.cloud.rate import BLEND_INPUTS, GATE_INPUTS, RateConfig
    from sci_edge.profiling.modules import cloud_rows

    torch.manual_seed(0)
    model = SCIModel(SCIConfig(analysis=AnalysisConfig(neighbors=1, stride=4, width=8,
                                                       fuse_levels=1),
                               rate=RateConfig(enabled=True, width=4))).eval()
    rows = {r.name: r for r in cloud_rows(model, 16, 24, latency=False)}
    row = rows["cloud.rate"]
    assert row.params == sum(p.numel() for p in model.rate.parameters())
    # two gate steps and one blend, each three convolutions over 16x24 pixels
    gate = (GATE_INPUTS * 4 * 9 + 4 * 4 * 9 + 4) * 16 * 24
    blend = (BLEND_INPUTS * 4 * 9 + 4 * 4 * 9 + 4) * 16 * 24
    assert row.macs == pytest.approx(2 * gate + blend, rel=0.05)
    assert list(rows)[0] == "cloud.rate"
