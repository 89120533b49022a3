import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skimage")

from sci_edge.errors import CheckpointError, ConfigError  # noqa: E402
from sci_edge.models.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from sci_edge.models.pretrained import load_model  # noqa: E402
from sci_edge.train import load_config, train  # noqa: E402

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


def test_time_budget_stops_and_schedules(tmp_path):
    from sci_edge.train.loop import _lr_at

    cfg = load_config(_stage1(tmp_path, steps=100000), {"workers": 0,
                                                         "optim.time_budget_s": 3.0})
    assert _lr_at(10, cfg, 0.0) > 0.9 * cfg.optim.lr          # steps alone: barely decayed
    assert _lr_at(10, cfg, 1.5) == pytest.approx(cfg.optim.lr * (0.05 + 0.95 * 0.5))
    assert _lr_at(10, cfg, 10.0) == pytest.approx(0.05 * cfg.optim.lr)
    result = train(cfg, quiet=True)
    assert 1 <= result["step"] < 100000
    assert result["elapsed_s"] >= 3.0
    assert load_checkpoint(tmp_path / "s1" / "final.pt")["step"] == result["step"]


def test_init_and_init_cloud_fine_tuning(tmp_path):
    train(load_config(_stage1(tmp_path, steps=4), {"workers": 0}), quiet=True)
    first = tmp_path / "s1" / "final.pt"
    # stage 1 from an init starts from its FEM and light head
    cfg = load_config(_stage1(tmp_path, steps=1), {"workers": 0, "init": str(first),
                                                   "out_dir": str(tmp_path / "ft"),
                                                   "optim.lr": 1e-12})
    train(cfg, quiet=True)
    a, b = load_checkpoint(first)["state"], load_checkpoint(tmp_path / "ft" / "final.pt")["state"]
    for key in ("fem.out.weight", "light_head.conv1.weight"):
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0)
    body = f"""
stage = 2
task = "recon"
out_dir = "{tmp_path / 'c1'}"
init = "{first}"
workers = 0
{TINY_MODEL}
[data]
size = [16, 16]
val_items = 2
[optim]
steps = 2
batch = 2
[log]
eval_every = 100
"""
    train(load_config(_write(tmp_path, "c1", body)), quiet=True)
    c1 = load_checkpoint(tmp_path / "c1" / "final.pt")["state"]
    over = {"init_cloud": str(tmp_path / "c1" / "final.pt"), "out_dir": str(tmp_path / "c2"),
            "optim.lr": 1e-12, "optim.steps": 1}
    train(load_config(_write(tmp_path, "c2", body), over), quiet=True)
    c2 = load_checkpoint(tmp_path / "c2" / "final.pt")["state"]
    torch.testing.assert_close(c1["head.out.weight"], c2["head.out.weight"], atol=1e-6, rtol=0)
    # a cloud checkpoint of another shape, or a stage-1 one, is refused with its name
    wider = body.replace("width = 8\nfuse_blocks", "width = 12\nfuse_blocks")
    with pytest.raises(CheckpointError, match="c1.*do not match"):
        train(load_config(_write(tmp_path, "c3", wider), over), quiet=True)
    # stage I may also start from a full SCI model's FEM (no light head there)
    cfg = load_config(_stage1(tmp_path, steps=1), {"workers": 0, "out_dir": str(tmp_path / "f2"),
                                                   "init": str(tmp_path / "c1" / "final.pt"),
                                                   "optim.lr": 1e-12})
    train(cfg, quiet=True)
    f2 = load_checkpoint(tmp_path / "f2" / "final.pt")["state"]
    torch.testing.assert_close(f2["fem.out.weight"], c1["fem.out.weight"], atol=1e-6, rtol=0)
    # other neighbour counts: the merge layers start fresh, everything else is loaded
    k3 = body.replace("neighbors = 2\nstride = 7", "neighbors = 3\nstride = 5")
    assert k3 != body
    train(load_config(_write(tmp_path, "c5", k3), {**over, "out_dir": str(tmp_path / "c5")}),
          quiet=True)
    c5 = load_checkpoint(tmp_path / "c5" / "final.pt")["state"]
    torch.testing.assert_close(c1["analysis.encode.0.weight"], c5["analysis.encode.0.weight"],
                               atol=1e-6, rtol=0)
    assert c5["analysis.merge_prev.weight"].shape != c1["analysis.merge_prev.weight"].shape
    with pytest.raises(CheckpointError, match="stage-2 recon"):
        train(load_config(_write(tmp_path, "c4", body), {**over, "init_cloud": str(first)}),
              quiet=True)


