"""The training loop for stages I and II (paper Fig. 7).

Stage I: FEM + light reconstruction head, MSE on intensity plus the Laplacian
smoothness constraint on F_t. Stage II: the FEM from stage I frozen; the
long-term analysis and a task head trained with MSE (recon) or cross-entropy
(cls). With ``fem_lr_scale`` > 0 stage II fine-tunes the FEM jointly (at a
scaled learning rate, the Laplacian constraint kept on its features). Runs on
one process, or several under ``torchrun`` (DistributedDataParallel; gloo on
CPU, nccl on GPU). Resumable from ``<out_dir>/last.pt``: the weights, optimizer,
step and training clock continue, so a time budget and the LR schedule span the
whole run.
"""
from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Sampler

from ..config import build
from ..errors import CheckpointError, ConfigError
from ..models.checkpoint import load_checkpoint, save_checkpoint
from ..models.end.fem import FEM, WINDOW, FEMConfig, LightReconHead
from ..models.sci import SCIConfig, SCIModel, gather_windows
from .config import TrainConfig
from .data import SceneSamples, SMNISTSamples
from .rate_cache import count_grid, sum_intervals

LOG_FLOOR = 1e-7        # the rate losses' floor on the MSE: 70 dB, no gain counts beyond it

_LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


def laplacian(x: torch.Tensor) -> torch.Tensor:
    """Discrete Laplacian of (B, 1, H, W) maps (replicate border)."""
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), _LAPLACE.to(x))


def laplacian_norms(features: torch.Tensor) -> tuple[float, float]:
    """(mean |lap F|, sqrt(mean (lap F)^2)) of feature maps in [0, 1]."""
    lap = laplacian(features)
    return float(lap.abs().mean()), float(lap.pow(2).mean().sqrt())


class FEMStage(nn.Module):
    """Stage I model: FEM followed by the light reconstruction head."""

    def __init__(self, config: FEMConfig):
        super().__init__()
        self.fem = FEM(config)
        self.light_head = LightReconHead()

    def forward(self, window):
        feature = self.fem(window)
        return feature, self.light_head(feature)


def _load_part(model: nn.Module, state: dict, prefixes: tuple[str, ...], where,
               partial: bool = False) -> list[str]:
    """Copy the parameters under ``prefixes`` from a checkpoint state into ``model``.

    ``partial``: tensors whose name or shape differ keep their fresh initialisation
    (e.g. the merge layers when the number of neighbours changes); at least half
    must fit. Returns the names that were not loaded."""
    what = "/".join(p.rstrip(".") for p in prefixes)
    part = {k: v for k, v in state.items() if k.startswith(prefixes)}
    if not part:
        raise CheckpointError(where, f"holds no {what} weights")
    own = {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)}
    fits = {k: v for k, v in part.items() if k in own and own[k].shape == v.shape}
    missing = sorted(set(own) - set(fits))
    if missing and (not partial or len(fits) < len(own) / 2):
        bad = missing[0]
        raise CheckpointError(where, f"its {what} do not match this config's (first difference: "
                                     f"{bad}; {len(fits)} of {len(own)} tensors fit)")
    model.load_state_dict(fits, strict=False)
    return missing


class StreamSampler(Sampler):
    """Sample indices for steps [start, steps): each step and rank gets fresh ones."""

    def __init__(self, start: int, steps: int, batch: int, world: int, rank: int):
        self.start, self.steps, self.batch, self.world, self.rank = start, steps, batch, world, rank

    def __len__(self):
        return max(0, self.steps - self.start) * self.batch

    def __iter__(self):
        for s in range(self.start, self.steps):
            base = (s * self.world + self.rank) * self.batch
            yield from range(base, base + self.batch)


