"""The torch-free on-device encoder: its streams decode exactly in the torch cloud decoder."""
from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx", reason="onnx is not installed (pip install 'sci_edge[export]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
torch = pytest.importorskip("torch")

from sci_edge.codec.bitstream import read_sci  # noqa: E402
from sci_edge.edge.cli_encode import main as cli_main  # noqa: E402
from sci_edge.edge.encoder import STAGES, EdgeEncoder  # noqa: E402
from sci_edge.errors import CheckpointError, DataError  # noqa: E402
from sci_edge.io import write_npz  # noqa: E402
from sci_edge.export.bundle import export_bundle  # noqa: E402
from sci_edge.models.coding import compress, decompress  # noqa: E402
from tests.export import scene_spikes  # noqa: E402
from tests.models.codec_fixtures import small_coded  # noqa: E402
from tests.test_layering import _BLOCK_TORCH  # noqa: E402

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
STRIDE, PERIOD, GAIN = 4, 3, 0.6      # 60 steps -> 12 frames, I frames at 0, 3, 6, 9


@pytest.fixture(scope="module")
def model():
    return small_coded()


@pytest.fixture(scope="module")
def bundle(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("edge") / "bundle"
    cal = scene_spikes(2, size=(64, 64), num_steps=20, seed=3)
    export_bundle(model, out, calibration=cal, size=(64, 64), trt=False)
    return out


@pytest.fixture(scope="module")
def spikes():
    return scene_spikes(1, size=(64, 64), num_steps=60, seed=0)[0]


@pytest.fixture(scope="module")
def quality(model):
    return model.codec.config.qualities - 1


@pytest.fixture(scope="module")
def torch_stream(model, spikes, quality):
    buf = io.BytesIO()
    compress(model, spikes, buf, quality=quality, stride=STRIDE, intra_period=PERIOD, gain=GAIN)
    return buf.getvalue()


@pytest.fixture(scope="module")
def torch_symbols(model, torch_stream):
    return decompress(model, torch_stream, keep_symbols=True).symbols


def _agreement(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert len(a) == len(b) and all(x.shape == y.shape for x, y in zip(a, b))
    return sum(int((x == y).sum()) for x, y in zip(a, b)) / sum(x.size for x in a)


def _decodes_exactly(model, data, symbols) -> None:
    got = decompress(model, data, keep_symbols=True).symbols
    assert len(got) == len(symbols) >= 10
    for k, (g, s) in enumerate(zip(got, symbols)):
        assert np.array_equal(g, s), f"frame {k}"


@pytest.mark.parametrize("precision, floor", [("fp32", 0.99), ("int8", 0.9)])
def test_stream_decodes_in_torch_to_the_edge_symbols(model, bundle, spikes, quality,
                                                     torch_stream, torch_symbols, tmp_path,
                                                     precision, floor):
    enc = EdgeEncoder(bundle, precision=precision, threads=1)
    calls = []
    out = tmp_path / "edge.sci"
    res = enc.encode(spikes, out, quality=quality, stride=STRIDE, intra_period=PERIOD,
                     gain=GAIN, keep_symbols=True, progress=lambda d, n: calls.append((d, n)))
    data = out.read_bytes()
    assert res.frames == 12 and res.bits == 8 * len(data) and res.path == str(out)
    assert res.bpsp == res.bits / (60 * 64 * 64) and res.bpp == res.bits / (12 * 64 * 64)
    assert set(res.stages) == set(STAGES) and res.frames_per_s > 0
    assert calls[-1] == (12, 12)
    _decodes_exactly(model, data, res.symbols)
    edge_header, frames = read_sci(data)
    torch_header, _ = read_sci(torch_stream)
    # model id, weights hash, gain, ...; a file gets its count, the torch BytesIO none
    assert edge_header == dataclasses.replace(torch_header, frame_count=12)
    assert [f.kind for f in frames] == [0, 1, 1] * 4
    share = _agreement(res.symbols, torch_symbols)
    print(f"\n{precision}: edge symbols agree with torch's in {share:.5f} of positions")
    assert share >= floor


def test_to_a_stream_with_other_options(model, bundle, spikes, tmp_path):
    enc = EdgeEncoder(bundle, precision="fp32", threads=1, batch=5)
    buf = io.BytesIO()
    res = enc.encode(spikes, buf, quality=0, stride=STRIDE, intra_period=-1, keep_symbols=True)
    assert res.gain is None and res.bits == 8 * len(buf.getvalue())
    header, frames = read_sci(buf.getvalue())
    assert header.frame_count is None and header.gain is None and header.quality == 0
    assert [f.kind for f in frames] == [0] + [1] * 11
    _decodes_exactly(model, buf.getvalue(), res.symbols)
    ref = io.BytesIO()
    compress(model, spikes, ref, quality=0, stride=STRIDE, intra_period=-1)
    assert _agreement(res.symbols, decompress(model, ref.getvalue(),
                                              keep_symbols=True).symbols) >= 0.99


@pytest.mark.parametrize("kappa", [0.0, 2.0])
def test_skipping_streams_decode_exactly_and_follow_torch(model, bundle, spikes, tmp_path,
                                                          kappa):
    """With block skipping the hyper nets run frame by frame (each P context is the
    coded frame before): the stream still decodes to the edge's symbols, and its
    skip maps and symbols follow the torch encoder's."""
    enc = EdgeEncoder(bundle, precision="fp32", threads=1, batch=4)
    buf = io.BytesIO()
    res = enc.encode(spikes, buf, quality=1, stride=STRIDE, intra_period=PERIOD, gain=GAIN,
                     keep_symbols=True, skip=kappa)
    _decodes_exactly(model, buf.getvalue(), res.symbols)
    _, frames = read_sci(buf.getvalue())
    assert [len(f.parts) for f in frames] == [2, 3, 3] * 4
    ref = io.BytesIO()
    compress(model, spikes, ref, quality=1, stride=STRIDE, intra_period=PERIOD, gain=GAIN,
             skip=kappa)
    _, ref_frames = read_sci(ref.getvalue())
    same_maps = sum(f.parts[0] == g.parts[0] for f, g in zip(frames, ref_frames)
                    if f.kind == 1)
    assert same_maps >= 6
    assert _agreement(res.symbols, decompress(model, ref.getvalue(),
                                              keep_symbols=True).symbols) >= 0.99
    with pytest.raises(DataError, match="skip factor"):
        enc.encode(spikes, io.BytesIO(), quality=1, skip=float("inf"))


def test_bad_input(bundle, spikes, quality, tmp_path, model):
    with pytest.raises(CheckpointError, match="bundle not found"):
        EdgeEncoder(tmp_path / "nowhere")
    with pytest.raises(DataError, match="precision must be one of int8, fp32"):
        EdgeEncoder(bundle, precision="fp16")
    enc = EdgeEncoder(bundle, precision="fp32", threads=1)
    with pytest.raises(DataError, match="12 spike frames, too few for one feature"):
        enc.encode(spikes[:12], tmp_path / "a.sci", quality=quality)
    with pytest.raises(DataError, match="quality must be an integer in 0..2"):
        enc.encode(spikes, tmp_path / "a.sci", quality=3)
    with pytest.raises(DataError, match="intra period"):
        enc.encode(spikes, tmp_path / "a.sci", quality=0, intra_period=0)
    assert not list(tmp_path.glob("*.sci"))
    fp32_only = export_bundle(model, tmp_path / "fp32", int8=False, size=(32, 32)).path
    with pytest.raises(CheckpointError, match="no int8 graphs in this bundle"):
        EdgeEncoder(fp32_only)


def test_cli_report_and_errors(bundle, spikes, tmp_path, capsys, model):
    src = write_npz(tmp_path / "s.npz", spikes)
    out = tmp_path / "c.sci"
    argv = [str(src), "-o", str(out), "--bundle", str(bundle), "--stride", "4",
            "--intra-period", "3", "--precision", "fp32", "--threads", "1", "--quiet"]
    assert cli_main(argv) == 0
    text = capsys.readouterr().out
    assert "bpsp" in text and "bpp" in text and "feature frames/s" in text
    assert cli_main(argv + ["--json", "--gain", "0.6"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["frames"] == 12 and doc["bits"] == 8 * out.stat().st_size
    assert doc["gain"] == 0.6 and doc["precision"] == "fp32" and "bpsp" in doc
    assert decompress(model, out).header.gain == pytest.approx(0.6)
    for bad, msg in [(["--bundle", str(tmp_path / "none")], "bundle not found"),
                     (["--quality", "7"], "--quality must be in 0..2"),
                     ]:
        assert cli_main(argv + bad) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1 and err.startswith("sci-edge-encode: error")
    short = write_npz(tmp_path / "short.npz", spikes[:10])
    assert cli_main([str(short), *argv[1:]]) == 2
    assert "10 spike frames; encoding needs at least 13" in capsys.readouterr().err
    (tmp_path / "x.png").write_bytes(b"")
    assert cli_main([str(tmp_path / "x.png"), *argv[1:]]) == 2
    assert "not a spike file" in capsys.readouterr().err


def test_runs_with_torch_blocked(bundle, spikes, quality, tmp_path, model):
    src = tmp_path / "s.npy"
    np.save(src, spikes)
    api_out = tmp_path / "api.sci"
    code = _BLOCK_TORCH + f"""
import json, runpy, numpy as np
from sci_edge.edge.encoder import EdgeEncoder
res = EdgeEncoder({str(bundle)!r}, precision="int8", threads=1).encode(
    np.load({str(src)!r}), {str(api_out)!r}, quality={quality}, stride={STRIDE},
    intra_period={PERIOD}, gain={GAIN})
sys.argv = ["sci-edge-encode", {str(src)!r}, "-o", "-", "--bundle", {str(bundle)!r},
            "--layout", "THW", "--stride", "{STRIDE}", "--intra-period", "{PERIOD}",
            "--threads", "1", "--json"]
try:
    runpy.run_module("sci_edge.edge.cli_encode", run_name="__main__")
except SystemExit as exc:
    assert exc.code == 0, exc.code
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'fvcore')
             or m.startswith(('sci_edge.models', 'sci_edge.train')))
assert not bad, bad
print(json.dumps(res.to_dict()), file=sys.stderr)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    lines = proc.stderr.decode().strip().splitlines()
    api = json.loads(lines[-1])
    assert "does not divide 7" in lines[0]           # the weights' cloud stride is 7
    cli_doc = json.loads("\n".join(lines[1:-1]))       # -o -: the report went to stderr
    assert api["frames"] == 12 and api["precision"] == "int8"
    assert cli_doc["frames"] == 12 and cli_doc["gain_source"] == "auto"
    assert cli_doc["bits"] == 8 * len(proc.stdout)
    for data in (api_out.read_bytes(), proc.stdout):
        got = decompress(model, data, keep_symbols=True)
        assert len(got.symbols) == 12


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "sci-edge-encode"
    if not script.exists():
        pytest.skip("sci-edge-encode is not installed in this environment (pip install -e .)")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--bundle" in proc.stdout and "--precision" in proc.stdout
