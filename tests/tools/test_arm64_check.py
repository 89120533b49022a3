"""tools/arm64_check.sh: the torch-free edge encoder in an emulated aarch64 root.

Runs only where the root exists (tools/arm64_check.sh --bootstrap makes it), as
root, with a qemu-aarch64 binfmt handler; skips otherwise, saying which is missing.
The first run installs ".[edge]" under emulation (many minutes); later runs of
the same source keep that install."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "arm64_check.sh"
BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
CANNOT_RUN = 3      # the script's exit status when a prerequisite is missing
TIMEOUT_S = 3 * 3600


def _root() -> Path:
    env = os.environ.get("SCI_EDGE_ARM64_ROOT")
    return Path(env) if env else Path.home() / ".cache" / "sci-edge" / "arm64-root"


def _skip_unless_runnable() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip(f"the arm64 check needs Linux (chroot, binfmt_misc), this is {sys.platform}")
    if os.geteuid() != 0:
        pytest.skip("the arm64 check needs root (chroot and mount); run pytest as root")
    root = _root()
    if not (root / "usr" / "bin" / "python3").exists():
        pytest.skip(f"no arm64 root at {root}: make one with `tools/arm64_check.sh "
                    "--bootstrap` (or set SCI_EDGE_ARM64_ROOT)")
    if (root / "debootstrap").is_dir():
        pytest.skip(f"{root} is incomplete: {root}/debootstrap/ exists (debootstrap still "
                    "running, or it failed)")
    if not BINFMT.is_file() or "enabled" not in BINFMT.read_text().split():
        pytest.skip(f"no enabled qemu-aarch64 binfmt handler ({BINFMT}): apt-get install "
                    "qemu-user-static binfmt-support")
    host = Path(sys.executable).parent
    if not (host / "sci-edge-encode").exists():
        pytest.skip(f"sci-edge-encode not beside {sys.executable}: the host venv is not installed")


@pytest.mark.slow
def test_arm64_streams_decode_exactly(tmp_path):
    _skip_unless_runnable()
    summary_path = tmp_path / "summary.json"
    env = dict(os.environ, SCI_EDGE_HOST_VENV=str(Path(sys.executable).parent.parent))
    res = subprocess.run(["bash", str(SCRIPT), "--json", str(summary_path),
                          "--work", str(tmp_path / "work")],
                         capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    tail = (res.stdout + res.stderr)[-4000:]
    if res.returncode == CANNOT_RUN:
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("FAIL (cannot run")]
        pytest.skip(lines[-1] if lines else f"arm64_check.sh cannot run here:\n{tail}")
    assert res.returncode == 0, f"arm64_check.sh exited {res.returncode}:\n{tail}"
    assert res.stdout.rstrip().splitlines()[-1].startswith("PASS"), tail

    s = json.loads(summary_path.read_text())
    arm = s["arm64"]
    assert arm["machine"] == "aarch64"
    assert not arm["torch_installed"] and not arm["torch_imported_by_edge"]
    assert set(arm["kernels"]) == {"if_sim", "bitpack", "isi", "tfilter", "rans"}
    assert all("aarch64" in name for name in arm["kernels"].values()), arm["kernels"]
    int8 = s["precisions"]["int8"]
    for prec, entry in s["precisions"].items():
        assert entry["decode_exact"] and entry["symbols_exact"], (prec, entry)
        # the arm64 encoder's own q (kept through the API) are what the host decoded
        es = entry["arm64"]["encoder_symbols"]
        assert es["match"] and es["symbols_differ"] == 0 and es["api_stream_identical_to_cli"]
    for side in ("arm64", "x86"):
        doc = int8[side]
        assert doc["decode_ok"] and doc["crc_ok"], doc
        # re-coding the decoded symbols gives back the file byte for byte
        assert doc["recoded_identical"] and doc["frames_recode_mismatch"] == [], doc
        # the torch cloud decoder's symbols are the table decode's
        assert doc["cloud_symbols_agree"], doc
        assert doc["frames"] >= 12
        assert "I" in doc["frame_kinds"][1:] and "P" in doc["frame_kinds"]
    assert int8["decode_exact"] and int8["symbols_exact"]
    assert int8["arm64"]["encode_emulated"]["precision"] == "int8"
    c = int8["compare"]
    assert c["byte_identical"] == (c["frames_with_different_bytes"] == 0)
    assert 0.0 <= c["symbol_agreement"] <= 1.0
    assert s["arm64_torch_free"] and s["pass"]
