"""The CLI built from command modules: --json, errors and exit codes, output checks,
streaming input, --gain auto, video output, the layout hint."""
import argparse
import importlib
import json
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
from PIL import Image

from sci_edge.cli import common
from sci_edge.cli import main as cli_main
from sci_edge.cli.main import COMMANDS, build_parser, main
from sci_edge.errors import MissingDependencyError, OutputError
from sci_edge.io import ArraySource, read_npz, write_dat, write_npz
from sci_edge.io.stats import estimate_gain
from sci_edge.recon import tfi_many, tfp_many


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _leaves(parser, prefix=()):
    subs = list(_subparsers(parser))
    if not subs:
        yield prefix, parser
    for name, p in subs:
        yield from _leaves(p, prefix + (name,))


# --- 1. one module per command group ---------------------------------------------------------
def test_parser_is_built_from_the_command_modules():
    parser = build_parser()
    assert [name for name, _ in _subparsers(parser)] == list(COMMANDS)
    for name in COMMANDS:
        assert callable(importlib.import_module(f"sci_edge.cli.{name}").register)
    leaves = list(_leaves(parser))
    assert len(leaves) >= 10
    for path, p in leaves:
        assert callable(p.get_default("handler")), path
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{' '.join(path)} {action.dest} has no help text"


def test_a_new_command_group_is_one_module_and_one_entry(capsys, monkeypatch):
    mod = types.ModuleType("sci_edge.cli.hello")

    def register(sub):
        p = sub.add_parser("hello", help="say hello")
        common.add_json(p)
        p.set_defaults(handler=lambda ns: common.report(ns, {"hello": 1}, "hello") or 0)
    mod.register = register
    monkeypatch.setitem(sys.modules, "sci_edge.cli.hello", mod)
    monkeypatch.setattr(cli_main, "COMMANDS", COMMANDS + ("hello",))
    assert run(capsys, "hello") == (0, "hello\n", "")
    code, out, _ = run(capsys, "hello", "--json")
    assert code == 0 and json.loads(out) == {"hello": 1}


def test_bench_text_without_json_and_only_json_with_it(capsys):
    argv = ["bench", "sim", "--size", "16x32", "--frames", "2", "--steps-per-frame", "2",
            "--repeats", "1"]
    code, out, err = run(capsys, *argv)
    assert code == 0 and err == ""
    assert "IF simulator 16x32" in out and "{" not in out
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0 and json.loads(out)["benchmark"] == "sim" and err == ""
    code, _, err = run(capsys, "bench", "sim", "--frames", "1")
    assert code == 2 and "--frames >= 2" in err


