"""Learned weight rounding of the QDQ graphs: only the integers move, and they move
toward the FP32 model's outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'sci_edge[export]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
torch = pytest.importorskip("torch")

from onnx import numpy_helper  # noqa: E402

from sci_edge.edge.backends import OrtBackend  # noqa: E402
from sci_edge.errors import DataError  # noqa: E402
from sci_edge.export import quantize as qz  # noqa: E402
from sci_edge.export.onnx_export import torch2onnx  # noqa: E402
from sci_edge.export.rounding import RoundingSettings, refine_rounding  # noqa: E402


class _Net(torch.nn.Module):
    """A grouped conv, a fused Conv+Relu and a conv without bias."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.c = torch.nn.Conv2d(8, 4, 1, bias=False)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


def _feeds(n, seed, size=20):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.normal(size=(1, 3, size + 4, size + 4))
        # smooth, as images are: a 5-tap box filter along each axis
        x = sum(x[..., i:i + size, :] for i in range(5))
        x = sum(x[..., :, i:i + size] for i in range(5)) / 5
        out.append({"x": x.astype(np.float32)})
    return out


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    path = tmp_path_factory.mktemp("rounding") / "net.onnx"
    return torch2onnx(_Net().eval(), [torch.zeros(1, 3, 20, 20)], path, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {2: "h", 3: "w"}})


def _ints(path):
    m = onnx.load(str(path))
    return m, {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}


def _err(fp32, path, feeds):
    ref, q = OrtBackend(fp32, threads=1), OrtBackend(path, threads=1, optimize=False)
    return float(np.mean([np.mean((q.run(f)["y"] - ref.run(f)["y"]) ** 2) for f in feeds]))


@pytest.mark.parametrize("flavour", ["cpu", "trt"])
def test_learned_rounding_moves_only_the_integers_and_lowers_the_error(fp32, tmp_path,
                                                                       flavour):
    cal, held = _feeds(12, 0), _feeds(4, 99)
    near = qz.onnx2int8(fp32, tmp_path / "near.onnx", cal, flavour=flavour)
    learned = qz.onnx2int8(fp32, tmp_path / "learned.onnx", cal, flavour=flavour, rounding=cal)
    (mn, a), (ml, b) = _ints(near), _ints(learned)
    # the same graph, scales and zero points: any runtime that read one reads the other
    assert [(n.name, n.op_type, list(n.input)) for n in mn.graph.node] == \
        [(n.name, n.op_type, list(n.input)) for n in ml.graph.node]
    assert a.keys() == b.keys()
    moved = {k for k in a if not np.array_equal(a[k], b[k])}
    assert moved and all(k.endswith(("weight_quantized", "bias_quantized", "bias"))
                         for k in moved), moved
    # each learned integer is the float weight rounded down or up
    w = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(fp32)).graph.initializer}
    flipped = 0
    for k in a:
        if k.endswith("weight_quantized"):
            base = k[:-len("_quantized")]
            scale = b[f"{base}_scale"].reshape(-1, 1, 1, 1).astype(np.float64)
            r = w[base] / scale
            assert np.all(np.abs(b[k] - r) < 1 + 1e-6), k
            flipped += int((b[k] != a[k]).sum())
    assert flipped > 0
    meta = json.loads(OrtBackend(learned).metadata["quantization"])
    assert meta["rounding"] == "learned"
    assert json.loads(OrtBackend(near).metadata["quantization"])["rounding"] == "nearest"
    mse = meta["rounding_mse"]
    assert len(mse) == 3 and all(after <= before for before, after in mse.values())
    assert any(after < 0.9 * before for before, after in mse.values())
    # and on inputs it did not learn from, the model's output is closer to FP32's
    assert _err(fp32, learned, held) < 0.95 * _err(fp32, near, held)


def test_refine_rounding_reports_each_conv_and_needs_inputs(fp32, tmp_path):
    cal = _feeds(6, 1)
    near = qz.onnx2int8(fp32, tmp_path / "near.onnx", cal)
    model = onnx.load(str(near))
    pre = tmp_path / "pre.onnx"
    qz._pre_process(fp32, pre)
    rep = refine_rounding(model, onnx.load(str(pre)), cal,
                          settings=RoundingSettings(iterations=50, samples=512, feeds=3))
    assert [r.node for r in rep] == ["/a/Conv", "/b/Conv", "/c/Conv"]
    assert all(0 <= r.flipped <= r.weights and r.refined_mse <= r.nearest_mse for r in rep)
    assert [r.weights for r in rep] == [8 * 3 * 9, 8 * 4 * 9, 4 * 8]
    with pytest.raises(DataError, match="at least one"):
        refine_rounding(model, onnx.load(str(pre)), [])


def test_quantize_edge_refuses_an_unknown_rounding(fp32):
    with pytest.raises(DataError, match="rounding"):
        qz.quantize_edge({"net": fp32}, {"net": _feeds(2, 0)}, rounding="stochastic")


def test_export_configs_take_the_rounding():
    from sci_edge.export.config import ExportConfig

    assert ExportConfig().rounding == "learned"
    assert ExportConfig(rounding="nearest").to_dict()["rounding"] == "nearest"
    with pytest.raises(Exception, match="rounding"):
        ExportConfig(rounding="up")
