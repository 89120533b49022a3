import json
import shutil

import numpy as np
import pytest
from PIL import Image

from sci_edge.cli.main import main
from sci_edge.io import read_dat, read_npz, write_dat, write_npz
from sci_edge.recon import tfp


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_on_every_command(capsys):
    for cmd in ([], ["simulate"], ["info"], ["reconstruct"], ["bench"], ["bench", "sim"],
                ["demo"]):
        with pytest.raises(SystemExit) as info:
            main(cmd + ["--help"])
        assert info.value.code == 0
        assert "usage" in capsys.readouterr().out


def test_info_dat_and_npz(capsys, tmp_path, random_spikes):
    spikes = random_spikes(20, 8, 16)
    dat = write_dat(tmp_path / "s.dat", spikes)
    code, out, _ = run(capsys, "info", dat, "--height", 8, "--width", 16, "--json")
    assert code == 0
    doc = json.loads(out)
    assert (doc["frames"], doc["height"], doc["width"]) == (20, 8, 16)
    assert doc["mean_rate"] == pytest.approx(spikes.mean())
    npz = write_npz(tmp_path / "s.npz", spikes)
    code, out, _ = run(capsys, "info", npz)
    assert code == 0 and "20 frames of 8x16" in out


def test_reconstruct_pngs_and_gif(capsys, tmp_path, random_spikes):
    spikes = random_spikes(30, 8, 16)
    dat = write_dat(tmp_path / "s.dat", spikes)
    out_dir = tmp_path / "rec"
    code, out, err = run(capsys, "reconstruct", dat, "--height", 8, "--width", 16, "--method",
                         "tfp", "--gain", 0.5, "--at", "5,10", "--window", 3, "-o", out_dir)
    assert code == 0, err
    img = np.asarray(Image.open(out_dir / "frame_10.png"), np.float32) / 255
    np.testing.assert_allclose(img, tfp(spikes, 10, 3, 0.5), atol=1 / 255)
    assert (out_dir / "frame_5.png").exists()
    code, _, err = run(capsys, "reconstruct", dat, "--height", 8, "--width", 16, "--method",
                       "tfi", "--at", "0:30:10", "-o", tmp_path / "r.gif", "--gif")
    assert code == 0, err
    with Image.open(tmp_path / "r.gif") as gif:
        assert gif.n_frames == 3


@pytest.mark.parametrize("argv, needle", [
    (["info", "{d}/missing.dat", "--height", "4", "--width", "8"], "not found"),
    (["info", "{d}/s.dat"], "--height and --width"),
    (["info", "{d}/s.dat", "--height", "5", "--width", "8"], "not a multiple"),
    (["reconstruct", "{d}/s.dat", "--height", "4", "--width", "8", "--at", "99", "-o", "{d}/o"],
     "past the last frame"),
    (["reconstruct", "{d}/f.npz", "-o", "{d}/o"], "layout"),
    (["info", "{d}/s.txt"], "unknown spike file type"),
])
def test_errors_are_one_line(capsys, tmp_path, random_spikes, argv, needle):
    write_dat(tmp_path / "s.dat", random_spikes(3, 4, 8))
    np.savez(tmp_path / "f.npz", x=random_spikes(3, 4, 8))
    (tmp_path / "s.txt").write_text("x")
    code, out, err = run(capsys, *[a.format(d=tmp_path) for a in argv])
    assert code == 2
    assert needle in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_option_values(capsys, tmp_path):
    for argv in (["reconstruct", "x.dat", "--at", "a,b", "-o", "o"],
                 ["reconstruct", "x.dat", "--gain", "-1", "-o", "o"],
                 ["simulate", "camera", "-o", "x.dat", "--size", "10by10"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        assert "error" in capsys.readouterr().err


def test_bench_sim_json(capsys):
    code, out, _ = run(capsys, "bench", "sim", "--size", "32x64", "--frames", "3",
                       "--steps-per-frame", "4", "--repeats", "1", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["benchmark"] == "sim" and doc["bit_exact_vs_reference"] is True
    assert doc["kernel_pixel_steps_per_s"] > 0 and doc["reference_pixel_steps_per_s"] > 0
    assert doc["simulate_pixel_steps_per_s"] > 0 and doc["simulate_packed_pixel_steps_per_s"] > 0
    assert doc["kernel_generic_pixel_steps_per_s"] > 0 and doc["simd"] in ("avx2", "generic")


def test_simulate_folder_and_video(capsys, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 12), 60 * i, np.uint8)).save(frames / f"f{i:02d}.png")
    code, out, err = run(capsys, "simulate", frames, "-o", tmp_path / "s.npz", "--alpha", 1.0,
                         "--steps-per-frame", 3, "--quiet")
    assert code == 0, err
    spikes = read_npz(tmp_path / "s.npz")
    assert spikes.shape == (1 + 3 * 3, 8, 12)
    # animated GIF as a video
    ims = [Image.fromarray(np.full((8, 12), 100 + 50 * i, np.uint8)) for i in range(3)]
    ims[0].save(tmp_path / "v.gif", save_all=True, append_images=ims[1:])
    code, _, err = run(capsys, "simulate", tmp_path / "v.gif", "-o", tmp_path / "v.dat", "--quiet")
    assert code == 0, err
    assert read_dat(tmp_path / "v.dat", 8, 12).shape == (3, 8, 12)


def test_simulate_mp4_with_ffmpeg(capsys, tmp_path):
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("ffmpeg/ffprobe not installed (apt-get install ffmpeg)")
    import subprocess
    video = tmp_path / "v.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                    "testsrc=size=64x48:rate=10:duration=1", "-pix_fmt", "yuv420p", str(video)],
                   check=True)
    code, _, err = run(capsys, "simulate", video, "-o", tmp_path / "v.npz", "--quiet")
    assert code == 0, err
    assert read_npz(tmp_path / "v.npz").shape == (10, 48, 64)


def test_simulate_errors(capsys, tmp_path):
    code, _, err = run(capsys, "simulate", tmp_path / "nope.png", "-o", tmp_path / "x.dat")
    assert code == 2 and "not found" in err
    code, _, err = run(capsys, "simulate", tmp_path, "-o", tmp_path / "x.bin")
    assert code == 2 and ".dat or .npz" in err
    code, _, err = run(capsys, "simulate", tmp_path, "-o", tmp_path / "x.dat")
    assert code == 2 and "no image files" in err
    assert not (tmp_path / "x.dat").exists()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    code, _, err = run(capsys, "simulate", bad, "-o", tmp_path / "x.dat")
    assert code == 2 and "bad.png" in err