def test_stage2_joint_fem_fine_tuning(tmp_path):
    from sci_edge.train.loop import Trainer

    train(load_config(_stage1(tmp_path, steps=4), {"workers": 0}), quiet=True)
    first = tmp_path / "s1" / "final.pt"
    body = f"""
stage = 2
task = "recon"
out_dir = "{tmp_path / 'j'}"
init = "{first}"
workers = 0
laplacian_weight = 0.01
fem_lr_scale = 0.5
{TINY_MODEL}
[data]
size = [16, 16]
val_items = 2
[optim]
steps = 3
batch = 2
lr = 1e-3
warmup = 1
[log]
every = 1
eval_every = 100
"""
    cfg = load_config(_write(tmp_path, "j", body))
    trainer = Trainer(cfg, quiet=True)
    scales = sorted(g["lr_scale"] for g in trainer.optimizer.param_groups)
    assert scales == [0.5, 1.0]
    fem_ids = {id(p) for p in trainer.model.fem.parameters()}
    assert {id(p) for p in trainer.optimizer.param_groups[1]["params"]} == fem_ids
    trainer.run()
    rows = _rows(tmp_path / "j")
    assert all("lap_l1" in r and "mse" in r for r in rows)
    # the LR of the FEM's group is the scaled one
    assert trainer.optimizer.param_groups[1]["lr"] == pytest.approx(
        0.5 * trainer.optimizer.param_groups[0]["lr"])
    # the FEM moved (it is frozen without fem_lr_scale), and the export carries it
    before = load_checkpoint(first)["state"]["fem.out.weight"]
    after = load_checkpoint(tmp_path / "j" / "final.pt")["state"]["fem.out.weight"]
    assert not torch.allclose(before, after)
    torch.testing.assert_close(load_model(tmp_path / "j" / "final.pt").fem.out.weight, after)
    # a later stage-2 run may take this FEM as its init (e.g. the classifier)
    frozen = load_config(_write(tmp_path, "k", body.replace("fem_lr_scale = 0.5", "")),
                         {"init": str(tmp_path / "j" / "final.pt"),
                          "out_dir": str(tmp_path / "k")})
    train(frozen, quiet=True)
    k = load_checkpoint(tmp_path / "k" / "final.pt")["state"]["fem.out.weight"]
    torch.testing.assert_close(k, after)


