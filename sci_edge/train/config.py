"""Training configuration: TOML files in sci_edge/train/configs, read into dataclasses.

Every table, [model] included, is checked when the file loads (sci_edge.config):
an unknown key, a value of the wrong type or out of range is a ConfigError
naming the file and the dotted key."""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import config as _config
from ..config import FieldError
from ..models.cloud.analysis import AnalysisConfig
from ..models.cloud.propagate import PropagationConfig
from ..models.cloud.rate import RateConfig
from ..models.codec import CodecConfig
from ..models.end.fem import FEMConfig

CONFIG_DIR = Path(__file__).parent / "configs"
# sci_edge.data.motion.MOTION_KINDS, spelled out so that reading a config imports no data code
MOTIONS = ("static", "pan", "zoom", "rotation", "mixed")


def _at_least(lo, default, **more):
    return field(default=default, metadata={"min": lo, **more})


@dataclass(frozen=True)
class DataConfig:
    dataset: str = field(default="scenes", metadata={"choices": ("scenes", "smnist")})
    size: tuple[int, int] = _at_least(1, (64, 64))   # training crop (H, W); smnist: digit canvas
    motions: tuple[str, ...] = field(default=("pan", "zoom", "rotation", "mixed"),
                                     metadata={"choices": MOTIONS})
    speeds: tuple[float, float] = _at_least(0.0, (0.0, 1.5))
    alpha: tuple[float, float] = field(default=(0.3, 0.9), metadata={"gt": 0.0})
    noise_prob: float = _at_least(0.0, 0.3, max=1.0)
    synthetic_prob: float = _at_least(0.0, 0.0, max=1.0)  # scenes: share of dead-leaves images
                                                          # (training only)
    log_ranges: bool = False                # scenes: speeds and alpha drawn log-uniformly (many
                                            # slow and dim items; a zero low end stays uniform)
    seed: int = 0
    val_items: int = _at_least(0, 32)
    augment: bool = False                   # smnist: random similarity transform and gain
    smnist_speeds: tuple[float, float] = (0.05, 0.15)  # smnist: drift, px per step (range)
    smnist_alpha: tuple[float, float] = (0.8, 0.8)     # smnist: camera gain (range)
    # stage 3: FEM features of cache_items scenes of cache_size, computed once into this
    # .npz (built when missing); training crops data.size from them with flips and turns
    cache: str | None = None
    cache_items: int = _at_least(1, 400)
    cache_size: tuple[int, int] = _at_least(32, (128, 128))

    def __post_init__(self):
        for key, (lo, hi) in (("speeds", self.speeds), ("alpha", self.alpha)):
            if lo > hi:
                raise FieldError(key, f"must be a (low, high) range with low <= high, "
                                      f"got {[lo, hi]}")
        for key, (lo, hi), low_ok in (("smnist_speeds", self.smnist_speeds, True),
                                      ("smnist_alpha", self.smnist_alpha, False)):
            if not (math.isfinite(hi) and (lo >= 0 if low_ok else lo > 0) and lo <= hi):
                bound = "<=" if low_ok else "<"
                raise FieldError(key, f"must be a (low, high) range with 0 {bound} low <= high, "
                                      f"got {[lo, hi]}")


@dataclass(frozen=True)
class OptimConfig:
    steps: int = _at_least(1, 2000)
    batch: int = _at_least(1, 8)
    lr: float = field(default=1e-3, metadata={"gt": 0.0})
    weight_decay: float = _at_least(0.0, 0.0)
    warmup: int = _at_least(0, 50)
    grad_clip: float = _at_least(0.0, 1.0)            # 0: no clipping
    time_budget_s: float = _at_least(0.0, 0.0)        # > 0: stop after this much training time,
                                                      # for the whole run (a resumed one
                                                      # continues the clock); the LR decays over it


@dataclass(frozen=True)
class LogConfig:
    every: int = _at_least(1, 10)
    eval_every: int = _at_least(1, 200)
    checkpoint_every: int = _at_least(1, 200)


