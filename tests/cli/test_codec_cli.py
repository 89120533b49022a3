"""``sci-edge encode`` / ``decode``: the .sci round trip from the command line, piping,
reconstruction and classification from decoded features, and one-line errors.

Weights: the small untrained codec of tests.models.codec_fixtures (its cloud side
reads features 7 spike steps apart, so streams meant for the cloud side use
--stride 7)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sci_edge.cli.main import main
from sci_edge.io import write_dat, write_npz
from tests.models.codec_fixtures import save_small, small_coded

torch = pytest.importorskip("torch")

H, W, T = 16, 24, 48
ROOT = Path(__file__).resolve().parents[2]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Weights (two seeds), spikes as .npz and .dat, and one stride-7 stream."""
    d = tmp_path_factory.mktemp("codec_cli")
    rng = np.random.default_rng(7)
    spikes = (rng.random((T, H, W)) < 0.3).astype(np.uint8)
    paths = {"dir": d, "spikes": spikes,
             "w": save_small(d / "w.pt"), "w1": save_small(d / "w1.pt", seed=1),
             "npz": write_npz(d / "s.npz", spikes), "dat": write_dat(d / "s.dat", spikes)}
    code = main(["encode", str(paths["npz"]), "-o", str(d / "a.sci"), "--weights",
                 str(paths["w"]), "--stride", "7", "--gain", "0.5", "--quiet"])
    assert code == 0
    paths["sci"] = d / "a.sci"
    return paths


def _model(path):
    from sci_edge.models.pretrained import load_pretrained_codec

    return load_pretrained_codec(path)


def _one_line_error(code, out, err, *needles):
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# --- encode ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["npz", "dat"])
def test_encode_spike_files_json(capsys, tmp_path, files, kind):
    out = tmp_path / "o.sci"
    extra = ["--height", H, "--width", W] if kind == "dat" else []
    code, stdout, err = run(capsys, "encode", files[kind], *extra, "-o", out, "--weights",
                            files["w"], "--json", "--quiet")
    assert code == 0, err
    doc = json.loads(stdout)
    for key in ("path", "frames", "bits", "bpsp", "bpp", "num_steps", "height", "width",
                "seconds", "feature_frames_per_s", "quality", "stride", "intra_period",
                "gain", "weights_hash"):
        assert key in doc, key
    assert out.is_file() and doc["bits"] == 8 * out.stat().st_size
    assert (doc["num_steps"], doc["height"], doc["width"]) == (T, H, W)
    assert doc["bpsp"] == pytest.approx(doc["bits"] / (T * H * W))
    assert doc["bpp"] == pytest.approx(doc["bits"] / (doc["frames"] * H * W))
    # defaults: the best quality, stride 5 (6, 11, .., 41), intra period 32, gain auto
    assert (doc["quality"], doc["stride"], doc["intra_period"]) == (2, 5, 32)
    assert doc["frames"] == len(range(6, T - 6, 5)) and doc["gain_source"] == "auto"
    assert doc["weights_hash"] == _model(files["w"]).codec.weights_hash().hex()
    assert "does not divide 7" in err      # these weights' cloud side cannot read stride 5


def test_encode_text_report_and_options(capsys, tmp_path, files):
    out = tmp_path / "o.sci"
    code, stdout, err = run(capsys, "encode", files["npz"], "-o", out, "--weights", files["w"],
                            "--quality", "0", "--stride", "7", "--intra-period", "-1",
                            "--gain", "0.25", "--quiet")
    assert code == 0 and err == ""
    assert stdout.startswith(f"wrote {out}: 6 feature frames (t = 6..41 every 7)")
    assert "bpsp" in stdout and "bpp" in stdout and "feature frames/s" in stdout
    from sci_edge.codec.bitstream import SciReader

    with SciReader(out) as r:
        h = r.header
        assert [f.kind.name for f in r] == ["I"] + ["P"] * 5
    assert (h.quality, h.stride, h.intra_period, h.frame_count) == (0, 7, -1, 6)
    assert h.gain == pytest.approx(0.25)