def test_cli_set_overrides():
    from sci_edge.config import parse_sets as _parse_sets
    from sci_edge.errors import ConfigError

    got = _parse_sets(["laplacian_weight=0.005", "data.size=[96, 96]", "out_dir=runs/x",
                       "data.augment=true"])
    assert got == {"laplacian_weight": 0.005, "data.size": [96, 96], "out_dir": "runs/x",
                   "data.augment": True}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        _parse_sets(["nothing"])
    cfg = load_config("stage2_recon_gpu_k3", got)
    assert cfg.data.size == (96, 96) and cfg.laplacian_weight == 0.005
    with pytest.raises(ConfigError, match="optim.nonsense: unknown key"):
        load_config("stage2_recon_gpu_k3", {"optim.nonsense": 1})
    # the CLI passes --set values as strings where they are not TOML; [model] is checked too
    with pytest.raises(ConfigError, match=r"stage2_recon\.toml: model\.analysis\.neighbors: "
                                          r"must be an integer, got 'abc'"):
        load_config("stage2_recon", _parse_sets(["model.analysis.neighbors=abc"]))


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="missing.toml: config not found"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(_write(tmp_path, "bad", "stage = = 1"))
    with pytest.raises(ConfigError, match=r"bad2.toml: optim.stepz: unknown key \(did you mean "
                                          r"'steps'\?\)"):
        load_config(_write(tmp_path, "bad2", "stage = 1\n[optim]\nstepz = 3"))
    with pytest.raises(ConfigError, match="bad3.toml: task: .*task must be recon"):
        load_config(_write(tmp_path, "bad3", 'stage = 1\ntask = "cls"\n[data]\ndataset="smnist"'))
    with pytest.raises(ConfigError, match="s2.toml: init: stage 2 needs init"):
        load_config(_write(tmp_path, "s2", 'stage = 2\ntask = "recon"'))
    # values of the wrong type or range are refused with the dotted key, not used
    for key, value, match in (
            ("optim.steps", "abc", "optim.steps: must be an integer, got 'abc'"),
            ("optim.steps", 0, r"optim.steps: must be >= 1, got 0"),
            ("optim.lr", True, "optim.lr: must be a number, got True"),
            ("optim.lr", 0.0, r"optim.lr: must be > 0"),
            ("data.augment", "yes", "data.augment: must be true or false"),
            ("data.size", 5, "data.size: must be a list of 2 integers"),
            ("data.size", [64.5, 64], "data.size: must be a list of 2 integers"),
            ("data.motions", ["pan", 3], "data.motions: must be a list of strings"),
            ("data.motions", ["pan", "zom"], "data.motions: each item must be one of"),
            ("init", 3, "init: must be a string"),
            ("optim.time_budget_s", -5, "optim.time_budget_s: must be >= 0"),
            ("laplacian_weight", -0.1, "laplacian_weight: must be >= 0"),
            ("fem_lr_scale", -1.0, "fem_lr_scale: must be >= 0"),
            ("fem_lr_scale", 0.5, "fem_lr_scale: is for stage 2"),
            ("data.size", [0, 64], r"data.size: each item must be >= 1, got \[0, 64\]"),
            ("data.smnist_alpha", [0.0, 1.0], "data.smnist_alpha: must be a"),
            ("data.smnist_alpha", [0.9, 0.5], "data.smnist_alpha: must be a"),
            ("data.smnist_speeds", [-0.1, 0.2], "data.smnist_speeds: must be a"),
            ("data.smnist_speeds", [0.0, float("inf")], "data.smnist_speeds"),
            ("data.synthetic_prob", 1.5, r"data.synthetic_prob: must be in \[0.0, 1.0\]"),
            ("data.noise_prob", -0.1, "data.noise_prob: must be in"),
            ("log.every", 0, "log.every: must be >= 1"),
            ("workers", -1, "workers: must be >= 0"),
            ("stage", 4, "stage: must be one of 1, 2, 3"),
            ("model", 3, "model: must be a table, got 3"),
            ("model.task", "cls", r"model.task: unknown key"),
            ("model.analysis.neighbours", 2, r"model.analysis.neighbours: unknown key \(did you "
                                             r"mean 'neighbors'\?\)"),
            ("model.analysis.neighbors", "abc", "model.analysis.neighbors: must be an integer, "
                                                "got 'abc'"),
            ("model.analysis.neighbors", 0, "model.analysis.neighbors: must be >= 1"),
            ("model.analysis.stride", 0, "model.analysis.stride: must be >= 1"),
            ("model.analysis.width", 0, "model.analysis.width: must be >= 1"),
            ("model.fem.width", 2.5, "model.fem.width: must be an integer"),
            ("model.fem.dorsal_channels", 0, "model.fem.dorsal_channels: must be >= 1"),
            ("model.dropout", 1.0, r"model.dropout: must be in \[0.0, 1.0\)"),
            ("model.num_classes", 1, "model.num_classes: must be >= 2")):
        with pytest.raises(ConfigError, match=match) as info:
            load_config("stage1_fem", {key: value})
        assert str(info.value).startswith(str(info.value.path)) and "stage1_fem.toml" in str(
            info.value) and "\n" not in str(info.value), str(info.value)
    cfg = load_config("stage1_fem", {"optim.lr": 1, "data.motions": ["pan"]})
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.data.motions == ("pan",)
    cfg = load_config("stage2_recon", ["model.analysis.neighbors=3", "model.dropout=0.1"])
    assert cfg.model.analysis.neighbors == 3 and cfg.model.dropout == 0.1


