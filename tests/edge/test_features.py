"""EdgeFEM: popcount kernel + the fem_tail graph against the torch FEM."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx", reason="onnx is not installed (pip install 'sci_edge[export]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
torch = pytest.importorskip("torch")

from sci_edge.edge.features import EdgeFEM  # noqa: E402
from sci_edge.errors import DataError  # noqa: E402
from sci_edge.export.onnx_export import export_edge_onnx  # noqa: E402
from sci_edge.models.end.fem import WINDOW  # noqa: E402
from tests.models.codec_fixtures import small_coded  # noqa: E402


@pytest.fixture(scope="module")
def fem_and_graph(tmp_path_factory):
    torch.set_num_threads(1)
    fem = small_coded().sci.fem.eval()
    out = tmp_path_factory.mktemp("fem")
    report = export_edge_onnx(fem, out, size=(16, 24), graphs=["fem_tail"])
    return fem, report.graphs["fem_tail"].path


@pytest.mark.parametrize("shape", [(9, 13), (32, 32), (17, 40)])
def test_matches_the_torch_fem(fem_and_graph, shape, rng):
    fem, path = fem_and_graph
    edge = EdgeFEM(fem.export_filter_bank(), path, threads=1)
    windows = (rng.random((3, WINDOW, *shape)) < 0.3).astype(np.uint8)
    got = edge(windows)
    with torch.no_grad():
        ref = fem(torch.from_numpy(windows.astype(np.float32)))[:, 0].numpy()
    assert got.shape == (3, *shape) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=2e-5)
    # the two halves the encoder times separately give the same
    dots = edge.dots(list(windows))
    assert dots.dtype == np.int8 and dots.shape == (3, edge.bank.channels, *shape)
    np.testing.assert_array_equal(edge.features(dots), got)


def test_bad_windows(fem_and_graph, rng):
    fem, path = fem_and_graph
    edge = EdgeFEM(fem.export_filter_bank(), path, threads=1)
    with pytest.raises(DataError, match="no spike windows"):
        edge([])
    with pytest.raises(DataError, match=rf"\({WINDOW}, H, W\)"):
        edge(np.zeros((2, WINDOW - 1, 8, 8), np.uint8))
    with pytest.raises(DataError, match="must all be"):
        edge([np.zeros((WINDOW, 8, 8), np.uint8), np.zeros((WINDOW, 8, 9), np.uint8)])