def test_simulate_and_reconstruct_json(capsys, tmp_path, random_spikes):
    code, out, err = run(capsys, "simulate", "camera" if _has_skimage() else _an_image(tmp_path),
                         "-o", tmp_path / "s.npz", "--size", "16x24", "--steps", "40",
                         "--quiet", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["output"] == str(tmp_path / "s.npz") and doc["steps"] == 40
    assert (doc["height"], doc["width"]) == (16, 24) and doc["seconds"] >= 0
    code, out, err = run(capsys, "reconstruct", tmp_path / "s.npz", "--at", "10,20",
                         "--gain", "0.6", "-o", tmp_path / "rec", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["method"] == "tfp" and doc["times"] == [10, 20] and doc["gain"] == 0.6
    assert doc["files"] == [str(tmp_path / "rec" / f"frame_{t}.png") for t in (10, 20)]
    assert doc["seconds_per_frame"] >= 0 and doc["gain_source"] == "option"
    # text mode: a readable line on stdout
    code, out, _ = run(capsys, "reconstruct", tmp_path / "s.npz", "-o", tmp_path / "rec")
    assert code == 0 and out.startswith("wrote 1 TFP image(s)")


def _has_skimage():
    return importlib.util.find_spec("skimage") is not None


def _an_image(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray((np.arange(16 * 24).reshape(16, 24) % 256).astype(np.uint8)).save(path)
    return path


# --- 3. errors and exit codes --------------------------------------------------------------------
def _raising(exc):
    def handler(ns):
        raise exc
    return handler


def test_a_bug_keeps_its_traceback(monkeypatch, capsys, tmp_path, random_spikes):
    import sci_edge.cli.info as info

    npz = write_npz(tmp_path / "s.npz", random_spikes(4, 4, 8))
    for exc in (RuntimeError("boom"), ValueError("bad"), TypeError("oops"), KeyError("k")):
        monkeypatch.setattr(info, "run", _raising(exc))
        with pytest.raises(type(exc)):
            main(["info", str(npz)])
    # as a program: exit status 1 and the traceback
    code = ("import sys, sci_edge.cli.info as m\n"
            "def boom(ns): raise RuntimeError('a bug')\n"
            "m.run = boom\n"
            "from sci_edge.cli.main import main\n"
            f"sys.exit(main(['info', {str(npz)!r}]))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 1
    assert "Traceback" in res.stderr and "RuntimeError: a bug" in res.stderr


@pytest.mark.parametrize("module, extra", [("torch", "train"), ("fvcore", "train"),
                                           ("onnxruntime", "edge"), ("skimage", "data")])
def test_missing_optional_dependency_names_its_extra(monkeypatch, capsys, tmp_path, module,
                                                     extra):
    import sci_edge.cli.info as info

    monkeypatch.setattr(info, "run", _raising(ModuleNotFoundError(f"No module named "
                                                                   f"'{module}'", name=module)))
    code, _, err = run(capsys, "info", "x.npz")
    assert code == 2 and f"sci_edge[{extra}]" in err and module in err
    assert len(err.strip().splitlines()) == 1
    for other in {"train", "edge", "data"} - {extra}:
        assert f"[{other}]" not in err
    monkeypatch.setattr(info, "run", _raising(MissingDependencyError(module, extra, "a test")))
    code, _, err = run(capsys, "info", "x.npz")
    assert code == 2 and err.startswith("sci-edge info: error: ") and f"[{extra}]" in err


def test_a_missing_internal_module_is_a_bug(monkeypatch):
    import sci_edge.cli.info as info

    monkeypatch.setattr(info, "run", _raising(ModuleNotFoundError("x", name="sci_edge.nope")))
    with pytest.raises(ModuleNotFoundError):
        main(["info", "x.npz"])


def test_os_errors_on_user_paths_are_one_line(monkeypatch, capsys):
    import sci_edge.cli.info as info

    monkeypatch.setattr(info, "run", _raising(PermissionError(13, "Permission denied",
                                                              "/data/rec.dat")))
    code, _, err = run(capsys, "info", "x.npz")
    assert code == 2
    assert err == "sci-edge info: error: /data/rec.dat: permission denied\n"


def test_user_caused_value_errors_are_checked_up_front(capsys, tmp_path, random_spikes):
    dat = write_dat(tmp_path / "s.dat", random_spikes(30, 8, 16))
    pytest.importorskip("torch")
    code, _, err = run(capsys, "reconstruct", dat, "--height", 8, "--width", 16, "--method",
                       "sci", "--tile", 8, "-o", tmp_path / "o")
    assert code == 2 and "--tile must be >= 32" in err and not (tmp_path / "o").exists()
    code, _, err = run(capsys, "reconstruct", dat, "--height", 8, "--width", 16,
                       "--weights", "w.pt", "-o", tmp_path / "o")
    assert code == 2 and "--method sci only" in err


# --- 4. output paths are checked before any work -------------------------------------------
def test_reconstruct_output_checked_first(capsys, tmp_path, random_spikes):
    dat = write_dat(tmp_path / "s.dat", random_spikes(30, 8, 16))
    base = ["reconstruct", dat, "--height", 8, "--width", 16]
    (tmp_path / "file").write_text("x")
    # fails on the output, before even looking at the (missing) weights
    code, _, err = run(capsys, *base, "--method", "sci", "--weights", tmp_path / "none.pt",
                       "-o", tmp_path / "file")
    assert code == 2 and "file: exists and is not a folder" in err
    code, _, err = run(capsys, *base, "-o", tmp_path / "no" / "such" / "x.gif")
    assert code == 2 and "no such folder" in err
    # --gif with a name that is not .gif: refused, nothing written
    code, _, err = run(capsys, *base, "--gif", "-o", tmp_path / "anim.png")
    assert code == 2 and "-o must end in .gif with --gif" in err
    assert not list(tmp_path.glob("anim*"))
    # --gif with a folder: folder/reconstruction.gif
    (tmp_path / "outdir").mkdir()
    code, out, err = run(capsys, *base, "--gif", "--at", "5,10", "-o", tmp_path / "outdir")
    assert code == 0, err
    with Image.open(tmp_path / "outdir" / "reconstruction.gif") as gif:
        assert gif.n_frames == 2
    # a .gif name alone is a GIF too
    code, _, err = run(capsys, *base, "--at", "5,10", "-o", tmp_path / "b.gif")
    assert code == 0 and (tmp_path / "b.gif").is_file()


def test_unwritable_outputs_fail_before_work(capsys, tmp_path, random_spikes, monkeypatch):
    dat = write_dat(tmp_path / "s.dat", random_spikes(30, 8, 16))
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = common.os.access
    monkeypatch.setattr(common.os, "access",
                        lambda p, mode: False if str(p).startswith(str(locked))
                        else real_access(p, mode))
    import sci_edge.cli.reconstruct as rec

    monkeypatch.setattr(rec, "_tfp", _raising(AssertionError("work started")))
    for out in (locked, locked / "sub", locked / "r.gif"):
        code, _, err = run(capsys, "reconstruct", dat, "--height", 8, "--width", 16, "-o", out)
        assert code == 2 and "permission denied" in err, err
    code, _, err = run(capsys, "simulate", "camera", "-o", locked / "s.dat")
    assert code == 2 and "permission denied" in err
    code, _, err = run(capsys, "simulate", "camera", "-o", tmp_path / "nope" / "s.dat")
    assert code == 2 and "no such folder" in err
    (tmp_path / "f").write_text("x")
    code, _, err = run(capsys, "demo", "-o", tmp_path / "f")
    assert code == 2 and "exists and is not a folder" in err


def test_write_errors_name_the_users_path(tmp_path, monkeypatch):
    import tempfile

    from sci_edge.io import save_png

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".frame_1.png.x.part"))
    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(OutputError) as info:
        save_png(tmp_path / "frame_1.png", np.zeros((4, 4)))
    assert str(info.value) == f"{tmp_path / 'frame_1.png'}: permission denied"
    assert ".part" not in str(info.value) and "Errno" not in str(info.value)
    monkeypatch.undo()
    with pytest.raises(OutputError, match="no such folder"):
        save_png(tmp_path / "missing" / "a.png", np.zeros((4, 4)))
    (tmp_path / "d.png").mkdir()
    with pytest.raises(OutputError, match="d.png: is a folder"):
        save_png(tmp_path / "d.png", np.zeros((4, 4)))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


# --- 5. streaming input ----------------------------------------------------------------------


def test_tfp_reads_only_its_windows(rng):
    from sci_edge.cli.reconstruct import _tfp

    spikes = (rng.random((500, 6, 9)) < 0.3).astype(np.uint8)
    src = ArraySource(spikes)
    for times in ([250], [3, 100, 140], [490, 499]):
        got, n = _tfp(src, times, 20, 0.7)
        np.testing.assert_array_equal(got, tfp_many(spikes, times, 20, 0.7))
        assert n < 500
    assert src.frames_read < 3 * 200


def test_tfi_windowed_is_identical_to_all_frames(rng):
    from sci_edge.cli.reconstruct import _tfi

    spikes = (rng.random((3000, 6, 9)) < 0.2).astype(np.uint8)
    spikes[:, 0, 0] = 0                      # never fires: needs the whole recording
    spikes[:, 1, 1] = 0
    spikes[50, 1, 1] = spikes[2900, 1, 1] = 1   # one long interval
    for times in ([1500], [10, 20], [2990], [0, 2999]):
        got, _ = _tfi(ArraySource(spikes), times, 0.5)
        np.testing.assert_array_equal(got, tfi_many(spikes, times, 0.5))
    dense = (rng.random((3000, 6, 9)) < 0.3).astype(np.uint8)
    src = ArraySource(dense)
    got, n = _tfi(src, [1500, 1510], 0.5)
    np.testing.assert_array_equal(got, tfi_many(dense, [1500, 1510], 0.5))
    assert n < 1000 and src.frames_read < 1000


# --- 7. --gain auto ------------------------------------------------------------------------------
def test_estimate_gain_on_a_simulated_camera(rng):
    from sci_edge.sim import simulate

    lum = np.tile(np.linspace(0.1, 1.0, 40, dtype=np.float32), (30, 1))[None].repeat(2, 0)
    spikes = simulate(lum, alpha=0.6, steps_per_frame=399, seed=1)
    assert estimate_gain(spikes) == pytest.approx(0.6, abs=0.01)
    assert estimate_gain(spikes, max_frames=100) == pytest.approx(0.6, abs=0.03)
    assert estimate_gain(np.zeros((50, 4, 4), np.uint8)) == pytest.approx(1 / 50)
    assert estimate_gain(np.ones((50, 4, 4), np.uint8)) == 1.0
    with pytest.raises(ValueError):
        estimate_gain(spikes, quantile=0)


def test_info_and_reconstruct_gain_auto(capsys, tmp_path):
    from sci_edge.sim import simulate

    lum = np.tile(np.linspace(0.1, 1.0, 16, dtype=np.float32), (8, 1))[None].repeat(2, 0)
    npz = write_npz(tmp_path / "s.npz", simulate(lum, alpha=0.5, steps_per_frame=199, seed=0))
    code, out, _ = run(capsys, "info", npz, "--json")
    gain = json.loads(out)["gain_estimate"]
    assert code == 0 and gain == pytest.approx(0.5, abs=0.02)
    code, out, _ = run(capsys, "info", npz)
    assert "gain estimate" in out
    code, out, err = run(capsys, "reconstruct", npz, "--gain", "auto", "-o", tmp_path / "r",
                         "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["gain"] == pytest.approx(gain) and doc["gain_source"] == "auto"
    code, out, _ = run(capsys, "reconstruct", npz, "--gain", "AUTO", "-o", tmp_path / "r")
    assert code == 0 and "(auto)" in out
    for bad in ("0", "-2", "best", "nan"):
        with pytest.raises(SystemExit):
            main(["reconstruct", str(npz), "--gain", bad, "-o", str(tmp_path / "r")])
        assert "--gain takes 'auto' or a positive number" in capsys.readouterr().err


# --- 8. video output -------------------------------------------------------------------------------
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                  reason="ffmpeg/ffprobe not installed (apt-get install ffmpeg)")


def _frame_count(path):
    res = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                          "-show_entries", "stream=nb_read_frames,width,height", "-of",
                          "json", str(path)], capture_output=True, text=True, check=True)
    s = json.loads(res.stdout)["streams"][0]
    return int(s["nb_read_frames"]), s["width"], s["height"]


