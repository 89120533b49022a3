import json

import pytest

from sci_edge.cli.main import main


def test_demo_writes_images_and_summary(capsys, tmp_path):
    pytest.importorskip("skimage")
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--size", "64x80", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["size"] == [64, 80] and doc["steps"] == 161
    for t in (40, 80, 120):
        for prefix in ("gt", "tfp", "tfi", "spikes", "compare"):
            assert (out / f"{prefix}_{t}.png").is_file()
    assert (out / "spikes.dat").stat().st_size == 161 * 64 * 80 // 8
    # classic reconstructions are sane, far from perfect
    assert 18 < doc["mean"]["tfp_psnr"] < 40
    assert 12 < doc["mean"]["tfi_psnr"] < 40
