"""Training configuration: TOML files in sci_edge/train/configs, read into dataclasses."""
from __future__ import annotations

import math
import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from ..errors import DataError

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "scenes"                 # "scenes" | "smnist"
    size: tuple[int, int] = (64, 64)        # training crop (H, W); smnist: padded digit size
    motions: tuple[str, ...] = ("pan", "zoom", "rotation", "mixed")
    speeds: tuple[float, float] = (0.0, 1.5)
    alpha: tuple[float, float] = (0.3, 0.9)
    noise_prob: float = 0.3
    synthetic_prob: float = 0.0             # scenes: share of dead-leaves images (training only)
    seed: int = 0
    val_items: int = 32
    augment: bool = False                   # smnist: random similarity transform and gain
    smnist_speeds: tuple[float, float] = (0.05, 0.15)  # smnist: drift, px per step (range)
    smnist_alpha: tuple[float, float] = (0.8, 0.8)     # smnist: camera gain (range)


@dataclass(frozen=True)
class OptimConfig:
    steps: int = 2000
    batch: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: int = 50
    grad_clip: float = 1.0
    time_budget_s: float = 0.0              # > 0: stop after this long (per run, a resumed
                                            # one too); the LR decays over it


@dataclass(frozen=True)
class LogConfig:
    every: int = 10
    eval_every: int = 200
    checkpoint_every: int = 200


@dataclass(frozen=True)
class TrainConfig:
    stage: int = 1
    task: str = "recon"
    out_dir: str = "runs/stage1"
    init: str | None = None                 # stage 2: the stage-1 checkpoint holding the FEM;
                                            # stage 1: optional, a FEM to start from
    init_cloud: str | None = None           # stage 2, optional: a stage-2 checkpoint whose
                                            # analysis and head start this run (fine-tuning)
    laplacian_weight: float = 0.02          # smoothness constraint on F_t (stage 1, and
                                            # stage 2 when the FEM trains too)
    fem_lr_scale: float = 0.0               # stage 2: 0 keeps the FEM frozen (the paper's
                                            # stage II); > 0 fine-tunes it jointly at lr * this
    model: dict = field(default_factory=dict)  # SCIConfig fields: fem, analysis, num_classes
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    log: LogConfig = field(default_factory=LogConfig)
    workers: int = 1
    threads: int = 0                        # torch threads per process; 0 = all CPUs / world size

    def __post_init__(self):
        if self.stage not in (1, 2):
            raise DataError(f"stage must be 1 or 2, got {self.stage}")
        if self.task not in ("recon", "cls"):
            raise DataError(f"task must be 'recon' or 'cls', got {self.task!r}")
        if self.stage == 1 and self.task != "recon":
            raise DataError("stage 1 trains the FEM with a reconstruction head: task must be recon")
        if self.data.dataset not in ("scenes", "smnist"):
            raise DataError(f"data.dataset must be 'scenes' or 'smnist', got {self.data.dataset!r}")
        if self.task == "cls" and self.data.dataset != "smnist":
            raise DataError("classification trains on data.dataset = 'smnist'")
        if self.optim.steps < 1 or self.optim.batch < 1 or not self.optim.lr > 0:
            raise DataError("optim.steps and optim.batch must be >= 1 and optim.lr > 0")
        for key, value in (("optim.time_budget_s", self.optim.time_budget_s),
                           ("laplacian_weight", self.laplacian_weight),
                           ("fem_lr_scale", self.fem_lr_scale)):
            if value < 0:
                raise DataError(f"{key} must be >= 0, got {value}")
        if self.fem_lr_scale > 0 and self.stage != 2:
            raise DataError("fem_lr_scale is for stage 2 (stage 1 trains the FEM anyway)")
        for key, (lo, hi), low_ok in (("data.smnist_speeds", self.data.smnist_speeds, True),
                                      ("data.smnist_alpha", self.data.smnist_alpha, False)):
            if not (math.isfinite(hi) and (lo >= 0 if low_ok else lo > 0) and lo <= hi):
                bound = "<=" if low_ok else "<"
                raise DataError(f"{key} must be a (low, high) range with 0 {bound} low <= high, "
                                f"got {[lo, hi]}")
        if not 0.0 <= self.data.synthetic_prob <= 1.0:
            raise DataError(f"data.synthetic_prob must lie in [0, 1], got {self.data.synthetic_prob}")
        if min(self.data.size) < 1 or self.workers < 0 or self.threads < 0:
            raise DataError("data.size must be positive, workers and threads >= 0")
        if not isinstance(self.model, dict):
            raise DataError("model must be a table ([model], [model.fem], [model.analysis])")

    def to_dict(self) -> dict:
        return asdict(self)


def _typed(value, default, where: str, key: str):
    """``value`` checked against the type of the field's default (int, float, bool, str,
    optional str, tuple of numbers or strings); lists become tuples."""
    def bad(kind: str):
        return DataError(f"{where}: {key} must be {kind}, got {value!r}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        value = float(value)
    elif isinstance(default, str) or (default is None and key.startswith("init")):
        if not isinstance(value, str) and not (default is None and value is None):
            raise bad("a string")
    elif isinstance(default, tuple):
        item = type(default[0])
        kinds = {int: (int,), float: (int, float), str: (str,)}[item]
        fixed = item is not str                 # (H, W) and (low, high) pairs; any names
        if (not isinstance(value, (list, tuple)) or (fixed and len(value) != len(default))
                or not all(isinstance(v, kinds) and not isinstance(v, bool) for v in value)):
            raise bad(f"a list of {len(default) if fixed else 'any number of'} "
                      f"{item.__name__} values")
        value = tuple(value)
    return value


def _build(cls, d: dict, where: str):
    names = {f.name: f for f in fields(cls)}
    unknown = set(d) - set(names)
    if unknown:
        raise DataError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(names)})")
    out = {}
    for k, v in d.items():
        default = names[k].default
        out[k] = v if default is MISSING else _typed(v, default, where, k)
    return cls(**out)


def config_from_dict(d: dict, where: str = "config") -> TrainConfig:
    d = dict(d)
    sub = {"data": DataConfig, "optim": OptimConfig, "log": LogConfig}
    for key, cls in sub.items():
        d[key] = _build(cls, d.get(key, {}), f"{where} [{key}]")
    return _build(TrainConfig, d, where)


def load_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """Read a TOML config; a bare name (e.g. 'stage1_fem') is looked up in CONFIG_DIR."""
    path = Path(path)
    if not path.exists() and not path.suffix:
        path = CONFIG_DIR / f"{path}.toml"
    if not path.is_file():
        raise DataError(f"{path}: config not found (bundled: "
                        f"{', '.join(sorted(p.stem for p in CONFIG_DIR.glob('*.toml')))})")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid TOML ({exc})") from exc
    for key, value in (overrides or {}).items():
        section = raw
        *parents, leaf = key.split(".")
        for p in parents:
            section = section.setdefault(p, {})
        section[leaf] = value
    try:
        return config_from_dict(raw, str(path))
    except TypeError as exc:
        raise DataError(f"{path}: {exc}") from exc