@needs_ffmpeg
@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".avi"])
def test_reconstruct_writes_a_video(capsys, tmp_path, random_spikes, suffix):
    dat = write_dat(tmp_path / "s.dat", random_spikes(40, 9, 15))
    out = tmp_path / f"rec{suffix}"
    code, stdout, err = run(capsys, "reconstruct", dat, "--height", 9, "--width", 15, "--at",
                            "0:40:5", "--fps", 5, "-o", out, "--json")
    assert code == 0, err
    assert json.loads(stdout)["files"] == [str(out)]
    assert _frame_count(out) == (8, 16, 10)   # odd sizes padded to even
    assert {p.name for p in tmp_path.iterdir()} == {out.name, "s.dat"}   # no temp files left


@needs_ffmpeg
def test_video_writer_leaves_nothing_on_failure(tmp_path):
    from sci_edge.io.video import write_video

    frames = [np.zeros((8, 8)), np.zeros((8, 8)), np.zeros((4, 4))]
    with pytest.raises(ValueError, match="frame of size"):
        write_video(tmp_path / "v.mp4", frames)
    assert list(tmp_path.iterdir()) == []
    write_video(tmp_path / "v.mp4", (np.full((8, 8), i / 4) for i in range(5)), fps=25)
    assert _frame_count(tmp_path / "v.mp4") == (5, 8, 8)