def test_encode_skip_option(capsys, tmp_path, files):
    from sci_edge.codec.bitstream import SciReader
    from sci_edge.codec.skip import DEFAULT_KAPPA

    parts = {}
    for value in ("off", "3"):
        out = tmp_path / f"o_{value}.sci"
        code, stdout, err = run(capsys, "encode", files["npz"], "-o", out, "--weights",
                                files["w"], "--stride", "7", "--skip", value, "--json",
                                "--quiet")
        assert code == 0, err
        assert json.loads(stdout)["skip"] == (None if value == "off" else 3.0)
        with SciReader(out) as r:
            parts[value] = [len(f.parts) for f in r]
    assert parts["off"] == [2] * 6 and parts["3"] == [2] + [3] * 5
    code, stdout, err = run(capsys, "encode", files["npz"], "-o", tmp_path / "d.sci",
                            "--weights", files["w"], "--stride", "7", "--json", "--quiet")
    assert code == 0 and json.loads(stdout)["skip"] == DEFAULT_KAPPA
    for bad in ("-1", "nan", "1e9", "some"):
        with pytest.raises(SystemExit) as exc:
            main(["encode", str(files["npz"]), "-o", str(tmp_path / "x.sci"), "--skip", bad])
        assert exc.value.code == 2 and "--skip" in capsys.readouterr().err


def test_encode_simulates_an_image(capsys, tmp_path, files):
    img = tmp_path / "img.png"
    Image.fromarray((np.arange(H * W).reshape(H, W) % 256).astype(np.uint8)).save(img)
    code, stdout, err = run(capsys, "encode", img, "--steps", 30, "--stride", 7, "-o",
                            tmp_path / "o.sci", "--weights", files["w"], "--json", "--quiet")
    assert code == 0, err
    doc = json.loads(stdout)
    assert (doc["num_steps"], doc["height"], doc["width"]) == (30, H, W)
    assert doc["source"].startswith("simulated") and doc["frames"] == 3


def test_existing_output_is_replaced_whole_or_kept(capsys, tmp_path, files):
    out = tmp_path / "o.sci"
    out.write_bytes(b"old")
    code, _, err = run(capsys, "encode", files["npz"], "-o", out, "--weights", files["w"],
                       "--quiet")
    assert code == 0, err
    assert out.read_bytes()[:4] == b"\x89SCI"
    # a failing run leaves the previous file as it was
    before = out.read_bytes()
    write_npz(tmp_path / "short.npz", files["spikes"][:10])
    code, out_, err = run(capsys, "encode", tmp_path / "short.npz", "-o", out, "--weights",
                          files["w"], "--quiet")
    _one_line_error(code, out_, err, "short.npz", "10 spike frames")
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --- decode ----------------------------------------------------------------------------------
def test_decode_summary_json(capsys, files):
    code, out, err = run(capsys, "decode", files["sci"], "--weights", files["w"], "--json",
                         "--quiet")
    assert code == 0, err
    doc = json.loads(out)
    size = files["sci"].stat().st_size
    assert doc["frames"] == 6 and doc["times"] == [6, 41] and doc["bits"] == 8 * size
    assert doc["bpsp"] == pytest.approx(8 * size / (T * H * W))
    assert doc["bpp"] == pytest.approx(8 * size / (6 * H * W))
    assert doc["header"]["stride"] == 7 and doc["header"]["gain"] == pytest.approx(0.5)
    assert doc["header"]["weights_hash"] == _model(files["w"]).codec.weights_hash().hex()
    code, out, _ = run(capsys, "decode", files["sci"], "--weights", files["w"])
    assert code == 0 and "decoded 6 feature frames at t = 6..41 every 7" in out


