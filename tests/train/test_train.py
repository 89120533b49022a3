import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skimage")

from sci_edge.errors import DataError  # noqa: E402
from sci_edge.models.pretrained import load_model  # noqa: E402
from sci_edge.train import load_config, train  # noqa: E402
from sci_edge.train.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402

TINY_MODEL = """
[model.fem]
dorsal_channels = 4
ventral_channels = 4
width = 8
pfu_layers = 1
[model.analysis]
neighbors = 2
stride = 7
width = 8
fuse_blocks = 1
"""


def _write(tmp_path, name, body):
    path = tmp_path / f"{name}.toml"
    path.write_text(body)
    return path


def _stage1(tmp_path, steps=40):
    body = f"""
stage = 1
task = "recon"
out_dir = "{tmp_path / 's1'}"
{TINY_MODEL}
[data]
size = [16, 16]
val_items = 4
[optim]
steps = {steps}
batch = 4
lr = 3e-3
warmup = 2
[log]
every = 5
eval_every = 20
checkpoint_every = 10
"""
    return _write(tmp_path, "s1", body)


def _rows(out_dir):
    return [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]


def test_stage1_lowers_loss_and_writes_checkpoint(tmp_path):
    cfg = load_config(_stage1(tmp_path), {"workers": 0})
    result = train(cfg, quiet=True)
    rows = _rows(tmp_path / "s1")
    assert rows[-1]["loss"] < 0.5 * rows[0]["loss"], (rows[0]["loss"], rows[-1]["loss"])
    assert {"val_psnr", "val_lap_l1", "val_lap_l2"} <= set(result)
    doc = load_checkpoint(tmp_path / "s1" / "final.pt")
    assert doc["kind"] == "fem" and doc["step"] == 40
    assert doc["train_config"]["stage"] == 1 and "package" in doc["code_version"]
    assert (tmp_path / "s1" / "log.csv").read_text().startswith("step,")


def test_stage2_recon_and_cls_resume(tmp_path):
    train(load_config(_stage1(tmp_path, steps=10), {"workers": 0}), quiet=True)
    init = tmp_path / "s1" / "final.pt"
    for task, data in (("recon", 'size = [16, 16]\nval_items = 2'),
                       ("cls", 'dataset = "smnist"\nsize = [32, 32]\nval_items = 8')):
        if task == "cls":
            from sci_edge.paths import shared_data
            if shared_data("mnist") is None:
                continue
        out = tmp_path / f"s2{task}"
        body = f"""
stage = 2
task = "{task}"
out_dir = "{out}"
init = "{init}"
workers = 0
{TINY_MODEL}
[data]
{data}
[optim]
steps = 6
batch = 2
[log]
every = 2
eval_every = 100
checkpoint_every = 3
"""
        cfg = load_config(_write(tmp_path, f"s2{task}", body))
        train(cfg, quiet=True)
        model = load_model(out / "final.pt")
        assert model.config.task == task
        # the frozen FEM is the stage-1 one
        fem_state = load_checkpoint(init)["state"]
        torch.testing.assert_close(model.fem.out.weight, fem_state["fem.out.weight"])
        # resume continues from last.pt to a larger step count
        cfg2 = load_config(_write(tmp_path, f"s2{task}", body.replace("steps = 6", "steps = 9")))
        result = train(cfg2, resume=True, quiet=True)
        assert result["step"] == 9
        steps = [r["step"] for r in _rows(out)]
        assert steps == sorted(steps) and steps[-1] == 9


def test_config_errors(tmp_path):
    with pytest.raises(DataError, match="config not found"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(DataError, match="not valid TOML"):
        load_config(_write(tmp_path, "bad", "stage = = 1"))
    with pytest.raises(DataError, match="unknown keys"):
        load_config(_write(tmp_path, "bad2", "stage = 1\n[optim]\nstepz = 3"))
    with pytest.raises(DataError, match="task must be recon"):
        load_config(_write(tmp_path, "bad3", 'stage = 1\ntask = "cls"\n[data]\ndataset="smnist"'))
    cfg = load_config(_write(tmp_path, "s2", 'stage = 2\ntask = "recon"'))
    with pytest.raises(DataError, match="needs init"):
        train(cfg, quiet=True)
    for name in ("stage1_fem", "stage2_recon", "stage2_cls"):
        assert load_config(name).optim.steps > 0


def test_checkpoint_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    with pytest.raises(DataError, match="not a readable checkpoint"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"format": "something"}, other)
    with pytest.raises(DataError, match="not a sci_edge checkpoint"):
        load_checkpoint(other)
    fem_only = save_checkpoint(tmp_path / "fem.pt", kind="fem", model_config={}, state={})
    with pytest.raises(DataError, match="only the FEM"):
        load_model(fem_only)


def test_ddp_two_cpu_processes(tmp_path):
    cfg = _stage1(tmp_path, steps=6)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "sci_edge.cli.main", "train", "--stage", "1", "--task", "recon", "--config",
           str(cfg), "--quiet"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    doc = load_checkpoint(tmp_path / "s1" / "final.pt")
    assert doc["step"] == 6
    assert '"step": 6' in res.stdout