def test_video_without_ffmpeg_is_a_clear_error(capsys, tmp_path, random_spikes, monkeypatch):
    import sci_edge.io.video as video

    monkeypatch.setattr(video.shutil, "which", lambda name: None)
    dat = write_dat(tmp_path / "s.dat", random_spikes(20, 8, 8))
    code, _, err = run(capsys, "reconstruct", dat, "--height", 8, "--width", 8, "-o",
                       tmp_path / "r.mp4")
    assert code == 2 and "ffmpeg" in err and "not installed" in err
    assert not (tmp_path / "r.mp4").exists()


# --- 9. the layout hint speaks CLI -------------------------------------------------------------------
def test_layout_hint_names_the_option(capsys, tmp_path, random_spikes):
    np.savez(tmp_path / "f.npz", x=random_spikes(3, 4, 8))
    for cmd in ("info", "reconstruct"):
        code, _, err = run(capsys, cmd, tmp_path / "f.npz", *(["-o", tmp_path / "o"]
                                                              if cmd == "reconstruct" else []))
        assert code == 2 and "--layout THW|HWT" in err and "layout='THW'" not in err
    code, out, _ = run(capsys, "info", tmp_path / "f.npz", "--layout", "THW", "--json")
    assert code == 0 and json.loads(out)["frames"] == 3