def test_decode_reconstructs_the_asked_times(capsys, tmp_path, files):
    rec = tmp_path / "rec"
    code, out, err = run(capsys, "decode", files["sci"], "--weights", files["w"],
                         "--reconstruct", rec, "--at", "20,27", "--json", "--quiet")
    assert code == 0, err
    doc = json.loads(out)["reconstruct"]
    assert doc["times"] == [20, 27] and doc["gain"] == pytest.approx(0.5)
    assert doc["gain_source"] == "header"
    assert sorted(p.name for p in rec.iterdir()) == ["frame_20.png", "frame_27.png"]
    # the images are the cloud side's on the decoded stream, in intensity units
    from sci_edge.models.coding import decompress

    model = _model(files["w"])
    want = model.sci.reconstruct_stream(decompress(model, files["sci"]).stream, [20, 27])
    for t, img in zip((20, 27), want):
        got = np.asarray(Image.open(rec / f"frame_{t}.png"), np.float32) / 255
        assert got.shape == (H, W) and np.abs(got - img).max() <= 1 / 255 + 1e-6
    # default: every feature time (the last ones read up to the stream's last feature);
    # --gain replaces the header's
    code, out, err = run(capsys, "decode", files["sci"], "--weights", files["w"],
                         "--reconstruct", tmp_path / "all", "--gain", "2", "--json", "--quiet")
    assert code == 0, err
    doc = json.loads(out)["reconstruct"]
    assert doc["times"] == [6, 13, 20, 27, 34, 41] and doc["gain"] == 2.0
    assert len(list((tmp_path / "all").glob("frame_*.png"))) == 6


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_decode_writes_a_video(capsys, tmp_path, files):
    code, out, err = run(capsys, "decode", files["sci"], "--weights", files["w"],
                         "--reconstruct", tmp_path / "r.mp4", "--at", "all", "--quiet")
    assert code == 0, err
    assert (tmp_path / "r.mp4").stat().st_size > 0


def test_classify_needs_classifying_weights(capsys, tmp_path, files):
    from sci_edge.models.checkpoint import save_checkpoint
    from sci_edge.models.coding import decompress

    cls = small_coded(seed=2, task="cls")
    save_checkpoint(tmp_path / "cls.pt", kind="codec", model_config=cls.model_config(),
                    state=cls.state_for_checkpoint())
    code, out, err = run(capsys, "decode", files["sci"], "--weights", files["w"], "--classify")
    _one_line_error(code, out, err, str(files["w"]), "for reconstruction", "--classify")
    sci = tmp_path / "c.sci"
    assert run(capsys, "encode", files["npz"], "-o", sci, "--weights", tmp_path / "cls.pt",
               "--stride", "7", "--quiet")[0] == 0
    code, out, err = run(capsys, "decode", sci, "--weights", tmp_path / "cls.pt", "--classify",
                         "--json", "--quiet")
    assert code == 0, err
    (c,) = json.loads(out)["classify"]
    model = _model(tmp_path / "cls.pt")
    logits = model.sci.classify_stream(decompress(model, sci).stream, 27)[0]
    assert c["t"] == 27 and c["class"] == int(np.argmax(logits))   # nearest T // 2 = 24
    assert 0 < c["probability"] <= 1 and len(c["logits"]) == 10


