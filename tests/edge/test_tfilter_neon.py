"""The NEON loop of kernels/tfilter_core.h, cross-compiled for aarch64 and run
under qemu: its responses must equal the numpy reference bit for bit, like
the x86 loops (the Jetson runs this one)."""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from sci_edge.edge import BinaryFilterBank, pack_time

from .test_tfilter import _bank, _grouped_bank

KERNELS = Path(__file__).resolve().parents[2] / "kernels"
CC, QEMU = "aarch64-linux-gnu-gcc", "qemu-aarch64"

pytestmark = pytest.mark.skipif(
    shutil.which(CC) is None or shutil.which(QEMU) is None,
    reason=f"needs {CC} and {QEMU} (apt-get install gcc-aarch64-linux-gnu qemu-user)")

HARNESS = r"""
#include "tfilter_core.h"
#include <stdio.h>
#include <stdlib.h>

/* in: int64 H, W, C; uint64 words[H*W], pos[C], sup[C]; float alpha[C], bias[C]
 * out: for the NEON path, then the portable one: float32 (C, H, W), then int8 (C, H, W) */
int main(int argc, char **argv)
{
    int64_t hdr[3];
    FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "wb");
    if (!in || !out || fread(hdr, 8, 3, in) != 3) return 2;
    int64_t H = hdr[0], W = hdr[1], plane = hdr[0] * hdr[1];
    int C = (int)hdr[2];
    uint64_t *w = malloc(8 * plane), *pos = malloc(8 * C), *sup = malloc(8 * C);
    float *a = malloc(4 * C), *b = malloc(4 * C), *of = malloc(4 * C * plane);
    int8_t *oi = malloc(C * plane);
    if (fread(w, 8, plane, in) != (size_t)plane || fread(pos, 8, C, in) != (size_t)C
        || fread(sup, 8, C, in) != (size_t)C || fread(a, 4, C, in) != (size_t)C
        || fread(b, 4, C, in) != (size_t)C) return 3;
    const int paths[2] = {SCI_TF_NEON, SCI_TF_PORTABLE};
    for (int k = 0; k < 2; ++k) {
        for (int64_t y = 0; y < H; ++y) {
            sci_tfilter_row_on(paths[k], W, w + y * W, C, pos, sup, a, b, of + y * W, 0, plane);
            sci_tfilter_row_on(paths[k], W, w + y * W, C, pos, sup, 0, 0, 0, oi + y * W, plane);
        }
        fwrite(of, 4, C * plane, out);
        fwrite(oi, 1, C * plane, out);
    }
    fclose(out);
    printf("%s\n", sci_tfilter_path_name(sci_tfilter_best_path()));
    return 0;
}
"""


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    d = tmp_path_factory.mktemp("neon")
    (d / "harness.c").write_text(HARNESS)
    exe = d / "harness"
    subprocess.run([CC, "-O3", "-ffp-contract=off", "-static", f"-I{KERNELS}",
                    str(d / "harness.c"), "-o", str(exe)], check=True, capture_output=True)
    return exe


def _run(harness, tmp_path, bank: BinaryFilterBank, spikes):
    words = pack_time(spikes)
    H, W = words.shape
    C = bank.channels
    src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
    src.write_bytes(np.array([H, W, C], np.int64).tobytes() + words.tobytes()
                    + bank.pos.tobytes() + bank.support.tobytes()
                    + bank.alpha.tobytes() + bank.bias.tobytes())
    res = subprocess.run([QEMU, str(harness), str(src), str(dst)], capture_output=True,
                         text=True, check=True, timeout=120)
    raw = dst.read_bytes()
    n = C * H * W
    outs = []
    for k in range(2):
        base = k * 5 * n
        outs.append((np.frombuffer(raw, np.float32, n, base).reshape(C, H, W),
                     np.frombuffer(raw, np.int8, n, base + 4 * n).reshape(C, H, W)))
    return res.stdout.strip(), outs


@pytest.mark.parametrize("width", [1, 3, 4, 5, 7, 8, 9, 31, 32, 33, 70, 130])
@pytest.mark.parametrize("window", [13, 16, 17, 32, 40])
def test_neon_loop_matches_reference(harness, tmp_path, rng, width, window):
    bank = _grouped_bank(rng, window) if width % 2 else _bank(rng, C=6, window=window)
    spikes = (rng.random((window, 3, width)) < 0.45).astype(np.uint8)
    name, outs = _run(harness, tmp_path, bank, spikes)
    assert name == "neon"
    for label, (out_f, out_i) in zip(("neon", "portable"), outs):
        np.testing.assert_array_equal(out_f, bank.reference(spikes), err_msg=label)
        np.testing.assert_array_equal(out_i, bank.dots_reference(spikes), err_msg=label)


def test_neon_loop_on_the_fem_bank(harness, tmp_path, rng):
    from sci_edge.models.end.fem import FEM, WINDOW

    bank = FEM().export_filter_bank()
    spikes = (rng.random((WINDOW, 4, 50)) < 0.3).astype(np.uint8)
    _, outs = _run(harness, tmp_path, bank, spikes)
    for out_f, out_i in outs:
        np.testing.assert_array_equal(out_f, bank.reference(spikes))
        np.testing.assert_array_equal(out_i, bank.dots_reference(spikes))
