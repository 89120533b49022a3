"""Counting conventions (sci_edge.profiling.flops) and the three-way cross-check."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

pytest.importorskip("fvcore")

from sci_edge.profiling import flops as fl  # noqa: E402


class _GridSample(nn.Module):
    def forward(self, x, grid):
        return F.grid_sample(x, grid, mode="bilinear", align_corners=True)


class _Softmax(nn.Module):
    def forward(self, x):
        return torch.softmax(x, dim=-1)


class _Sigmoid(nn.Module):
    def forward(self, x):
        return torch.sigmoid(x)


def test_grid_sample_handle():
    x, grid = torch.rand(2, 3, 10, 12), torch.rand(2, 5, 7, 2) * 2 - 1
    d = fl.count_flops(_GridSample(), x, grid)
    assert d["unsupported_ops"] == {}
    assert d["by_operator"]["grid_sample"] == 4 * 2 * 3 * 5 * 7       # 4 MACs per element
    assert d["by_operator"]["grid_sample_weights"] == 12 * 2 * 5 * 7  # per location
    assert d["macs"] == 4 * 2 * 3 * 5 * 7 and d["flops_2x"] == 2 * d["macs"]
    assert d["other_ops"] == 12 * 2 * 5 * 7
    assert fl.grid_sample_ops(2, 3, 5, 7)["reads"] == 4 * 2 * 3 * 5 * 7


def test_softmax_and_sigmoid_handles():
    x = torch.rand(4, 6, 8)
    d = fl.count_flops(_Softmax(), x)
    assert d["unsupported_ops"] == {} and d["macs"] == 0
    assert d["other_ops"] == d["by_operator"]["softmax"] == 5 * x.numel()
    d = fl.count_flops(_Sigmoid(), x)
    assert d["unsupported_ops"] == {} and d["other_ops"] == 3 * x.numel()


def test_binary_bank_counts():
    from sci_edge.models.binary import BinaryTemporalBank

    bank = BinaryTemporalBank(13, [7, 9], [(0, 0), (1, 2), (0, 6)], 4)
    H, W = 5, 6
    d = fl.count_flops(bank, (torch.rand(1, 13, H, W) < 0.3).float())
    assert d["unsupported_ops"] == {}          # SignSTE (prim::PythonOp) handled: free
    taps = 4 * (7 + 9 + 7)
    assert d["by_operator"]["binary_filter"] == taps * H * W
    assert d["by_operator"]["conv"] == 0       # the dense 13-tap conv is not counted
    assert d["macs"] == taps * H * W
    assert d["popcount_ops"] == (6 * 12 + 2 * 13) * H * W
    ops = fl.binary_bank_ops(bank, H * W, pack=False)
    assert ops["dense_macs"] == 12 * 13 * H * W and ops["popcount_ops"] == 6 * 12 * H * W
    assert ops["scale_bias_ops"] == 2 * 12 * H * W


def test_fem_binary_layer_per_pixel():
    from sci_edge.models.end.fem import FEM

    fem = FEM()
    d = fl.count_flops(fem, fl.fem_input(8, 8))
    assert d["by_operator"]["binary_filter"] == 544 * 64      # 4*8*7 + 8*(7+9+11+13)
    assert d["popcount_ops"] == (6 * 64 + 26) * 64


def test_entropy_coder_ops():
    assert fl.entropy_coder_ops(0) == 0
    assert fl.entropy_coder_ops(1000) == 10 * 1000
    assert fl.entropy_coder_ops(7, decode=True) == fl.RANS_DECODE_OPS_PER_SYMBOL * 7
    for bad in (-1, 1.5):
        with pytest.raises(ValueError):
            fl.entropy_coder_ops(bad)


@pytest.fixture(scope="module")
def shipped():
    from sci_edge.models.pretrained import load_pretrained

    return {t: load_pretrained(t) for t in ("recon", "cls")}


@pytest.mark.parametrize("task", ["recon", "cls"])
def test_no_unsupported_ops(shipped, task):
    from fvcore.nn import FlopCountAnalysis

    m = shipped[task]
    for module, x in ((m.fem, fl.fem_input(16, 24)),
                      (fl._Analyse(m), fl.cloud_input(m, 16, 24))):
        with torch.no_grad():
            a = FlopCountAnalysis(module.eval(), (x,))
            for name, h in fl.extra_handles().items():
                a.set_op_handle(name, h)
            a.unsupported_ops_warnings(False)
            a.uncalled_modules_warnings(False)
            assert a.total() > 0
            assert dict(a.unsupported_ops()) == {}
    d = fl.sci_flops(m, 16, 24)
    assert d["unsupported_ops"] == {"end": {}, "cloud": {}}


def test_sci_flops_keys(shipped):
    d = fl.sci_flops(shipped["recon"], 32, 32)
    assert d["end_side_fem_gflops"] == d["end_side_fem_flops_per_feature_frame"] / 1e9
    assert d["end_side_fem_flops_2x"] == 2 * d["end_side_fem_flops_per_feature_frame"]
    # fvcore alone counts the dense binary conv: 832 - 544 MACs per pixel more
    assert d["end_side_fem_fvcore_raw_flops"] - d["end_side_fem_flops_per_feature_frame"] \
        == (832 - 544) * 32 * 32
    assert d["cloud_side_gflops"] > 0 and "MAC" in d["units"]["flops"]


def test_cross_check_within_2_percent(shipped):
    pytest.importorskip("onnx", reason="onnx is not installed (pip install onnx)")
    m = shipped["recon"]
    for module, x in ((m.fem, fl.fem_input(16, 24)),
                      (fl._Analyse(m), fl.cloud_input(m, 16, 24))):
        c = fl.cross_check(module, x)
        assert c["fvcore"] > 0
        for k in ("flop_counter", "onnx"):
            assert abs(c["diff_percent"][k]) <= 2.0, c


def test_cross_check_without_onnx(shipped):
    m = shipped["cls"]
    c = fl.cross_check(m.fem, fl.fem_input(8, 8), onnx=False)
    assert "onnx" not in c and abs(c["diff_percent"]["flop_counter"]) <= 2.0


def test_onnx_macs_hand_built(tmp_path):
    pytest.importorskip("onnx", reason="onnx is not installed (pip install onnx)")
    from sci_edge.profiling.onnx_count import onnx_macs, op_histogram

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
            self.fc = nn.Linear(4 * 16 * 16, 5)

        def forward(self, x, grid):
            y = self.up(self.conv(x))
            y = F.grid_sample(y, grid, align_corners=True)
            return self.fc(y.flatten(1)), torch.matmul(y, y.transpose(-1, -2))

    x, grid = torch.rand(1, 3, 8, 8), torch.rand(1, 16, 16, 2) * 2 - 1
    fl.export_onnx(Net(), (x, grid), tmp_path / "n.onnx")
    d = onnx_macs(tmp_path / "n.onnx")
    assert d["Conv"] == 8 * 8 * 8 * 3 * 9
    assert d["ConvTranspose"] == 8 * 8 * 8 * 4 * 4
    assert d["Gemm"] == 4 * 16 * 16 * 5
    assert d["MatMul"] == 4 * 16 * 16 * 16
    assert d["total"] == sum(v for k, v in d.items() if k != "total")
    assert op_histogram(tmp_path / "n.onnx")["GridSample"] == 1


def test_cross_check_codec_within_2_percent():
    """The codec's torch networks: encoder analysis, hyper-encoder, the heavy synthesis."""
    pytest.importorskip("onnx", reason="onnx is not installed (pip install onnx)")
    from sci_edge.models.pretrained import load_pretrained_codec
    c = load_pretrained_codec().codec.eval()
    ch = c.config.channels
    x = torch.rand(1, 1, 32, 64)
    y = torch.randn(1, ch, 4, 8)
    for module, inp in ((c.encoder.analysis, (x,)), (c.encoder.hyper_inter, (y,)),
                        (c.decoder.synthesis, (y, torch.rand(1, 1, 32, 64), torch.ones(1)))):
        r = fl.cross_check(module, *inp)
        assert r["fvcore"] > 0
        assert dict(fl.OpCount(module, *inp).unsupported) == {}     # pixel (un)shuffle: free
        for k in ("flop_counter", "onnx"):
            assert abs(r["diff_percent"][k]) <= 2.0, (type(module).__name__, r)
