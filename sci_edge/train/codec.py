"""Stage III (paper Fig. 7c): the feature codec, then the cloud side on decoded features.

- task ``codec``: the FEM and the cloud side of a stage-2 checkpoint (``init``)
  stay frozen; the codec trains on FEM features of the samples' 2K+1 windows
  (frame 0 intra, the rest P) with R + lambda_Q * D per quality index Q drawn
  per sample; D is the feature MSE in image units (divided by the gain, as the
  reconstruction loss is).
- task ``recon``: from a trained codec (``init_codec``), the FEM, the encoder,
  the quantisation steps and the hyper-latent priors stay frozen; the decoder
  (synthesis and hyper-synthesis), the analysis module and the head fine-tune
  on R + lambda_Q * D_task with D_task the reconstruction MSE.

The loop, logs, checkpoints, time budgets, resume and DDP are the common
:class:`~sci_edge.train.loop.Trainer`'s. Checkpoints are of kind "codec" and
final.pt carries the integer tables (``FeatureCodec.update``)."""
from __future__ import annotations

import sys

import torch
from torch import nn

from ..errors import CheckpointError
from ..models.checkpoint import load_checkpoint, save_checkpoint
from ..models.codec import CodedSCI, load_coded
from ..models.sci import SCIConfig
from .loop import Trainer, _psnr

# samples whose features calibrate the integer hyper-synthesis when final.pt is saved
CALIBRATION_BATCHES = 2


class Stage3Net(nn.Module):
    """What trains in stage 3, as one module with a forward (for DDP): features and
    quality indexes -> (decoded features, bits per frame, task output or None)."""

    def __init__(self, model: CodedSCI, task: str):
        super().__init__()
        self.codec, self.sci, self.task = model.codec, model.sci, task

    def forward(self, x: torch.Tensor, quality: torch.Tensor, gain: torch.Tensor):
        out = self.codec(x, quality)
        pred = None if self.task == "codec" else \
            self.sci.analyse((out.decoded * gain[:, None]).clamp(0.0, 1.0))
        return out.decoded, out.bits, pred


