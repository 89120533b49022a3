import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sci_edge.cli.main import main  # noqa: E402
from sci_edge.io import write_dat  # noqa: E402
from sci_edge.models import SCIConfig, SCIModel  # noqa: E402
from sci_edge.models.cloud.analysis import AnalysisConfig  # noqa: E402
from sci_edge.models.end.fem import FEMConfig  # noqa: E402
from sci_edge.models.pretrained import SHIPPED, load_pretrained, pretrained_path  # noqa: E402
from sci_edge.models.checkpoint import save_checkpoint  # noqa: E402


def _tiny_checkpoint(path, task="recon"):
    torch.manual_seed(0)
    model = SCIModel(SCIConfig(task=task, fem=FEMConfig(4, 4, 8, 1),
                               analysis=AnalysisConfig(2, 7, 8, 1)))
    return save_checkpoint(path, kind="sci", model_config=model.config.to_dict(),
                           state=model.state_dict())


def test_reconstruct_sci_method(capsys, tmp_path, random_spikes):
    weights = _tiny_checkpoint(tmp_path / "w.pt")
    dat = write_dat(tmp_path / "s.dat", random_spikes(30, 8, 16))
    code = main(["reconstruct", str(dat), "--height", "8", "--width", "16", "--method", "sci",
                 "--weights", str(weights), "--gain", "0.6", "--at", "3,15", "-o",
                 str(tmp_path / "rec")])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "rec" / "frame_15.png").is_file()
    code = main(["reconstruct", str(dat), "--height", "8", "--width", "16", "--method", "sci",
                 "--weights", str(weights), "--ensemble", "--tile", "32", "--at", "15", "-o",
                 str(tmp_path / "rec_ens")])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "rec_ens" / "frame_15.png").is_file()
    code = main(["reconstruct", str(dat), "--height", "8", "--width", "16", "--method", "tfp",
                 "--ensemble", "-o", str(tmp_path / "rec3")])
    assert code == 2 and "--method sci only" in capsys.readouterr().err
    # a classifier cannot reconstruct
    cls = _tiny_checkpoint(tmp_path / "c.pt", task="cls")
    code = main(["reconstruct", str(dat), "--height", "8", "--width", "16", "--method", "sci",
                 "--weights", str(cls), "-o", str(tmp_path / "rec2")])
    assert code == 2 and "not 'recon'" in capsys.readouterr().err
    # too short for one FEM window: the error names the file
    short = write_dat(tmp_path / "short.dat", random_spikes(12, 8, 16))
    code = main(["reconstruct", str(short), "--height", "8", "--width", "16", "--method", "sci",
                 "--weights", str(weights), "-o", str(tmp_path / "rec4")])
    err = capsys.readouterr().err
    assert code == 2 and "short.dat" in err and "at least 13" in err
    assert not (tmp_path / "rec4").exists()