@dataclass(frozen=True)
class ModelConfig:
    """SCIConfig's fields less the task (the config's top-level ``task``)."""
    fem: FEMConfig = field(default_factory=FEMConfig)        # stage 2: the init's FEM is used
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    num_classes: int = _at_least(2, 10)
    dropout: float = field(default=0.0, metadata={"min": 0.0, "lt": 1.0})  # cls head only
    codec: CodecConfig = field(default_factory=CodecConfig)  # stage 3
    propagation: PropagationConfig = field(default_factory=PropagationConfig)
    rate: RateConfig = field(default_factory=RateConfig)


@dataclass(frozen=True)
class TrainConfig:
    stage: int = field(default=1, metadata={"choices": (1, 2, 3)})
    task: str = field(default="recon", metadata={"choices": ("recon", "cls", "codec")})
    out_dir: str = "runs/stage1"
    init: str | None = None                 # stage 2: the stage-1 checkpoint holding the FEM;
                                            # stage 1: optional, a FEM to start from
    init_cloud: str | None = None           # stage 2, optional: a stage-2 checkpoint whose
                                            # analysis and head start this run (fine-tuning)
    laplacian_weight: float = _at_least(0.0, 0.02)  # smoothness constraint on F_t (stage 1,
                                                    # and stage 2 when the FEM trains too)
    fem_lr_scale: float = _at_least(0.0, 0.0)  # stage 2: 0 keeps the FEM frozen (the paper's
                                               # stage II); > 0 fine-tunes it jointly at lr * this
    cloud_lr_scale: float = _at_least(0.0, 1.0)  # stage 2: the windowed analysis and head
                                                 # train at lr * this (0: frozen, e.g. while
                                                 # only the propagation learns)
    # stage 2 recon with model.propagation: features per training sequence (odd, at
    # least 2K+1; the output at the middle one); 0 trains the windowed model alone
    sequence_features: int = _at_least(0, 0)
    curriculum_steps: int = _at_least(0, 0)   # grow sequences from 2K+1 features to
                                              # sequence_features over these steps
    cut_prob: float = _at_least(0.0, 0.0, max=1.0)  # share of sequences with a scene cut
    no_worse_weight: float = _at_least(0.0, 0.0)  # propagation: weight of the extra loss on
                                                  # sequences where it does worse than the
                                                  # windowed model alone (the excess MSE)
    # model.rate: share of training sequences whose spike counts are taken at a stride
    # drawn log-uniformly from [analysis.stride, count_stride_max] instead of the model's
    count_stride_prob: float = _at_least(0.0, 0.0, max=1.0)
    count_stride_max: int = _at_least(1, 50)
    rate_mean_weight: float = _at_least(0.0, 0.0)  # model.rate: weight of the log MSE of
                                                   # the long mean alone (teaches the gate)
    no_worse_patch: int = _at_least(0, 0)   # model.rate: no_worse_weight per patch of this
                                            # many pixels a side (0: per sequence)
    # model.rate: train the blend alone, its gate frozen as init_cloud has it, on the
    # blend's inputs computed once into data.cache (built when missing) at these count
    # strides: the first in most steps, the others in a share count_stride_prob
    rate_blend_only: bool = False
    blend_strides: tuple[int, ...] = _at_least(1, (5, 10, 25, 50))
    # stage 3: R + lambda * D, one lambda per quality index (as many as model.codec.qualities)
    lambdas: tuple[float, ...] = field(default=(100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0),
                                       metadata={"gt": 0.0})
    codec_frames: int = _at_least(0, 0)     # stage 3 / codec: frames per training sequence
                                            # (an I frame, then P), a random run of the
                                            # sample's 2K+1 features; 0 = all of them
    init_codec: str | None = None           # stage 3, task recon/cls: the trained codec
                                            # (stage 3 / codec checkpoint, holding the FEM and
                                            # cloud side it was trained with) to fine-tune
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    log: LogConfig = field(default_factory=LogConfig)
    workers: int = _at_least(0, 1)
    threads: int = _at_least(0, 0)          # torch threads per process; 0 = all CPUs / world size

    def __post_init__(self):
        _config.check_fields(self)          # also when built in code, not from a file
        if self.stage == 1 and self.task != "recon":
            raise FieldError("task", "stage 1 trains the FEM with a reconstruction head: "
                                     "task must be recon")
        if self.task == "cls" and self.data.dataset != "smnist":
            raise FieldError("data.dataset", "classification trains on data.dataset = 'smnist'")
        if self.stage == 2 and self.init is None:
            raise FieldError("init", "stage 2 needs init = the stage-1 checkpoint holding the FEM")
        if (self.task == "codec") != (self.stage == 3 and self.init_codec is None):
            if self.task == "codec" and self.stage != 3:
                raise FieldError("task", "the codec trains in stage 3")
            if self.task != "codec" and self.stage == 3:
                raise FieldError("init_codec", "stage 3 recon/cls fine-tunes the cloud side "
                                               "on a trained codec: set init_codec")
            raise FieldError("init_codec", "task codec trains a fresh codec: no init_codec")
        if self.stage == 3:
            if self.task == "codec" and self.init is None:
                raise FieldError("init", "stage 3 / codec needs init = a stage-2 recon "
                                         "checkpoint (its FEM makes the features)")
            if self.task == "codec" and len(self.lambdas) != self.model.codec.qualities:
                raise FieldError("lambdas", f"needs one lambda per quality index "
                                            f"({self.model.codec.qualities}), got "
                                            f"{len(self.lambdas)}")
            if self.task == "codec" and self.data.dataset != "scenes":
                raise FieldError("data.dataset", "the codec trains on data.dataset = 'scenes'")
        long_reach = self.model.propagation.enabled or self.model.rate.enabled
        if self.model.propagation.enabled and self.model.rate.enabled:
            raise FieldError("model.rate.enabled", "trains on its own, in front of a windowed "
                                                   "model (model.propagation.enabled = false)")
        if self.sequence_features:
            K = self.model.analysis.neighbors
            if self.stage != 2 or self.task != "recon" or not long_reach:
                raise FieldError("sequence_features", "is for stage 2 recon with "
                                                      "model.propagation or model.rate "
                                                      "enabled")
            if self.sequence_features % 2 == 0 or self.sequence_features < 2 * K + 1:
                raise FieldError("sequence_features", f"must be odd and >= {2 * K + 1} "
                                                      f"(2K+1), got {self.sequence_features}")
        elif long_reach and self.stage == 2:
            raise FieldError("sequence_features", "model.propagation and model.rate train on "
                                                  "sequences: set sequence_features")
        if self.rate_blend_only:
            if not (self.stage == 2 and self.model.rate.enabled and self.sequence_features):
                raise FieldError("rate_blend_only", "is for stage 2 with model.rate enabled")
            if self.init_cloud is None:
                raise FieldError("rate_blend_only", "the gate comes trained: set init_cloud")
            if self.data.cache is None:
                raise FieldError("data.cache", "rate_blend_only trains on a cache: name its file")
            if not self.blend_strides:
                raise FieldError("blend_strides", "needs at least one stride")
        if self.fem_lr_scale > 0 and self.stage != 2:
            raise FieldError("fem_lr_scale", "is for stage 2 (stage 1 trains the FEM anyway)")

    def to_dict(self) -> dict:
        return asdict(self)


def config_from_dict(d: Mapping, where: str | Path | None = None) -> TrainConfig:
    """A TrainConfig from a table as in the TOML files; ``where`` names it in errors."""
    return _config.build(TrainConfig, d, path=where)


def load_config(path: str | Path,
                overrides: Mapping[str, Any] | Iterable[str] | None = None) -> TrainConfig:
    """Read a TOML config (a bare name such as 'stage1_fem' is looked up in CONFIG_DIR),
    with dotted overrides: ``{"optim.steps": 10}`` or ``["optim.steps=10"]``."""
    return _config.load(TrainConfig, path, bundled=CONFIG_DIR, overrides=overrides)