def test_bundled_configs_load():
    from sci_edge.data.motion import MOTION_KINDS
    from sci_edge.models.sci import SCIConfig
    from sci_edge.train.config import CONFIG_DIR, MOTIONS

    assert MOTIONS == MOTION_KINDS
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))
    assert {"stage1_fem", "stage2_recon", "stage2_cls", "stage2_recon_gpu_k3",
            "stage2_cls_gpu", "stage3_codec", "stage3_recon"} <= set(names)
    for name in names:
        cfg = load_config(name)
        assert cfg.optim.steps > 0
        m = cfg.model
        if cfg.stage == 3:        # the codec's model comes from its init / init_codec
            from sci_edge.models.codec import CodecConfig

            assert isinstance(m.codec, CodecConfig) and len(cfg.lambdas) == m.codec.qualities
            continue
        sci = SCIConfig(task=cfg.task, fem=m.fem, analysis=m.analysis,
                        num_classes=m.num_classes, dropout=m.dropout)
        assert SCIConfig.from_dict(sci.to_dict()) == sci
    assert load_config("stage2_recon_gpu_k3").model.analysis.neighbors == 3
    assert load_config("stage2_cls_gpu").model.dropout == 0.3


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="none.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable checkpoint"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"format": "something"}, other)
    with pytest.raises(CheckpointError, match="other.pt: not a sci_edge checkpoint"):
        load_checkpoint(other)
    fem_only = save_checkpoint(tmp_path / "fem.pt", kind="fem", model_config={}, state={})
    with pytest.raises(CheckpointError, match="fem.pt: .*only the FEM"):
        load_model(fem_only)
    bad = save_checkpoint(tmp_path / "bad.pt", kind="sci",
                          model_config={"analysis": {"neighbors": "abc"}}, state={})
    with pytest.raises(CheckpointError, match="bad.pt: model_config: analysis.neighbors: must be"):
        load_model(bad)


def test_resume_continues_clock_and_schedule(tmp_path):
    """A budgeted run, stopped by its budget and resumed with a larger one, goes on
    from the saved training time: the LR does not restart and the budget is the run's."""
    from sci_edge.train.loop import _lr_at

    base = {"workers": 0, "optim.steps": 100000, "optim.warmup": 0, "log.every": 1,
            "log.eval_every": 100000,
            "log.checkpoint_every": 100000, "data.val_items": 2}
    cfg1 = load_config(_stage1(tmp_path), {**base, "optim.time_budget_s": 1.0})
    train(cfg1, quiet=True)
    saved = load_checkpoint(tmp_path / "s1" / "last.pt")
    step0, elapsed0 = saved["step"], saved["elapsed_s"]
    assert step0 >= 1 and elapsed0 >= 1.0
    budget = elapsed0 + 1.5
    cfg2 = load_config(_stage1(tmp_path), {**base, "optim.time_budget_s": budget})
    result = train(cfg2, resume=True, quiet=True)
    rows = [r for r in _rows(tmp_path / "s1") if r["step"] > step0]
    assert rows[0]["step"] == step0 + 1
    # the first resumed step's LR is the schedule's at the saved step and time, well
    # below the full LR a restarted clock would give
    assert rows[0]["lr"] == pytest.approx(_lr_at(step0, cfg2, elapsed0), rel=1e-12)
    assert rows[0]["lr"] < 0.7 * cfg2.optim.lr < _lr_at(step0, cfg2, 0.0)
    assert all(a["lr"] >= b["lr"] for a, b in zip(rows, rows[1:]))
    # the clock goes on from the saved time, and the run stops at the whole budget
    assert rows[0]["elapsed_s"] >= elapsed0
    final = load_checkpoint(tmp_path / "s1" / "final.pt")
    assert final["elapsed_s"] >= budget and result["elapsed_s"] >= budget
    assert result["seconds"] < budget         # only what was left of it (a restarted clock:
                                              # all of it)
    # resumed once more with the budget spent: no further steps
    again = train(cfg2, resume=True, quiet=True)
    assert again["step"] == final["step"]