def test_progress_bars_are_on_stderr_and_quiet_turns_them_off(monkeypatch):
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    with common.progress(3, "work", quiet=True) as bar:
        bar.update(3)
    assert sys.stderr.getvalue() == ""
    with common.progress(3, "work") as bar:
        bar.update(3)
    assert "work" in sys.stderr.getvalue()
    monkeypatch.setattr(sys, "stderr", io.StringIO())   # not a terminal: no bar
    with common.progress(3, "work") as bar:
        bar.update(3)
    assert sys.stderr.getvalue() == ""


def test_reconstruct_sci_passes_the_source_and_a_progress_callback(capsys, tmp_path,
                                                                   random_spikes, monkeypatch):
    pytest.importorskip("torch")
    from sci_edge.io import SpikeSource

    calls = {}

    class FakeModel:
        def reconstruct(self, spikes, times, gain, *, ensemble=False, tile=None, device=None,
                        reach=None, lookahead=None, progress=None):
            calls.update(source=spikes, times=list(times), gain=gain, reach=reach,
                         lookahead=lookahead)
            for _ in times:
                progress(1)
            return np.zeros((len(times), spikes.height, spikes.width), np.float32)

    import sci_edge.models.pretrained as pretrained

    monkeypatch.setattr(pretrained, "load_pretrained", lambda task, path=None: FakeModel())
    dat = write_dat(tmp_path / "s.dat", random_spikes(30, 8, 16))
    code, out, err = run(capsys, "reconstruct", dat, "--height", 8, "--width", 16, "--method",
                         "sci", "--at", "5,6", "--gain", "0.5", "-o", tmp_path / "r", "--json")
    assert code == 0, err
    assert isinstance(calls["source"], SpikeSource) and calls["times"] == [5, 6]
    assert json.loads(out)["method"] == "sci"
    assert (tmp_path / "r" / "frame_6.png").is_file()
    assert calls["reach"] is None and calls["lookahead"] is None
    # the propagation's bounds reach the model; other methods refuse them
    code, out, err = run(capsys, "reconstruct", dat, "--height", 8, "--width", 16, "--method",
                         "sci", "--at", "5", "--gain", "0.5", "-o", tmp_path / "q",
                         "--max-reach", 40, "--lookahead", 0)
    assert code == 0, err
    assert calls["reach"] == 40 and calls["lookahead"] == 0
    code, out, err = run(capsys, "reconstruct", dat, "--height", 8, "--width", 16, "--method",
                         "tfp", "--at", "5", "-o", tmp_path / "p", "--lookahead", 0)
    assert code != 0 and "--lookahead" in err


def test_npz_round_trip_still_reads(tmp_path, random_spikes):
    spikes = random_spikes(5, 4, 8)
    assert np.array_equal(read_npz(write_npz(tmp_path / "a.npz", spikes)), spikes)