def test_bench_tfilter_and_flops(capsys):
    assert main(["bench", "tfilter", "--size", "32x48", "--repeats", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["bit_exact_vs_torch"] is True and doc["filters"] == 64
    pytest.importorskip("fvcore")
    assert main(["bench", "flops", "--size", "64x64", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    # FEM budget: <= 2 GFLOPs per feature frame at 256x256 scales as pixels
    assert doc["end_side_fem_flops_per_feature_frame"] * 16 <= 2e9


def test_fem_budget_at_256():
    pytest.importorskip("fvcore")
    from sci_edge.profiling import sci_flops

    doc = sci_flops(SCIModel(), 256, 256)
    assert doc["end_side_fem_gflops"] <= 2.0


def test_train_and_eval_errors(capsys, tmp_path):
    assert main(["train", "--stage", "2", "--task", "cls", "--config", "stage1_fem"]) == 2
    assert "not stage 2 / cls" in capsys.readouterr().err
    assert main(["eval", "recon", "--weights", str(tmp_path / "none.pt")]) == 2
    assert "not found" in capsys.readouterr().err
    for bad in ("2:1", "-1", "fast", "1:2:3", "inf"):
        with pytest.raises(SystemExit):
            main(["eval", "recon", "--speeds", bad])
        assert "speeds must be" in capsys.readouterr().err
    for bad in ("0", "0:0.5", "0.9:0.3", "dim"):
        with pytest.raises(SystemExit):
            main(["eval", "recon", "--gains", bad])
        assert "gains must be" in capsys.readouterr().err
    for opt in ("--speeds", "--gains"):
        assert main(["eval", "recon", "--data", "reds", opt, "1:2"]) == 2
        assert "--data scenes only" in capsys.readouterr().err
    for bad in ("fp16", "int8,int4", ""):
        with pytest.raises(SystemExit):
            main(["eval", "cls", "--edge", bad])
        assert "--edge takes fp32 and/or int8" in capsys.readouterr().err


@pytest.mark.parametrize("task", sorted(SHIPPED))
def test_shipped_weights_load(task):
    path = pretrained_path(task)
    if not path.is_file():
        pytest.skip(f"{path.name} not shipped in this checkout")
    assert path.stat().st_size < 5 * 2**20
    model = load_pretrained(task)
    assert model.config.task == task and not model.training
    x = (torch.rand(1, model.num_features, 13, 24, 24) < 0.3).float()
    out = model(x)
    assert torch.isfinite(out).all()


def test_loaded_models_are_channels_last_with_the_same_output(tmp_path):
    path = _tiny_checkpoint(tmp_path / "w.pt")
    model = load_pretrained("recon", path=path)
    plain = SCIModel(model.config)
    plain.load_state_dict(torch.load(path, weights_only=True)["state"])
    plain.eval()
    # 3x3 kernels over several channels, where the two layouts differ
    names = [n for n, w in plain.named_parameters()
             if w.ndim == 4 and w.shape[1] > 1 and w.shape[2] > 1]
    assert names
    loaded = dict(model.named_parameters())
    for n in names:
        assert loaded[n].is_contiguous(memory_format=torch.channels_last)
        assert not loaded[n].is_contiguous() and dict(plain.named_parameters())[n].is_contiguous()
    x = (torch.rand(2, model.num_features, 13, 20, 28) < 0.3).float()
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x), rtol=0, atol=1e-5)


def test_shipped_models_read_one_feature_stream():
    paths = [pretrained_path(task) for task in sorted(SHIPPED)]
    if not all(p.is_file() for p in paths):
        pytest.skip("the shipped weights are not in this checkout")
    recon, cls = load_pretrained("recon"), load_pretrained("cls")
    # one end-side stream serves both tasks: same FEM, same feature times
    assert recon.config.analysis.neighbors == cls.config.analysis.neighbors
    assert recon.config.analysis.stride == cls.config.analysis.stride
    a, b = recon.fem.state_dict(), cls.fem.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_reconstruct_sci_on_real_recording(capsys, tmp_path):
    from PIL import Image

    from sci_edge.recon import tfp
    from tests.conftest import need_shared

    car = need_shared("real_spikes", "real", "hist_sflow_car_250x400.dat")
    if not pretrained_path("recon").is_file():
        pytest.skip("sci_recon.pt not shipped in this checkout")
    code = main(["reconstruct", str(car), "--height", "250", "--width", "400", "--method", "sci",
                 "--gain", "0.8", "--at", "100", "-o", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    img = np.asarray(Image.open(tmp_path / "frame_100.png"), np.float32) / 255
    assert img.shape == (250, 400)
    # same scene as the classic estimate, in the same intensity units
    from sci_edge.io import read_dat
    ref = tfp(read_dat(car, 250, 400), 100, 20, 0.8)
    assert np.corrcoef(img.ravel(), ref.ravel())[0, 1] > 0.9
    assert abs(img.mean() - ref.mean()) < 0.05


def test_eval_text_or_json(capsys, tmp_path):
    pytest.importorskip("skimage")
    weights = _tiny_checkpoint(tmp_path / "w.pt")
    argv = ["eval", "recon", "--weights", str(weights), "--limit", "1"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.startswith("scenes: 1 frames  SCI") and err == ""
    assert main(argv + ["--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["frames"] == 1 and err == ""


def test_reconstruct_sci_json_reports_the_run(capsys, tmp_path, random_spikes):
    weights = _tiny_checkpoint(tmp_path / "w.pt")
    dat = write_dat(tmp_path / "s.dat", random_spikes(30, 8, 16))
    assert main(["reconstruct", str(dat), "--height", "8", "--width", "16", "--method", "sci",
                 "--weights", str(weights), "--gain", "auto", "--at", "10,12", "--quiet",
                 "-o", str(tmp_path / "rec"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["method"] == "sci" and doc["gain_source"] == "auto" and 0 < doc["gain"] <= 1
    assert doc["times"] == [10, 12] and len(doc["files"]) == 2