# --- piping ----------------------------------------------------------------------------------
def test_pipe_encode_to_decode_gives_the_file_features(tmp_path, files):
    from sci_edge.models.coding import decompress

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cli = [sys.executable, "-m", "sci_edge.cli.main"]
    enc = subprocess.Popen(cli + ["encode", str(files["npz"]), "-o", "-", "--weights",
                                  str(files["w"]), "--stride", "7", "--gain", "0.5", "--json",
                                  "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env)
    dec = subprocess.Popen(cli + ["decode", "-", "--weights", str(files["w"]), "--json",
                                  "--quiet"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env)
    piped = bytearray()
    while chunk := enc.stdout.read1(1 << 16):   # forwarded as it comes: a real pipe
        piped += chunk
        dec.stdin.write(chunk)
    dec.stdin.close()
    enc_err, dec_out, dec_err = enc.stderr.read(), dec.stdout.read(), dec.stderr.read()
    assert enc.wait(timeout=120) == 0, enc_err
    assert dec.wait(timeout=120) == 0, dec_err
    report = json.loads(enc_err)            # the report went to stderr
    assert report["bits"] == 8 * len(piped)
    doc = json.loads(dec_out)
    assert doc["input"] == "<stdin>" and doc["frames"] == 6 and doc["bits"] == 8 * len(piped)
    assert doc["header"]["frame_count"] is None     # a pipe cannot patch the count in
    model = _model(files["w"])
    from_pipe, from_file = decompress(model, bytes(piped)), decompress(model, files["sci"])
    np.testing.assert_array_equal(from_pipe.stream.times, from_file.stream.times)
    np.testing.assert_array_equal(from_pipe.stream.features, from_file.stream.features)


# --- errors ----------------------------------------------------------------------------------
def _damaged(files, tmp_path, how):
    data = bytearray(files["sci"].read_bytes())
    if how == "truncated":
        data = data[:len(data) - 30]
    else:
        data[len(data) // 2] ^= 0x10
    path = tmp_path / f"{how}.sci"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("how, needle", [("truncated", "truncated"),
                                         ("flipped", "CRC mismatch")])
def test_damaged_streams_are_one_line_errors(capsys, tmp_path, files, how, needle):
    path = _damaged(files, tmp_path, how)
    code, out, err = run(capsys, "decode", path, "--weights", files["w"], "--reconstruct",
                         tmp_path / "rec")
    _one_line_error(code, out, err, f"sci-edge decode: error: {path}:", needle)
    assert not (tmp_path / "rec").exists()


def test_decode_errors(capsys, tmp_path, files):
    w, sci = files["w"], files["sci"]
    _one_line_error(*run(capsys, "decode", sci, "--weights", files["w1"]),
                    str(sci), "weights hash mismatch")
    _one_line_error(*run(capsys, "decode", tmp_path / "nope.sci", "--weights", w),
                    str(tmp_path / "nope.sci"), "file not found")
    _one_line_error(*run(capsys, "decode", sci, "--weights", tmp_path / "nope.pt"),
                    str(tmp_path / "nope.pt"), "not found")
    (tmp_path / "notes.sci").write_text("hello")
    _one_line_error(*run(capsys, "decode", tmp_path / "notes.sci", "--weights", w),
                    "notes.sci", "not a .sci file")
    _one_line_error(*run(capsys, "decode", sci, "--weights", w, "--reconstruct",
                         tmp_path / "r", "--at", "10"), str(sci), "no output at t = 10")
    (tmp_path / "f").write_text("")
    _one_line_error(*run(capsys, "decode", sci, "--weights", w, "--reconstruct",
                         tmp_path / "f"), str(tmp_path / "f"), "not a folder")
    # a stride the weights' cloud side cannot read
    stride5 = tmp_path / "s5.sci"
    assert run(capsys, "encode", files["npz"], "-o", stride5, "--weights", w, "--quiet")[0] == 0
    _one_line_error(*run(capsys, "decode", stride5, "--weights", w, "--reconstruct",
                         tmp_path / "r"), str(stride5), "every 5 spike steps", "7 steps apart")


def test_a_stream_without_gain_needs_one(capsys, tmp_path, files):
    from sci_edge.models.coding import compress

    path = tmp_path / "nogain.sci"
    compress(_model(files["w"]), files["spikes"], path, quality=1, stride=7)
    _one_line_error(*run(capsys, "decode", path, "--weights", files["w"], "--reconstruct",
                         tmp_path / "r"), str(path), "no camera gain; give --gain")
    code, _, err = run(capsys, "decode", path, "--weights", files["w"], "--reconstruct",
                       tmp_path / "r", "--gain", "0.5", "--at", "20", "--quiet")
    assert code == 0, err
    assert (tmp_path / "r" / "frame_20.png").is_file()


def test_encode_errors(capsys, tmp_path, files):
    w, npz = files["w"], files["npz"]
    _one_line_error(*run(capsys, "encode", npz, "-o", tmp_path / "o.sci", "--weights", w,
                         "--quality", "3"), "--quality must be in 0..2", str(w))
    with pytest.raises(SystemExit) as exc:       # not a number: argparse's usage error
        main(["encode", str(npz), "-o", str(tmp_path / "o.sci"), "--quality", "best"])
    assert exc.value.code == 2 and "--quality" in capsys.readouterr().err
    _one_line_error(*run(capsys, "encode", tmp_path / "nope.npz", "-o", tmp_path / "o.sci",
                         "--weights", w), str(tmp_path / "nope.npz"))
    _one_line_error(*run(capsys, "encode", files["dat"], "-o", tmp_path / "o.sci",
                         "--weights", w), str(files["dat"]), "--height")
    (tmp_path / "d.sci").mkdir()
    _one_line_error(*run(capsys, "encode", npz, "-o", tmp_path / "d.sci", "--weights", w),
                    str(tmp_path / "d.sci"), "is a folder")
    _one_line_error(*run(capsys, "encode", npz, "-o", tmp_path / "o.bin", "--weights", w),
                    str(tmp_path / "o.bin"), ".sci")
    _one_line_error(*run(capsys, "encode", npz, "-o", tmp_path / "o.sci", "--weights",
                         tmp_path / "nope.pt"), str(tmp_path / "nope.pt"))
    assert not (tmp_path / "o.sci").exists()