@pytest.mark.slow
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
    assert re.search(r'"step": 6\b|\b6 steps\b', res.stdout), res.stdout   # JSON or text report
    # stage II too: the frozen FEM, channels-last weights, gradients only for the cloud side
    stage2 = _write(tmp_path, "s2", f"""
stage = 2
task = "recon"
out_dir = "{tmp_path / 's2'}"
init = "{tmp_path / 's1' / 'final.pt'}"
{TINY_MODEL}
[data]
size = [16, 16]
val_items = 2
[optim]
steps = 4
batch = 2
[log]
every = 2
eval_every = 100
checkpoint_every = 100
""")
    train_cmd = cmd[:cmd.index("train") + 1]
    res = subprocess.run(train_cmd + ["--stage", "2", "--task", "recon", "--config", str(stage2),
                                      "--quiet"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "stride" not in res.stderr        # no DDP warning about mismatched grad layouts
    assert load_checkpoint(tmp_path / "s2" / "final.pt")["step"] == 4


def _propagation_config(tmp_path, s1, steps=4, extra=""):
    body = f"""
stage = 2
task = "recon"
out_dir = "{tmp_path / 'prop'}"
init = "{s1}"
cloud_lr_scale = 0.0
sequence_features = 9
curriculum_steps = 2
cut_prob = 1.0
{extra}
{TINY_MODEL}
[model.propagation]
enabled = true
width = 4
[data]
size = [16, 16]
motions = ["static", "pan"]
speeds = [0.01, 1.0]
alpha = [0.05, 0.9]
log_ranges = true
val_items = 2
"""
    # two sequences a step, logged every step, validated and saved every other one
    body += f"[optim]\nsteps = {steps}\nbatch = 2\nlr = 3e-3\nwarmup = 1\n"
    body += "[log]\nevery = 1\neval_every = 2\ncheckpoint_every = 2\n"
    return _write(tmp_path, "prop", body)


def test_stage2_propagation_trains_only_the_gate_on_growing_sequences(tmp_path):
    train(load_config(_stage1(tmp_path, steps=2), {"workers": 0}), quiet=True)
    s1 = tmp_path / "s1" / "final.pt"
    cfg = load_config(_propagation_config(tmp_path, s1, steps=4), {"workers": 0})
    train(cfg, quiet=True)
    rows = _rows(tmp_path / "prop")
    # the curriculum grows the sequence from 2K+1 = 5 to 9 features; validation uses 9
    assert [r["features"] for r in rows] == [5, 7, 9, 9]
    assert rows[1]["val_features"] == 9
    model = load_model(tmp_path / "prop" / "final.pt")
    assert model.propagation is not None and model.config.propagation.width == 4
    start = load_checkpoint(s1)["state"]
    for k, v in model.state_dict().items():
        if k.startswith("fem."):
            assert torch.equal(v, start[k]), k           # the FEM is the init's
    assert float(model.state_dict()["propagation.gate.4.bias"]) != pytest.approx(-4.0)
    from sci_edge.models import SCIModel

    torch.manual_seed(0)            # the trainer's seed (data.seed) before it builds the model
    fresh = SCIModel(model.config).state_dict()
    for k, v in model.state_dict().items():
        if k.startswith(("analysis.", "head.")):
            assert torch.equal(v, fresh[k]), k            # frozen (cloud_lr_scale 0)
    # resumes to more steps
    cfg = load_config(_propagation_config(tmp_path, s1, steps=6), {"workers": 0})
    train(cfg, resume=True, quiet=True)
    assert load_checkpoint(tmp_path / "prop" / "final.pt")["step"] == 6


def test_propagation_configs_are_checked(tmp_path):
    body = _propagation_config(tmp_path, tmp_path / "none.pt").read_text()
    for name, old, new in (("even", "sequence_features = 9", "sequence_features = 8"),
                           ("off", "enabled = true", "enabled = false"),
                           ("unset", "sequence_features = 9", "")):
        with pytest.raises(ConfigError, match="sequence_features"):
            load_config(_write(tmp_path, name, body.replace(old, new)))


def test_scene_cuts_keep_the_middle_window_of_each_sequence():
    from sci_edge.train.loop import _scene_cuts

    spikes = torch.stack([torch.full((60, 4, 4), i, dtype=torch.uint8) for i in range(4)])
    centres = [30 + 5 * k for k in range(-4, 5)]
    for step in range(20):
        cut = _scene_cuts(spikes, centres, 1.0, step)
        for b in range(4):
            assert (cut[b, 24:37] == b).all()                 # the middle window is whole
            assert (cut[b] != b).any()                         # somewhere else it cut
            assert torch.equal(spikes[b], torch.full((60, 4, 4), b, dtype=torch.uint8))


def _rate_config(tmp_path, s1, steps=4, extra=""):
    body = _propagation_config(tmp_path, s1, steps=steps, extra=extra).read_text()
    body = body.replace("[model.propagation]", "[model.rate]").replace(
        f"out_dir = \"{tmp_path / 'prop'}\"", f"out_dir = \"{tmp_path / 'rate'}\"")
    return _write(tmp_path, "rate", body)


def test_stage2_rate_trains_only_the_rate_integration(tmp_path):
    train(load_config(_stage1(tmp_path, steps=2), {"workers": 0}), quiet=True)
    s1 = tmp_path / "s1" / "final.pt"
    extra = ("count_stride_prob = 1.0\ncount_stride_max = 20\nno_worse_weight = 1.0\n"
             "no_worse_patch = 4\nrate_mean_weight = 0.5")
    cfg = load_config(_rate_config(tmp_path, s1, steps=4, extra=extra), {"workers": 0})
    train(cfg, quiet=True)
    rows = _rows(tmp_path / "rate")
    assert all(np.isfinite(r["loss"]) and "base_psnr" in r and "mean_psnr" in r
               and "excess_mse" in r for r in rows)
    assert rows[1]["val_features"] > 0 and "val_base_psnr" in rows[1]
    model = load_model(tmp_path / "rate" / "final.pt")
    assert model.rate is not None and model.propagation is None
    start = load_checkpoint(s1)["state"]
    for k, v in model.state_dict().items():
        if k.startswith("fem."):
            assert torch.equal(v, start[k]), k
    assert float(model.state_dict()["rate.mix.4.bias"]) != pytest.approx(-4.0)
    from sci_edge.models import SCIModel

    torch.manual_seed(0)
    fresh = SCIModel(model.config).state_dict()
    for k, v in model.state_dict().items():
        if k.startswith(("analysis.", "head.")):
            assert torch.equal(v, fresh[k]), k            # frozen (cloud_lr_scale 0)
    cfg = load_config(_rate_config(tmp_path, s1, steps=6, extra=extra), {"workers": 0})
    train(cfg, resume=True, quiet=True)
    assert load_checkpoint(tmp_path / "rate" / "final.pt")["step"] == 6


def test_rate_blend_alone_trains_on_its_cache_with_the_gate_frozen(tmp_path):
    train(load_config(_stage1(tmp_path, steps=2), {"workers": 0}), quiet=True)
    s1 = tmp_path / "s1" / "final.pt"
    train(load_config(_rate_config(tmp_path, s1, steps=2), {"workers": 0}), quiet=True)
    gate_ckpt = tmp_path / "rate" / "final.pt"
    cache = tmp_path / "cache" / "blend.npz"
    extra = (f'init_cloud = "{gate_ckpt}"\nrate_blend_only = true\nblend_strides = [7, 14]\n'
             "count_stride_prob = 0.5\nno_worse_weight = 4.0\nno_worse_patch = 4")
    body = _rate_config(tmp_path, s1, steps=3, extra=extra).read_text()
    body = body.replace(f"out_dir = \"{tmp_path / 'rate'}\"",
                        f"out_dir = \"{tmp_path / 'blend'}\"")
    body = body.replace("val_items = 2", f"val_items = 2\ncache = \"{cache}\"\n"
                                          "cache_items = 3\ncache_size = [32, 32]")
    train(load_config(_write(tmp_path, "blend", body), {"workers": 0}), quiet=True)
    from sci_edge.train.rate_cache import load_rate_cache

    c = load_rate_cache(cache)
    assert c["bases"].shape == (3, 32, 32) and c["means"].shape == (3, 2, 32, 32)
    assert list(c["strides"]) == [7, 14] and (c["reaches"] >= 1).all()
    assert load_rate_cache(cache.with_name("blend_val.npz"))["alphas"].shape == (2,)
    rows = _rows(tmp_path / "blend")
    assert all(np.isfinite(r["loss"]) and "excess_mse" in r for r in rows)
    assert "val_psnr" in rows[1] and "val_mean_psnr" in rows[1]
    before = load_checkpoint(gate_ckpt)["state"]
    after = load_model(tmp_path / "blend" / "final.pt").state_dict()
    for k, v in after.items():
        if k.startswith("rate.gate."):
            assert torch.equal(v, before[k]), k          # frozen: its means are cached
    assert not torch.equal(after["rate.mix.4.bias"], before["rate.mix.4.bias"])
    # a second run reads the cache it finds
    stamp = cache.stat().st_mtime_ns
    body = body.replace(str(tmp_path / "blend") + '"', str(tmp_path / "blend2") + '"')
    train(load_config(_write(tmp_path, "blend2", body), {"workers": 0}), quiet=True)
    assert cache.stat().st_mtime_ns == stamp


def test_rate_blend_alone_is_checked(tmp_path):
    body = _rate_config(tmp_path, tmp_path / "none.pt").read_text()
    with pytest.raises(ConfigError, match="init_cloud"):
        load_config(_write(tmp_path, "b1", body.replace(
            "cut_prob = 1.0", "cut_prob = 1.0\nrate_blend_only = true")))
    body = body.replace("cut_prob = 1.0", "cut_prob = 1.0\nrate_blend_only = true\n"
                                          f'init_cloud = "{tmp_path / "x.pt"}"')
    with pytest.raises(ConfigError, match="data.cache"):
        load_config(_write(tmp_path, "b2", body))
    body = body.replace("val_items = 2", f'val_items = 2\ncache = "{tmp_path / "c.npz"}"')
    assert load_config(_write(tmp_path, "b3", body)).rate_blend_only
    with pytest.raises(ConfigError, match="blend_strides"):
        load_config(_write(tmp_path, "b4", body.replace("rate_blend_only = true",
                                                        "rate_blend_only = true\n"
                                                        "blend_strides = []")))


def test_count_strides_are_drawn_within_their_range(tmp_path):
    from sci_edge.train.loop import Trainer

    cfg = load_config(_rate_config(tmp_path, tmp_path / "none.pt",
                                   extra="count_stride_prob = 0.5\ncount_stride_max = 30"))
    t = Trainer.__new__(Trainer)
    t.cfg = cfg
    drawn = []
    for step in range(200):
        t.step = step
        drawn.append(t.count_stride(train=True))
        assert t.count_stride(train=False) == 7
    assert min(drawn) == 7 and max(drawn) <= 30 and len(set(drawn)) > 5
    assert 0.3 < np.mean([d == 7 for d in drawn]) < 0.8


def test_rate_configs_are_checked(tmp_path):
    body = _rate_config(tmp_path, tmp_path / "none.pt").read_text()
    with pytest.raises(ConfigError, match="sequence_features"):
        load_config(_write(tmp_path, "r1", body.replace("sequence_features = 9", "")))
    both = body + "\n[model.propagation]\nenabled = true\n"
    with pytest.raises(ConfigError, match="rate"):
        load_config(_write(tmp_path, "r2", both))


def test_far_cuts_keep_the_windowed_models_frames():
    from sci_edge.train.loop import _far_cuts

    spikes = torch.stack([torch.full((101, 3, 3), i, dtype=torch.uint8) for i in range(4)])
    for step in range(20):
        cut = _far_cuts(spikes, 50, 22, 1.0, step)
        for b in range(4):
            assert (cut[b, 50 - 21:50 + 22] == b).all()        # 22 steps away may go
            assert (cut[b] != b).any()
