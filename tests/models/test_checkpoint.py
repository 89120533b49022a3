"""Checkpoint I/O lives with the models: loading a model needs no training code."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from sci_edge.errors import CheckpointError  # noqa: E402
from sci_edge.models.checkpoint import FORMAT, load_checkpoint, save_checkpoint  # noqa: E402
from sci_edge.models.pretrained import SHIPPED, load_model, pretrained_path  # noqa: E402
from sci_edge.models.sci import SCIConfig, SCIModel  # noqa: E402


def test_pretrained_imports_no_training_code():
    # torch itself loads some torch.distributed modules: count only what our import adds
    code = ("import json, sys, torch\n"
            "before = set(sys.modules)\n"
            "import sci_edge.models.pretrained\n"
            "new = set(sys.modules) - before\n"
            "print(json.dumps(sorted(m for m in new if m.startswith(('sci_edge.train', "
            "'sci_edge.data', 'torch.distributed', 'torch.utils.data.distributed', 'tqdm')))))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    loaded = json.loads(res.stdout.strip().splitlines()[-1])
    assert loaded == [], loaded


def _tiny(task="recon"):
    from sci_edge.models.cloud.analysis import AnalysisConfig
    from sci_edge.models.end.fem import FEMConfig

    return SCIModel(SCIConfig(task=task, fem=FEMConfig(4, 4, 8, 1),
                              analysis=AnalysisConfig(1, 7, 8, 1)))


def test_round_trip_with_weights_only(tmp_path):
    model = _tiny()
    path = save_checkpoint(tmp_path / "sub" / "w.pt", kind="sci",
                           model_config=model.config.to_dict(), state=model.state_dict(),
                           train_config={"stage": 2}, step=7, metrics={"val_psnr": 30.0},
                           optimizer={"state": {}, "param_groups": []}, elapsed_s=12.5)
    raw = torch.load(path, weights_only=True)          # plain data: no pickled code
    assert raw["format"] == FORMAT and raw["elapsed_s"] == 12.5
    doc = load_checkpoint(path)
    assert (doc["kind"], doc["step"], doc["metrics"]) == ("sci", 7, {"val_psnr": 30.0})
    assert "package" in doc["code_version"] and "torch" in doc["code_version"]
    state = model.state_dict()
    assert doc["state"].keys() == state.keys()
    assert all(torch.equal(doc["state"][k], state[k]) for k in state)
    loaded = load_model(path)
    assert loaded.config == model.config
    assert not list(tmp_path.glob("sub/.*.part"))       # written atomically


def test_export_strips_optimizer(tmp_path):
    pytest.importorskip("skimage")            # sci_edge.train needs the train extra
    from sci_edge.train.export import export_weights

    model = _tiny("cls")
    src = save_checkpoint(tmp_path / "t.pt", kind="sci", model_config=model.config.to_dict(),
                          state=model.state_dict(), step=3, elapsed_s=1.0,
                          optimizer={"state": {}, "param_groups": []})
    out = export_weights(src, tmp_path / "w.pt")
    doc = load_checkpoint(out)
    assert "optimizer" not in doc and "elapsed_s" not in doc and doc["step"] == 3
    assert load_model(out).config.task == "cls"


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="none.pt: checkpoint not found") as info:
        load_checkpoint(tmp_path / "none.pt")
    assert info.value.path == tmp_path / "none.pt"
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: not a sci_edge checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"format": FORMAT, "kind": "sci"}, tmp_path / "short.pt")
    with pytest.raises(CheckpointError, match="short.pt: checkpoint lacks 'model_config'"):
        load_checkpoint(tmp_path / "short.pt")
    # pickled code is refused, not run
    torch.save({"format": FORMAT, "kind": "sci", "model_config": {}, "state": {},
                "x": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    # a model_config that does not validate, or weights that do not fit it
    model = _tiny()
    bad = save_checkpoint(tmp_path / "bad.pt", kind="sci", model_config={
        "analysis": {"neighbors": 0}}, state=model.state_dict())
    with pytest.raises(CheckpointError, match="bad.pt: model_config: analysis.neighbors: must "
                                              "be >= 1"):
        load_model(bad)
    wrong = save_checkpoint(tmp_path / "wrong.pt", kind="sci", model_config=SCIConfig().to_dict(),
                            state=model.state_dict())
    with pytest.raises(CheckpointError, match="wrong.pt: weights do not fit") as info:
        load_model(wrong)
    assert "\n" not in str(info.value)


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled",))


@pytest.mark.parametrize("task", sorted(SHIPPED))
def test_shipped_weights_still_load(task):
    path = pretrained_path(task)
    if not path.is_file():
        pytest.skip(f"{path.name} not shipped in this checkout")
    doc = load_checkpoint(path)
    config = SCIConfig.from_dict(doc["model_config"])
    made = config.to_dict()
    # fields added since (the propagation, the rate integration) take their defaults: off
    assert {k: v for k, v in made.items() if k in doc["model_config"]} == doc["model_config"]
    assert set(made) - set(doc["model_config"]) <= {"propagation", "rate"}
    assert "propagation" in doc["model_config"] or not config.propagation.enabled
    assert "rate" in doc["model_config"] or not config.rate.enabled
    assert load_model(path).config == config
