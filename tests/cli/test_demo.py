import json

import pytest

from sci_edge.cli.main import main


def test_demo_writes_images_and_summary(capsys, tmp_path):
    pytest.importorskip("skimage")
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--size", "64x80", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["size"] == [64, 80] and doc["steps"] == 161
    for t in (41, 81, 121):
        for prefix in ("gt", "tfp", "tfi", "spikes", "compare"):
            assert (out / f"{prefix}_{t}.png").is_file()
    assert (out / "spikes.dat").stat().st_size == 161 * 64 * 80 // 8
    # classic reconstructions are sane, far from perfect
    assert 18 < doc["mean"]["tfp_psnr"] < 40
    assert 12 < doc["mean"]["tfi_psnr"] < 40
    if isinstance(doc["codec"], dict):     # torch and the shipped codec are there
        c = doc["codec"]
        assert c["bits"] == 8 * (out / "spikes.sci").stat().st_size
        assert c["bpsp"] == pytest.approx(c["bits"] / (161 * 64 * 80))
        assert "sci_coded_psnr" in doc["mean"] and doc["mean"]["sci_coded_psnr"] > 15
    else:
        assert doc["codec"].startswith("skipped")
