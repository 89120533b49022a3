"""sci-edge bench recon: the stream path against the per-output path, and the
long-reach propagation's cost beside them."""
import pytest

torch = pytest.importorskip("torch")

from sci_edge.bench.recon import bench_recon  # noqa: E402
from sci_edge.models.pretrained import REACH_ADDON, WEIGHTS_DIR, pretrained_path  # noqa: E402


def test_bench_recon_compares_like_with_like_and_times_the_propagation():
    if not pretrained_path("recon").is_file():
        pytest.skip("shipped recon weights absent")
    doc = bench_recon(height=24, width=32, run=3, old_frames=2, num_threads=1)
    assert doc["outputs_match_1e-5"], doc
    for key in ("single", "run_feature_rate", "run_every_step"):
        assert doc[key]["new_s_per_frame"] > 0
    if (WEIGHTS_DIR / REACH_ADDON).is_file():
        p = doc["propagated_feature_rate"]
        assert p["s_per_frame"] > 0 and p["features"] >= 3
    from sci_edge.models.pretrained import RATE_ADDON

    if (WEIGHTS_DIR / RATE_ADDON).is_file():
        assert doc["rate_feature_rate"]["s_per_frame"] > 0