def _single_threaded_worker(_worker_id: int) -> None:
    """Data workers simulate on one thread; the trainer's process owns the cores."""
    os.environ["SCI_EDGE_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def _lr_at(step: int, cfg: TrainConfig, elapsed_s: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 5 % over the steps, or over the time
    budget where that runs out first. ``elapsed_s``: training time of the whole run,
    resumed parts included."""
    o = cfg.optim
    if step < o.warmup:
        return o.lr * (step + 1) / o.warmup
    p = (step - o.warmup) / max(1, o.steps - o.warmup)
    if o.time_budget_s > 0:
        p = max(p, elapsed_s / o.time_budget_s)
    return o.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def _psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    mse = (pred.clamp(0, 1) - target).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


class Trainer:
    def __init__(self, cfg: TrainConfig, *, resume: bool = False, quiet: bool = False):
        self.cfg = cfg
        self.quiet = quiet
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) \
            if torch.cuda.is_available() else torch.device("cpu")
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True     # fixed crop sizes
        threads = cfg.threads or max(1, (os.cpu_count() or 1) // self.world)
        torch.set_num_threads(threads)
        torch.manual_seed(cfg.data.seed)
        self.out_dir = Path(cfg.out_dir)
        self._init_doc = None
        if cfg.stage == 2:         # TrainConfig makes sure that stage 2 has an init
            self._init_doc = load_checkpoint(cfg.init)
        self.model, self.trainable = self._build()
        # NHWC activations, oneDNN's fast layout: a 64x64x8 stage-II step on the CPU
        # takes 2.8-3.0 s instead of 3.2-3.3 s (as in load_model, for inference).
        self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.AdamW(self._param_groups(), lr=cfg.optim.lr,
                                           weight_decay=cfg.optim.weight_decay)
        self.step = 0
        # Training time of the whole run: a resumed run continues the clock of its
        # checkpoint, so its time budget and LR schedule go on from there.
        self.elapsed0 = 0.0
        self._t0: float | None = None
        last = self.out_dir / "last.pt"
        if resume and last.is_file():
            doc = load_checkpoint(last)
            if "optimizer" not in doc:
                raise CheckpointError(last, "holds no optimizer state, cannot resume from it")
            self._load_state(doc["state"])
            self.optimizer.load_state_dict(doc["optimizer"])
            self.step = int(doc["step"])
            self.elapsed0 = float(doc.get("elapsed_s", 0.0))   # older checkpoints: none
        self.ddp = self.trainable
        if self.world > 1:
            self.ddp = nn.parallel.DistributedDataParallel(
                self.trainable, device_ids=[self.device.index] if self.device.type == "cuda"
                else None)

    # --- model -----------------------------------------------------------------------
    @property
    def fem_trains(self) -> bool:
        return self.cfg.stage == 2 and self.cfg.fem_lr_scale > 0

    def _param_groups(self) -> list[dict]:
        """Parameter groups by learning-rate scale: the FEM at ``fem_lr_scale`` when
        stage II fine-tunes it, the windowed analysis and head at ``cloud_lr_scale``,
        the rest (the propagation) at 1. Frozen parameters are left out."""
        if self.cfg.stage != 2:
            return [{"params": [p for p in self.trainable.parameters() if p.requires_grad],
                     "lr_scale": 1.0}]
        scales = {"fem.": self.cfg.fem_lr_scale, "analysis.": self.cfg.cloud_lr_scale,
                  "head.": self.cfg.cloud_lr_scale}
        groups: dict[float, list] = {1.0: []}       # the unscaled group first
        for n, p in self.model.named_parameters():
            if p.requires_grad:
                scale = next((v for k, v in scales.items() if n.startswith(k)), 1.0)
                groups.setdefault(scale, []).append(p)
        return [{"params": ps, "lr_scale": scale} for scale, ps in groups.items() if ps]

    @property
    def span(self) -> int:
        if self.cfg.stage == 1:
            return WINDOW
        if self.cfg.sequence_features:
            return WINDOW + (self.cfg.sequence_features - 1) * self.cfg.model.analysis.stride
        return self.model_config().span

    def model_config(self) -> SCIConfig:
        """Stage II's model: the analysis from this config, the FEM as in the init checkpoint."""
        m = self.cfg.model
        fem = m.fem
        if self._init_doc is not None:
            try:
                fem = build(FEMConfig, self._init_doc["model_config"].get("fem", {}),
                            prefix="model_config.fem.")
            except ConfigError as exc:
                raise CheckpointError(self.cfg.init, exc.problem) from None
        return SCIConfig(task=self.cfg.task, fem=fem, analysis=m.analysis,
                         num_classes=m.num_classes, dropout=m.dropout,
                         propagation=m.propagation, rate=m.rate)

    def _build(self):
        cfg = self.cfg
        if cfg.stage == 1:
            model = FEMStage(cfg.model.fem).to(self.device)
            if cfg.init is not None:     # a stage-1 or stage-2 checkpoint: its FEM, and
                state = load_checkpoint(cfg.init)["state"]     # its light head if it has one
                _load_part(model, state, ("fem.",), cfg.init)
                if any(k.startswith("light_head.") for k in state):
                    _load_part(model, state, ("light_head.",), cfg.init)
            return model, model
        model = SCIModel(self.model_config()).to(self.device)
        if cfg.init_cloud is not None:
            doc = load_checkpoint(cfg.init_cloud)
            if doc["kind"] != "sci" or doc["model_config"].get("task") != cfg.task:
                raise CheckpointError(cfg.init_cloud, f"init_cloud must be a stage-2 {cfg.task} "
                                                      "checkpoint")
            fresh = _load_part(model, doc["state"], ("analysis.", "head."), cfg.init_cloud,
                               partial=True)
            if model.propagation is not None and any(k.startswith("propagation.")
                                                     for k in doc["state"]):
                _load_part(model, doc["state"], ("propagation.",), cfg.init_cloud)
            if model.rate is not None and any(k.startswith("rate.") for k in doc["state"]):
                # blend alone: the gate as trained; the blend may be a new one
                fresh += _load_part(model, doc["state"], ("rate.gate.",), cfg.init_cloud) \
                    if cfg.rate_blend_only else \
                    _load_part(model, doc["state"], ("rate.",), cfg.init_cloud)
            elif cfg.rate_blend_only:
                raise CheckpointError(cfg.init_cloud, "holds no trained rate gate "
                                                      "(rate_blend_only needs one)")
            if fresh and self.rank == 0 and not self.quiet:
                print(f"init_cloud: {len(fresh)} tensors start fresh ({', '.join(fresh[:4])}"
                      f"{', ...' if len(fresh) > 4 else ''})", file=sys.stderr)
        doc = self._init_doc
        fem_state = {k[4:]: v for k, v in doc["state"].items() if k.startswith("fem.")}
        if not fem_state:
            raise CheckpointError(cfg.init, "holds no FEM weights")
        model.fem.load_state_dict(fem_state)
        for p in model.fem.parameters():
            p.requires_grad_(self.fem_trains)
        if cfg.cloud_lr_scale == 0:
            for p in [*model.analysis.parameters(), *model.head.parameters()]:
                p.requires_grad_(False)
        if cfg.rate_blend_only:     # the gate as init_cloud trained it: its means are cached
            for p in model.rate.gate.parameters():
                p.requires_grad_(False)
        model.fem.eval()   # no dropout or batch norm in the FEM: eval mode, trained or not
        return model, model

    def _state(self) -> dict:
        return self.model.state_dict()

    def _load_state(self, state: dict) -> None:
        self.model.load_state_dict(state)

    def _model_config_dict(self) -> dict:
        if self.cfg.stage == 1:
            return {"fem": self.model.fem.config.to_dict()}
        return self.model_config().to_dict()

    # --- data ------------------------------------------------------------------------
    def _rate_cache(self, split: str) -> dict:
        """``rate_blend_only``'s cached blend inputs (``data.cache``; the validation
        split beside it as ``<stem>_val.npz``), built first when missing."""
        from .feature_cache import cache_file
        from .rate_cache import build_rate_cache, load_rate_cache

        cfg = self.cfg

        def build(path, split):
            build_rate_cache(path, cfg.data, self.model, num_steps=self.span,
                             strides=tuple(cfg.blend_strides), cut_prob=cfg.cut_prob,
                             split="train" if split == "train" else "test",
                             items=None if split == "train" else max(cfg.data.val_items, 1),
                             quiet=self.quiet)
        return load_rate_cache(cache_file(cfg.data.cache, split, self.world, build))

    def _train_data(self):
        cfg = self.cfg
        if cfg.rate_blend_only:
            from .rate_cache import CachedBlendSamples

            ds = CachedBlendSamples(self._rate_cache("train"), cfg.data.size, cfg.data.seed,
                                    cfg.count_stride_prob)
            sampler = StreamSampler(self.step, cfg.optim.steps, cfg.optim.batch, self.world,
                                    self.rank)
            return DataLoader(ds, batch_size=cfg.optim.batch, sampler=sampler)
        if cfg.data.dataset == "scenes":
            ds = SceneSamples(cfg.data, self.span)
        else:
            ds = SMNISTSamples(cfg.data, self.span)
        sampler = StreamSampler(self.step, cfg.optim.steps, cfg.optim.batch, self.world, self.rank)
        # Spawned, not forked, workers: GNU OpenMP (torch's and our kernels') is not
        # fork-safe once the parent has used it, e.g. in a second run in one process.
        return DataLoader(ds, batch_size=cfg.optim.batch, sampler=sampler,
                          num_workers=cfg.workers, persistent_workers=False,
                          prefetch_factor=4 if cfg.workers else None,
                          multiprocessing_context="spawn" if cfg.workers else None,
                          worker_init_fn=_single_threaded_worker if cfg.workers else None)

    def _val_batches(self):
        cfg = self.cfg
        if cfg.rate_blend_only:
            from .rate_cache import CachedBlendSamples

            if not hasattr(self, "_val_rate_cache"):
                self._val_rate_cache = self._rate_cache("val")
            cache = self._val_rate_cache
            n = len(cache["alphas"])
            # every validation sample at every stride, in turn
            ds = torch.utils.data.ConcatDataset([
                CachedBlendSamples(cache, cfg.data.size, 0, 0.0, length=n, augment=False,
                                   stride_index=j) for j in range(len(cache["strides"]))])
            return DataLoader(ds, batch_size=8, shuffle=False)
        if cfg.data.dataset == "scenes":
            ds = SceneSamples(cfg.data, self.span, split="test", length=cfg.data.val_items,
                              seed_offset=12345)
        else:
            ds = SMNISTSamples(cfg.data, self.span, split="test")
            ds = torch.utils.data.Subset(ds, range(min(len(ds), cfg.data.val_items)))
        return DataLoader(ds, batch_size=8, shuffle=False)

    # --- steps -----------------------------------------------------------------------
    def _forward(self, batch, train: bool):
        cfg = self.cfg
        net = self.ddp if train else self.trainable
        if cfg.task == "cls":
            spikes, labels = (b.to(self.device) for b in batch)
            logits, features = net(self.model.windows_at(spikes, spikes.shape[1] // 2).float(),
                                   return_features=True)
            loss, m = self._with_smoothness(F.cross_entropy(logits, labels), features,
                                            task_key="ce")
            return loss, {**m, "acc": (logits.argmax(1) == labels).float().mean().item()}
        if cfg.rate_blend_only:
            return self._forward_blend(batch, train)
        spikes, rate, alpha = (b.to(self.device) for b in batch)
        scale = alpha.view(-1, 1, 1, 1)
        if cfg.stage == 1:
            feature, pred = net(spikes.float())
            mse = ((pred - rate) / scale).pow(2).mean()
            lap = laplacian(feature).abs().mean()
            loss = mse + cfg.laplacian_weight * lap
            return loss, {"loss": loss.item(), "mse": mse.item(), "lap_l1": lap.item(),
                          "psnr": _psnr(pred.detach() / scale, rate / scale).mean().item()}
        if cfg.sequence_features and cfg.model.rate.enabled:
            return self._forward_rate(spikes, rate, scale, train)
        if cfg.sequence_features:
            return self._forward_sequence(net, spikes, rate, scale, train)
        pred, features = net(self.model.windows_at(spikes, spikes.shape[1] // 2).float(),
                             return_features=True)
        loss, m = self._with_smoothness(((pred - rate) / scale).pow(2).mean(), features,
                                        task_key="mse")
        return loss, {**m, "psnr": _psnr(pred.detach() / scale, rate / scale).mean().item()}

    def sequence_length(self, train: bool) -> int:
        """Features per training sequence now: the curriculum grows it from 2K+1 to
        ``sequence_features`` (odd throughout); validation always uses them all."""
        cfg = self.cfg
        full, lo = cfg.sequence_features, 2 * cfg.model.analysis.neighbors + 1
        if not train or cfg.curriculum_steps == 0 or self.step >= cfg.curriculum_steps:
            return full
        n = lo + (full - lo) * self.step / cfg.curriculum_steps
        return min(full, int(n) // 2 * 2 + 1)

    def _forward_sequence(self, net, spikes, rate, scale, train: bool):
        """Stage II with propagation: FEM features on the whole sequence's grid (the
        FEM frozen), optionally a scene cut, propagation, then the windowed model at
        the middle feature; MSE on the intensity there."""
        cfg = self.cfg
        s, K = cfg.model.analysis.stride, cfg.model.analysis.neighbors
        n = self.sequence_length(train)
        mid = spikes.shape[1] // 2
        half = (n - 1) // 2
        centres = [mid + k * s for k in range(-half, half + 1)]
        if train and cfg.cut_prob > 0 and spikes.shape[0] > 1:
            spikes = _scene_cuts(spikes, centres, cfg.cut_prob, self.step)
        with torch.no_grad():
            feats = self.model.extract(gather_windows(spikes, centres).float())
        pred = net(None, sequence=feats)
        err = ((pred - rate) / scale).pow(2).flatten(1).mean(1)
        loss = err.mean()
        m = {"psnr": _psnr(pred.detach() / scale, rate / scale).mean().item(),
             "features": float(n)}
        if cfg.no_worse_weight > 0:
            # the windowed model alone on the same features: propagation should never
            # lose to it, so a sequence where it does costs its excess again
            with torch.no_grad():
                base = self.model.analyse(feats[:, half - K:half + K + 1])
                base_err = ((base - rate) / scale).pow(2).flatten(1).mean(1)
            excess = F.relu(err - base_err).mean()
            loss = loss + cfg.no_worse_weight * excess
            m["excess_mse"] = excess.item()
        return loss, {"loss": loss.item(), **m}

    def count_stride(self, train: bool) -> int:
        """The stride of this step's spike counts: the model's, or in a share
        ``count_stride_prob`` of training steps one drawn log-uniformly up to
        ``count_stride_max``."""
        cfg = self.cfg
        s = cfg.model.analysis.stride
        if not train or cfg.count_stride_prob == 0 or cfg.count_stride_max <= s:
            return s
        gen = torch.Generator().manual_seed(10_007 * self.step + 3)
        if float(torch.rand(1, generator=gen)) >= cfg.count_stride_prob:
            return s
        u = float(torch.rand(1, generator=gen))
        return int(round(math.exp(math.log(s) + u * math.log(cfg.count_stride_max / s))))

    def _forward_rate(self, spikes, rate, scale, train: bool):
        """Stage II with the rate integration: the windowed model (frozen) at the
        middle, the spike counts of the sequence (the middle ``sequence_length``
        features' span, at this step's count stride), optionally a scene cut
        outside the windowed model's frames; the loss is the mean log MSE of the
        intensity (every light level and PSNR counts alike) plus ``no_worse_weight``
        times the log excess over the windowed output, plus ``rate_mean_weight``
        times the log MSE of the long mean alone."""
        cfg = self.cfg
        s, K = cfg.model.analysis.stride, cfg.model.analysis.neighbors
        T, mid = spikes.shape[1], spikes.shape[1] // 2
        if train and cfg.cut_prob > 0 and spikes.shape[0] > 1:
            spikes = _far_cuts(spikes, mid, self.model.config.span // 2 + 1, cfg.cut_prob,
                               self.step)
        windows = gather_windows(spikes, [mid + k * s for k in range(-K, K + 1)]).float()
        cs = self.count_stride(train)
        steps = self.sequence_length(train) * s          # the span the curriculum allows
        starts, at = count_grid(T, mid, cs, span=min(steps, T))
        counts = sum_intervals(spikes, starts, cs)
        net = self.ddp if train else self.trainable
        pred, base, mean = net(windows, counts=counts, count_stride=cs, count_at=at)
        loss, m = self._rate_loss(pred, base, rate, scale)
        m["features"] = float(len(starts))
        if cfg.rate_mean_weight > 0:
            # the long mean on its own: the gate learns where to reset even where
            # the blend does not take the mean (yet)
            mean_err = ((mean - rate) / scale).pow(2).flatten(1).mean(1)
            loss = loss + cfg.rate_mean_weight * torch.log(mean_err + LOG_FLOOR).mean()
            m["mean_psnr"] = _psnr(mean.detach() / scale, rate / scale).mean().item()
        m["loss"] = loss.item()
        return loss, m

    def _forward_blend(self, batch, train: bool):
        """``rate_blend_only``: cached windowed output, long mean and reach at the
        item's count stride -> the blend; the rate integration's loss."""
        base, mean, reach, rate, alpha, stride = (b.to(self.device) for b in batch)
        net = self.ddp if train else self.trainable
        pred = net(None, blend=(base, mean, reach, stride))
        scale = alpha.view(-1, 1, 1, 1)
        loss, m = self._rate_loss(pred, base, rate, scale)
        m["mean_psnr"] = _psnr(mean / scale, rate / scale).mean().item()
        m["loss"] = loss.item()
        return loss, m

    def _rate_loss(self, pred, base, rate, scale):
        """The rate integration's loss: the mean log MSE (every light level and PSNR
        counts alike) plus ``no_worse_weight`` times the log excess over the windowed
        output ``base``, per ``no_worse_patch`` patch or per sequence."""
        cfg = self.cfg
        sq = ((pred - rate) / scale).pow(2)
        log_err = torch.log(sq.flatten(1).mean(1) + LOG_FLOOR)
        loss = log_err.mean()
        m = {"psnr": _psnr(pred.detach() / scale, rate / scale).mean().item(),
             "base_psnr": _psnr(base / scale, rate / scale).mean().item()}
        if cfg.no_worse_weight > 0:
            base_sq = ((base - rate) / scale).pow(2)
            if cfg.no_worse_patch:      # patch by patch: no region may lose to the window
                k = cfg.no_worse_patch
                pe = F.avg_pool2d(sq, k, k, ceil_mode=True)
                pb = F.avg_pool2d(base_sq, k, k, ceil_mode=True)
                excess = F.relu(torch.log(pe + LOG_FLOOR) - torch.log(pb + LOG_FLOOR)).mean()
            else:
                base_err = base_sq.flatten(1).mean(1)
                excess = F.relu(log_err - torch.log(base_err + LOG_FLOOR)).mean()
            loss = loss + cfg.no_worse_weight * excess
            m["excess_mse"] = excess.item()
        return loss, m

    def _with_smoothness(self, task_loss, features, task_key: str):
        """Stage II's loss: the task's, plus the Laplacian constraint on every
        feature map when the FEM trains too."""
        if not self.fem_trains:
            return task_loss, {"loss": task_loss.item()}
        lap = laplacian(features.flatten(0, 1)[:, None]).abs().mean()
        loss = task_loss + self.cfg.laplacian_weight * lap
        return loss, {"loss": loss.item(), task_key: task_loss.item(), "lap_l1": lap.item()}

    @torch.no_grad()
    def evaluate(self) -> dict:
        from ..recon import tfp

        was = self.trainable.training
        self.trainable.eval()
        if self.cfg.stage == 2:
            self.model.fem.eval()
        sums: dict[str, float] = {}
        n = 0
        for batch in self._val_batches():
            _, m = self._forward(batch, train=False)
            k = batch[0].shape[0]
            if self.cfg.task == "recon" and not self.cfg.rate_blend_only:
                spikes, rate, alpha = batch
                mid = spikes.shape[1] // 2
                # TFP over the whole sample, the frames the model reads too
                tfp_psnr = [float(_psnr(torch.from_numpy(tfp(s.numpy(), mid, mid, 1.0)
                                                         )[None] / a, r / a))
                            for s, r, a in zip(spikes, rate, alpha)]
                m["tfp_psnr"] = float(np.mean(tfp_psnr))
                if self.cfg.stage == 1:
                    feat, _ = self.trainable(spikes.float().to(self.device))
                    m["lap_l1"], m["lap_l2"] = laplacian_norms(feat)
            for key, v in m.items():
                sums[key] = sums.get(key, 0.0) + v * k
            n += k
        self.trainable.train(was)
        if self.cfg.stage == 2:
            self.model.fem.eval()
        return {f"val_{k}": v / max(n, 1) for k, v in sums.items()}

    @property
    def elapsed(self) -> float:
        """Training time of the whole run so far, in seconds."""
        return self.elapsed0 if self._t0 is None else time.perf_counter() - self._t0

    def save(self, name: str, metrics: dict | None = None) -> Path:
        return save_checkpoint(self.out_dir / name, kind="fem" if self.cfg.stage == 1 else "sci",
                               model_config=self._model_config_dict(), state=self._state(),
                               train_config=self.cfg.to_dict(), step=self.step,
                               optimizer=self.optimizer.state_dict(), metrics=metrics,
                               elapsed_s=self.elapsed)

    def run(self) -> dict:
        from tqdm import tqdm

        cfg = self.cfg
        main = self.rank == 0
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        log_csv = self.out_dir / "log.csv"
        log_jsonl = self.out_dir / "log.jsonl"
        self.trainable.train()
        if cfg.stage == 2:
            self.model.fem.eval()
        bar = tqdm(total=cfg.optim.steps, initial=self.step, disable=self.quiet or not main,
                   desc=f"stage {cfg.stage} {cfg.task}", unit="step")
        started = time.perf_counter()
        metrics: dict = {}
        running: dict[str, float] = {}
        count = 0
        budget = cfg.optim.time_budget_s
        spent = budget > 0 and self.elapsed0 >= budget     # resumed after the budget ran out
        for batch in () if spent else self._train_data():
            if self._t0 is None:
                # The clock runs from the first batch (worker start-up is not training
                # time), so a resumed run's first step sees exactly the saved time.
                self._t0 = time.perf_counter() - self.elapsed0
                elapsed = self.elapsed0
            else:
                elapsed = self.elapsed
            lr = _lr_at(self.step, cfg, elapsed)
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            loss, m = self._forward(batch, train=True)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.trainable.parameters(), cfg.optim.grad_clip)
            self.optimizer.step()
            self.step += 1
            for k, v in m.items():
                running[k] = running.get(k, 0.0) + v
            count += 1
            bar.update(1)
            last = self.step >= cfg.optim.steps or (budget > 0 and elapsed >= budget)
            if self.world > 1 and budget > 0:
                # every rank must stop at the same step, whatever its own clock says
                flag = torch.tensor([float(last)], device=self.device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                last = bool(flag.item())
            if main and (self.step % cfg.log.every == 0 or last):
                row = {"step": self.step, "lr": lr, "elapsed_s": round(self.elapsed, 3),
                       **{k: v / count for k, v in running.items()}}
                if self.step % cfg.log.eval_every == 0 or last:
                    row.update(self.evaluate())
                    metrics = row
                _append_logs(log_csv, log_jsonl, row)
                bar.set_postfix({k: f"{v:.4g}" for k, v in row.items()
                                 if k in ("loss", "psnr", "acc", "bpp", "val_psnr", "val_acc",
                                          "val_bpp", "val_feat_psnr")})
                running, count = {}, 0
            if main and (self.step % cfg.log.checkpoint_every == 0 or last):
                self.save("last.pt", metrics)
            if last:
                break
        bar.close()
        if main:
            self.save("final.pt", metrics)
        if self.world > 1:
            dist.barrier()
        # seconds: this process's share; metrics' elapsed_s: the whole run's training time
        return {"step": self.step, "seconds": time.perf_counter() - started, **metrics}


def _far_cuts(spikes: torch.Tensor, mid: int, keep: int, prob: float, step: int):
    """A scene cut in a share ``prob`` of the sequences, at a random step at least
    ``keep`` steps from the middle: the spikes beyond it come from the next
    sequence of the batch."""
    gen = torch.Generator().manual_seed(7919 * step + 1)
    out = spikes.clone()
    other = spikes.roll(1, dims=0)
    T = spikes.shape[1]
    for b in range(spikes.shape[0]):
        if float(torch.rand(1, generator=gen)) >= prob or mid - keep < 1:
            continue
        d = int(torch.randint(keep, max(keep + 1, min(mid, T - mid)), (1,), generator=gen))
        if float(torch.rand(1, generator=gen)) < 0.5:
            out[b, mid + d:] = other[b, mid + d:]
        else:
            out[b, :mid - d] = other[b, :mid - d]
    return out


def _scene_cuts(spikes: torch.Tensor, centres: list[int], prob: float, step: int):
    """A scene cut in a share ``prob`` of the sequences: the spikes on the far side
    of a random feature boundary (not at the middle window) come from the next
    sequence of the batch, so the target at the middle stays this sequence's."""
    gen = torch.Generator().manual_seed(step)
    out = spikes.clone()
    other = spikes.roll(1, dims=0)
    mid = len(centres) // 2
    for b in range(spikes.shape[0]):
        if float(torch.rand(1, generator=gen)) >= prob:
            continue
        j = int(torch.randint(0, len(centres) - 1, (1,), generator=gen))
        if j == mid or j + 1 == mid:        # keep the middle window whole
            j = mid + 1 if j < mid else mid - 2
        j = min(max(j, 0), len(centres) - 2)
        cut = (centres[j] + centres[j + 1]) // 2 + 1   # between two feature centres
        if j >= mid:
            out[b, cut:] = other[b, cut:]
        else:
            out[b, :cut] = other[b, :cut]
    return out


LOG_COLUMNS = ["step", "lr", "elapsed_s", "loss", "mse", "ce", "psnr", "base_psnr", "mean_psnr",
               "acc", "lap_l1", "bpp", "feat_psnr", "features", "excess_mse", "val_bpp",
               "val_feat_psnr", "val_loss", "val_mse", "val_psnr", "val_base_psnr",
               "val_mean_psnr", "val_tfp_psnr", "val_acc", "val_lap_l1", "val_lap_l2"]


def _append_logs(csv_path: Path, jsonl_path: Path, row: dict) -> None:
    """One JSON object per line, and the same row in a CSV with fixed columns."""
    with open(jsonl_path, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    new = not csv_path.exists()
    with open(csv_path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_COLUMNS, restval="", extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def train(cfg: TrainConfig, *, resume: bool = False, quiet: bool = False) -> dict:
    """Run one training stage; returns the final metrics.

    With ``cfg.workers > 0`` data workers are spawned processes, so a script that
    calls this must guard its entry point with ``if __name__ == "__main__":``."""
    if cfg.stage == 3:
        from .codec import CodecTrainer

        trainer = CodecTrainer(cfg, resume=resume, quiet=quiet)
    else:
        trainer = Trainer(cfg, resume=resume, quiet=quiet)
    try:
        return trainer.run()
    finally:
        if trainer.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
