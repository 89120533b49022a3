import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skimage")

from sci_edge.errors import DataError  # noqa: E402
from sci_edge.eval import evaluate_cls, evaluate_recon  # noqa: E402
from sci_edge.models import SCIConfig, SCIModel  # noqa: E402
from sci_edge.models.cloud.analysis import AnalysisConfig  # noqa: E402
from sci_edge.models.end.fem import FEMConfig  # noqa: E402
from tests.conftest import need_shared  # noqa: E402

TINY = dict(fem=FEMConfig(4, 4, 8, 1), analysis=AnalysisConfig(2, 7, 8, 1))


def test_recon_scenes_rows_and_means():
    torch.manual_seed(0)
    model = SCIModel(SCIConfig(**TINY))
    doc = evaluate_recon(model, data="scenes", limit=2, size=(32, 32))
    assert doc["frames"] == 2 and len(doc["rows"]) == 2
    for key in ("sci_psnr", "sci_ssim", "tfp_psnr", "tfi_psnr", "tfp_best_psnr"):
        assert np.isfinite(doc["mean"][key])
    assert doc["sci_minus_tfp_db"] == pytest.approx(doc["mean"]["sci_psnr"] - doc["mean"]["tfp_psnr"])
    ens = evaluate_recon(model, data="scenes", limit=1, size=(32, 32), ensemble=True)
    assert ens["rows"][0]["sci_psnr"] == pytest.approx(doc["rows"][0]["sci_psnr"])
    assert np.isfinite(ens["mean"]["sci_ens_psnr"]) and "sci_ens_minus_tfp_db" in ens
    fast = evaluate_recon(None, data="scenes", limit=3, size=(32, 32), speeds=(2.5, 3.0),
                          gains=(0.05, 0.1))
    assert fast["speeds"] == [2.5, 3.0] and fast["gains"] == [0.05, 0.1]
    assert all(0.05 <= r["gain"] <= 0.1 for r in fast["rows"])
    assert all(2.5 <= float(r["name"].split("_")[-1][:-2]) <= 3.0 for r in fast["rows"])
    base = evaluate_recon(None, data="scenes", limit=2, size=(32, 32))
    assert base["mean"]["tfp_psnr"] == pytest.approx(doc["mean"]["tfp_psnr"])
    with pytest.raises(ValueError, match="scenes"):
        evaluate_recon(None, data="imagenet")


def test_recon_scenes_from_a_folder_of_photographs(tmp_path):
    from PIL import Image

    from sci_edge.data import load_image
    from sci_edge.errors import DataError

    for name in ("brick", "camera"):
        Image.fromarray((load_image(name) * 255).astype(np.uint8)).save(tmp_path / f"{name}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    doc = evaluate_recon(None, data="scenes", root=tmp_path, limit=4, size=(32, 32))
    assert doc["frames"] == 4
    assert {r["name"].split("_")[1] for r in doc["rows"]} <= {"brick", "camera"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        evaluate_recon(None, data="scenes", root=tmp_path / "empty", limit=1)
    with pytest.raises(DataError, match="not a folder"):
        evaluate_recon(None, data="scenes", root=tmp_path / "brick.png", limit=1)


def test_recon_reds_baselines():
    need_shared("real_spikes", "sim_reds_spk2imgnet")
    doc = evaluate_recon(None, data="reds")
    psnrs = [r["tfp_psnr"] for r in doc["rows"]]
    np.testing.assert_allclose(psnrs, [31.55, 23.47, 23.73], atol=0.05)


def test_cls_report():
    need_shared("mnist")
    torch.manual_seed(0)
    model = SCIModel(SCIConfig(task="cls", **TINY))
    doc = evaluate_cls(model, limit=20, batch=8)
    assert doc["samples"] == 20
    assert 0.0 <= doc["accuracy"] <= 1.0
    assert np.array(doc["confusion"]).sum() == 20
    assert set(doc["per_class"]) == {str(c) for c in range(10)}


def test_cls_other_camera_settings():
    need_shared("mnist")
    from sci_edge.sim import NoiseModel

    torch.manual_seed(0)
    model = SCIModel(SCIConfig(task="cls", **TINY))
    base = evaluate_cls(model, limit=8, batch=8)
    assert base["setting"] == {"gain": 0.8, "speed": [0.05, 0.15], "size": 32,
                               "num_steps": model.config.span, "noise": None}
    doc = evaluate_cls(model, limit=8, batch=8, gain=0.5, speed=0.3, size=28,
                       noise=NoiseModel.realistic())
    assert doc["samples"] == 8
    assert doc["setting"]["gain"] == 0.5 and doc["setting"]["speed"] == [0.3, 0.3]
    assert doc["setting"]["size"] == 28 and doc["setting"]["noise"]["dark_rate"] > 0


def test_progress_callbacks():
    seen = []
    doc = evaluate_recon(None, data="scenes", limit=3, size=(32, 32), progress=seen.append)
    assert seen == [1, 1, 1] and doc["frames"] == 3
    need_shared("mnist")
    torch.manual_seed(0)
    model = SCIModel(SCIConfig(task="cls", **TINY))
    seen = []
    evaluate_cls(model, limit=10, batch=4, progress=seen.append)
    assert seen == [4, 4, 2]


def test_cls_through_the_device_fem():
    need_shared("mnist")
    pytest.importorskip("onnx", reason="onnx is not installed (pip install 'sci_edge[export]')")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from sci_edge.data.mnist import SMNIST

    torch.manual_seed(0)
    model = SCIModel(SCIConfig(task="cls", **TINY)).eval()
    cal = [SMNIST("train", num_steps=model.config.span, size=32, seed=5)[i][0] for i in range(2)]
    doc = evaluate_cls(model, limit=12, batch=8, edge=("fp32", "int8"), calibration=cal)
    fp32, int8 = doc["edge"]["fp32"], doc["edge"]["int8"]
    # the fp32 graph is the torch FEM to float rounding: same predictions
    assert fp32["same_prediction"] == 1.0 and fp32["accuracy"] == doc["accuracy"]
    assert fp32["drop_points"] == 0.0
    assert 0.0 <= int8["accuracy"] <= 1.0 and 0.0 <= int8["same_prediction"] <= 1.0
    assert int8["drop_points"] == pytest.approx(100 * (doc["accuracy"] - int8["accuracy"]))
    with pytest.raises(DataError, match="edge precisions"):
        evaluate_cls(model, limit=2, edge=("fp16",))