class CodecTrainer(Trainer):
    @property
    def fem_trains(self) -> bool:
        return False

    @property
    def span(self) -> int:
        return self.model.sci.config.span

    def _build(self):
        cfg = self.cfg
        if cfg.task == "codec":
            doc = load_checkpoint(cfg.init)
            if doc["kind"] != "sci" or doc["model_config"].get("task") != "recon":
                raise CheckpointError(cfg.init, "stage 3 / codec needs init = a stage-2 recon "
                                                "checkpoint (e.g. sci_edge/weights/sci_recon.pt)")
            model = CodedSCI(SCIConfig.from_dict(doc["model_config"]), cfg.model.codec)
            model.sci.load_state_dict(doc["state"])
            frozen = [model.sci]
        else:
            model = load_coded(cfg.init_codec)
            if model.sci.config.task != cfg.task:
                raise CheckpointError(cfg.init_codec, f"its cloud side is for task "
                                                      f"{model.sci.config.task!r}, not {cfg.task!r}")
            if len(cfg.lambdas) != model.codec.config.qualities:
                raise CheckpointError(cfg.init_codec, f"the codec has "
                                                      f"{model.codec.config.qualities} quality "
                                                      f"indexes, the config {len(cfg.lambdas)} "
                                                      "lambdas")
            frozen = [model.sci.fem, model.codec.encoder]
            model.codec.log_step.requires_grad_(False)
            model.codec.z_log_scale.requires_grad_(False)
        for part in frozen:
            part.requires_grad_(False)
            part.eval()
        model.to(self.device)
        trainable = Stage3Net(model, cfg.task)
        if self.rank == 0 and not self.quiet:
            n = sum(p.numel() for p in trainable.parameters() if p.requires_grad)
            print(f"stage 3 / {cfg.task}: {n} trainable parameters", file=sys.stderr)
        self._frozen = frozen
        return model, trainable

    # --- data: cached FEM features (data.cache) or simulated on the fly ---------------
    def _cache(self, split: str) -> dict | None:
        from .feature_cache import build_feature_cache, cache_file, load_feature_cache

        cfg = self.cfg
        if cfg.data.cache is None:
            return None

        def build(path, split):
            build_feature_cache(path, cfg.data, self.model.sci,
                                split="train" if split == "train" else "test",
                                items=None if split == "train" else max(cfg.data.val_items, 1),
                                workers=cfg.workers, quiet=self.quiet)
        return load_feature_cache(cache_file(cfg.data.cache, split, self.world, build))

    def _train_data(self):
        from torch.utils.data import DataLoader

        from .feature_cache import CachedFeatureSamples
        from .loop import StreamSampler

        cache = self._cache("train")
        if cache is None:
            return super()._train_data()
        cfg = self.cfg
        ds = CachedFeatureSamples(cache, cfg.data.size, cfg.data.seed)
        sampler = StreamSampler(self.step, cfg.optim.steps, cfg.optim.batch, self.world,
                                self.rank)
        return DataLoader(ds, batch_size=cfg.optim.batch, sampler=sampler)

    def _val_batches(self):
        from torch.utils.data import DataLoader

        from .feature_cache import CachedFeatureSamples

        if not hasattr(self, "_val_cache"):
            self._val_cache = self._cache("val")
        if self._val_cache is None:
            return super()._val_batches()
        n = len(self._val_cache["alphas"])
        ds = CachedFeatureSamples(self._val_cache, self.cfg.data.size, 0, length=n,
                                  augment=False)
        return DataLoader(ds, batch_size=8, shuffle=False)

    def _state(self) -> dict:
        return self.model.state_for_checkpoint()

    def _load_state(self, state: dict) -> None:
        self.model.load_from_checkpoint_state(state)

    def _model_config_dict(self) -> dict:
        return self.model.model_config()

    @torch.no_grad()
    def _features(self, spikes: torch.Tensor) -> torch.Tensor:
        if self.cfg.data.cache is not None:      # cached samples carry their features
            return spikes
        sci = self.model.sci
        windows = sci.windows_at(spikes, spikes.shape[1] // 2).float()
        return sci.extract(windows)

    def _forward(self, batch, train: bool):
        cfg = self.cfg
        codec = self.model.codec
        spikes, rate, alpha = (b.to(self.device) for b in batch)
        for part in self._frozen:
            part.eval()
        features = self._features(spikes)
        n = cfg.codec_frames
        if cfg.task == "codec" and 0 < n < features.shape[1]:
            start = int(torch.randint(0, features.shape[1] - n + 1, (1,)))
            features = features[:, start:start + n]
        B, N, H, W = features.shape
        quality = torch.randint(0, codec.config.qualities, (B,), device=self.device)
        lam = torch.tensor(cfg.lambdas, device=self.device)[quality]
        net = self.ddp if train else self.trainable
        scale = alpha.view(-1, 1, 1)
        x = features / scale[:, None]          # the codec codes F / gain
        decoded, bits, pred = net(x, quality, scale)
        bpp = bits.sum(1) / (N * H * W)
        feat_mse = (decoded - x).pow(2).mean((1, 2, 3))
        m = {"bpp": bpp.mean().item(),
             "feat_psnr": (-10 * torch.log10(feat_mse.detach().clamp_min(1e-10))).mean().item()}
        if cfg.task == "codec":
            loss = (bpp + lam * feat_mse).mean()
            return loss, {"loss": loss.item(), **m}
        mse = ((pred - rate) / scale[:, None]).pow(2).mean((1, 2, 3))
        loss = (bpp + lam * mse).mean()
        return loss, {"loss": loss.item(), "mse": mse.mean().item(), **m,
                      "psnr": _psnr(pred.detach() / scale[:, None],
                                    rate / scale[:, None]).mean().item()}

    @torch.no_grad()
    def evaluate(self) -> dict:
        was = self.trainable.training
        self.trainable.eval()
        sums: dict[str, float] = {}
        n = 0
        gen = torch.get_rng_state()
        torch.manual_seed(0)            # the same quality draws at every evaluation
        for batch in self._val_batches():
            _, m = self._forward(batch, train=False)
            k = batch[0].shape[0]
            for key, v in m.items():
                sums[key] = sums.get(key, 0.0) + v * k
            n += k
        torch.set_rng_state(gen)
        self.trainable.train(was)
        return {f"val_{k}": v / max(n, 1) for k, v in sums.items()}

    def save(self, name: str, metrics: dict | None = None):
        if name == "final.pt":
            self.update_tables()
        return save_checkpoint(self.out_dir / name, kind="codec",
                               model_config=self._model_config_dict(), state=self._state(),
                               train_config=self.cfg.to_dict(), step=self.step,
                               optimizer=self.optimizer.state_dict(), metrics=metrics,
                               elapsed_s=self.elapsed)

    @torch.no_grad()
    def update_tables(self) -> dict:
        """The codec's integer tables from validation features (FeatureCodec.update)."""
        feats = []
        for i, batch in enumerate(self._val_batches()):
            if i >= CALIBRATION_BATCHES:
                break
            f = self._features(batch[0].to(self.device)).cpu()
            feats.append(f / batch[2].view(-1, 1, 1, 1))
        codec = self.model.codec
        codec.cpu()
        agree = codec.update(torch.cat(feats))
        codec.to(self.device)
        self.table_agreement = agree
        return agree
