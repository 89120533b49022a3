"""tools/edge_rss_check.py: the edge encoder's peak memory on a .dat file (a small one
here; README gives the 2 GB figure)."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "edge_rss_check.py"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None
                    or importlib.util.find_spec("onnx") is None,
                    reason="needs onnx and onnxruntime (pip install '.[export]')")
def test_rss_check_small_file(tmp_path):
    out = tmp_path / "rss.json"
    res = subprocess.run([sys.executable, str(TOOL), "--size-gb", "0.004", "--height", "64",
                          "--width", "96", "--chunk", "400", "--stride", "20",
                          "--dir", str(tmp_path / "w"), "--json", str(out)],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["pass"] and 0 < doc["peak_rss_mb"] < doc["limit_mb"] == 1024
    assert doc["dat_bytes"] >= 0.004 * 2**30 and doc["frames"] == (doc["steps"] - 13) // 20 + 1
    assert not (tmp_path / "w" / "large.dat").exists()          # removed without --keep
    assert "PASS" in res.stderr
