"""``bench edge``: torch fp32 vs onnxruntime fp32 / INT8 per feature frame, on the small
codec of tests.models.codec_fixtures at 64x64 (the structure and sanity of the result,
not the speed)."""
import json
import math

import pytest

from sci_edge.cli.main import main
from tests.models.codec_fixtures import save_small

torch = pytest.importorskip("torch")
pytest.importorskip("onnx", reason="onnx is not installed (pip install 'sci_edge[export]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    from sci_edge.bench.edge import run_edge_bench

    weights = save_small(tmp_path_factory.mktemp("bench_edge") / "w.pt")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = run_edge_bench(weights, sizes=[(64, 64)], repeats=2, threads=1, calib=2,
                             encode_frames=2)
        assert torch.get_num_threads() == 1     # the bench restores torch's threads
    finally:
        torch.set_num_threads(before)
    return res


def test_result_structure(result):
    from sci_edge.bench.edge import ENCODERS, PATHS

    assert result.threads == 1 and result.repeats == 2 and result.calibration_sequences == 2
    (r,) = result.sizes
    assert (r.height, r.width) == (64, 64) and r.windows == r.encoder_frames == 2
    assert set(r.paths) == set(PATHS) and set(r.encoder_s_per_frame) == set(ENCODERS)
    for name, p in r.paths.items():
        assert p.frame_s > 0 and 0 < p.networks_s <= p.frame_s + 1e-12
        assert math.isclose(p.frame_s, sum(p.stages.values()), rel_tol=0.5)
    assert "popcount" in r.paths["ort-int8"].stages and "popcount" not in \
        r.paths["torch-fp32"].stages
    for ratio in (r.int8_vs_ort_fp32, r.int8_vs_ort_fp32_networks, r.ort_fp32_vs_torch,
                  r.int8_vs_torch, r.encoder_int8_vs_fp32):
        assert math.isfinite(ratio) and ratio > 0
    assert r.meets_target == (r.int8_vs_ort_fp32 >= result.target_speedup)


def test_outputs_agree(result):
    (r,) = result.sizes
    # ORT fp32 is the torch model; INT8 is close (this untrained FEM is smooth)
    assert r.ft_max_abs_fp32_vs_torch < 1e-4 and r.symbol_agreement_fp32_vs_torch > 0.99
    assert r.ft_psnr_int8_db > 30
    assert 0.9 < r.symbol_agreement_int8 <= 1 and 0.9 < r.stream_symbol_agreement_int8 <= 1
    assert r.symbols == 8 * 8 * 8       # channels x (64 / 8)^2


def test_json_and_summary(result):
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["benchmark"] == "edge"
    for key in ("cpu_model", "cpus", "cpu_simd", "machine", "threads", "versions",
                "int8_target", "weights_hash", "target_speedup"):
        assert key in doc, key
    size = doc["sizes"][0]
    assert size["paths"]["ort-int8"]["frames_per_s"] > 0
    lines = result.summary()
    assert "64x64" in lines[1] and any("INT8 vs ORT fp32" in line for line in lines)


def test_cli_rejects_bad_sizes(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "edge", "--sizes", "64x"])
    assert exc.value.code == 2 and "--sizes" in capsys.readouterr().err
