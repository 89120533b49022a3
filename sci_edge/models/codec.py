"""The learned feature codec: light end-side encoder, heavy cloud-side decoder.

Coding of one feature frame F_t (H, W) at quality index Q, in normalised units
x_t = F_t / gain (the header's camera gain; 1 when unknown), so that a quality
index means the same image quality at every light level:

1. end side: y = g_a(x_t) (C channels at 1/8), u = y / step[Q] per channel,
   q = round(u) (integers). I frame: v = u; P frame: v = u - q_prev.
2. z = h_a(v) (1/32), rounded; coded with a per-channel zero-mean Gaussian table.
3. (mean, index) = integer hyper-synthesis(z) (:mod:`sci_edge.codec.intnet`);
   the symbols q - mean (I) or q - q_prev - mean (P) are coded against the
   Gaussian table ``index``.
4. cloud side: decode z, recompute (mean, index) in integers, decode the
   symbols, q back, y_hat = q * step[Q], x_hat = g_s(y_hat, x_hat_prev), F_hat =
   gain * x_hat.

Everything that selects a table is integer arithmetic on decoded integers,
so streams decode on any hardware; the encoder never runs the decoder (its P
context is q_prev, which it has exactly). Training (``forward``) replaces
rounding by additive uniform noise for the rate and by straight-through
rounding for the decoder.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..codec.entropy import IndexedTables, gaussian_pmf, gaussian_tables, scale_table
from ..codec import quant
from ..codec import skip as blockskip
from ..codec.intnet import IntHyperSynthesis
from ..errors import DataError
from .cloud.decoder import FeatureDecoder
from .end.encoder import FeatureEncoder

MODEL_ID = "sci-codec-1"
# latents at 1/8, hyper-latents at 1/32: frames are padded to this multiple
SPATIAL_MULTIPLE = 32
INTRA, INTER = 0, 1
LIKELIHOOD_FLOOR = 1e-9


@dataclass(frozen=True)
class CodecConfig:
    channels: int = field(default=64, metadata={"min": 1})
    hyper_channels: int = field(default=16, metadata={"min": 1})
    encoder_width: int = field(default=48, metadata={"min": 1})
    hyper_width: int = field(default=64, metadata={"min": 1})
    decoder_width: int = field(default=96, metadata={"min": 2})
    qualities: int = field(default=6, metadata={"min": 1, "max": 64})
    levels: int = field(default=64, metadata={"min": 2, "max": 256})
    scale_min: float = field(default=0.11, metadata={"gt": 0})
    scale_max: float = field(default=256.0, metadata={"gt": 0})

    def __post_init__(self):
        from ..config import check_fields

        check_fields(self)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CodecForward:
    """Training output for a (B, N, H, W) sequence: decoded features (B, N, H, W)
    and estimated bits per frame (B, N) of latents and hyper-latents."""

    decoded: torch.Tensor
    bits_y: torch.Tensor
    bits_z: torch.Tensor

    @property
    def bits(self) -> torch.Tensor:
        return self.bits_y + self.bits_z


@dataclass(frozen=True)
class CodingTables:
    """What ``update()`` builds after training and the weights ship with:
    integer CDFs and the integer hyper-synthesis of I and P frames."""

    gaussian: IndexedTables          # one table per scale level
    hyper: IndexedTables             # one table per (frame kind, hyper channel)
    synthesis: tuple[IntHyperSynthesis, IntHyperSynthesis]   # (intra, inter)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        out.update(self.gaussian.arrays("gaussian"))
        out.update(self.hyper.arrays("hyper"))
        out.update(self.synthesis[0].arrays("hs_intra"))
        out.update(self.synthesis[1].arrays("hs_inter"))
        return out

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> "CodingTables":
        return cls(gaussian=IndexedTables.from_arrays(a, "gaussian"),
                   hyper=IndexedTables.from_arrays(a, "hyper"),
                   synthesis=(IntHyperSynthesis.from_arrays(a, "hs_intra"),
                              IntHyperSynthesis.from_arrays(a, "hs_inter")))


@dataclass
class EncodedFrame:
    kind: int                 # INTRA or INTER
    parts: tuple[bytes, bytes]   # (hyper-latent stream, latent stream)
    symbols: np.ndarray       # q, the frame's integer latents (C, h, w)


def _bin_likelihood(x: torch.Tensor, mean: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    v = (x - mean).abs()
    upper = torch.special.ndtr((0.5 - v) / sigma)
    lower = torch.special.ndtr((-0.5 - v) / sigma)
    return (upper - lower).clamp_min(LIKELIHOOD_FLOOR)


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def padded_size(h: int, w: int) -> tuple[int, int]:
    m = SPATIAL_MULTIPLE
    return h + (-h) % m, w + (-w) % m


class FeatureCodec(nn.Module):
    def __init__(self, config: CodecConfig | None = None):
        super().__init__()
        self.config = c = config or CodecConfig()
        if not c.scale_min < c.scale_max:
            raise DataError("codec config: scale_min must be below scale_max")
        self.encoder = FeatureEncoder(c.channels, c.hyper_channels, c.encoder_width,
                                      c.hyper_width)
        self.decoder = FeatureDecoder(c.channels, c.hyper_channels, c.decoder_width,
                                      c.hyper_width, c.levels)
        # per quality index and channel: log of the quantisation step (index Q-1 finest),
        # from 0.2 to 0.02 in normalised units: about 25 to 45 dB through the block transform
        steps = torch.linspace(math.log(0.2), math.log(0.02), c.qualities) if c.qualities > 1 \
            else torch.full((1,), math.log(0.05))
        self.log_step = nn.Parameter(steps[:, None].repeat(1, c.channels).clone())
        # per frame kind and hyper channel: log scale of z's zero-mean Gaussian prior
        self.z_log_scale = nn.Parameter(torch.full((2, c.hyper_channels), math.log(2.0)))
        self.register_buffer("scales", torch.from_numpy(
            scale_table(c.levels, c.scale_min, c.scale_max)).float(), persistent=False)
        self.tables: CodingTables | None = None

    # ---- shared pieces -------------------------------------------------------------
    def steps(self, quality: torch.Tensor) -> torch.Tensor:
        """(B,) quality indexes -> (B, C, 1, 1) quantisation steps."""
        return self.log_step[quality].exp()[:, :, None, None]

    def sigma(self, index: torch.Tensor) -> torch.Tensor:
        c = self.config
        step = (math.log(c.scale_max) - math.log(c.scale_min)) / (c.levels - 1)
        return torch.exp(math.log(c.scale_min) + index * step)

    def _hyper(self, kind: int):
        if kind == INTRA:
            return self.encoder.hyper_intra, self.decoder.hyper_intra
        return self.encoder.hyper_inter, self.decoder.hyper_inter

    # ---- training ------------------------------------------------------------------
    def forward(self, seq: torch.Tensor, quality: torch.Tensor) -> CodecForward:
        """(B, N, H, W) normalised features (F / gain; H, W multiples of 32), frame 0
        intra, the rest P."""
        B, N, H, W = seq.shape
        if H % SPATIAL_MULTIPLE or W % SPATIAL_MULTIPLE:
            raise DataError(f"training crops must be multiples of {SPATIAL_MULTIPLE}, "
                            f"got {H}x{W}")
        step = self.steps(quality)
        prev_q = None
        prev_dec = seq.new_zeros(B, 1, H, W)
        has_ctx = seq.new_zeros(B)
        decoded, bits_y, bits_z = [], [], []
        for t in range(N):
            kind = INTRA if prev_q is None else INTER
            ha, hs = self._hyper(kind)
            u = self.encoder.analysis(seq[:, t:t + 1]) / step
            v = u if prev_q is None else u - prev_q
            z = ha(v)
            z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5) if self.training \
                else torch.round(z)
            z_scale = self.z_log_scale[kind].exp()[None, :, None, None]
            bits_z.append(-torch.log2(_bin_likelihood(z_noisy, 0.0, z_scale)).sum((1, 2, 3)))
            mean, index = hs(_round_ste(z))
            v_noisy = v + torch.empty_like(v).uniform_(-0.5, 0.5) if self.training \
                else torch.round(v - mean) + mean
            bits_y.append(-torch.log2(_bin_likelihood(v_noisy, mean, self.sigma(index)))
                          .sum((1, 2, 3)))
            y_hat = _round_ste(u) * step
            dec = self.decoder.synthesis(y_hat, prev_dec, has_ctx)
            decoded.append(dec[:, 0])
            prev_q = torch.round(u).detach()
            prev_dec = dec.detach().clamp_min(0.0)
            has_ctx = seq.new_ones(B)
        return CodecForward(decoded=torch.stack(decoded, 1), bits_y=torch.stack(bits_y, 1),
                            bits_z=torch.stack(bits_z, 1))

    # ---- after training: integer tables --------------------------------------------
    @torch.no_grad()
    def update(self, calibration: torch.Tensor) -> dict:
        """Build the integer CDF tables and the integer hyper-synthesis from a
        calibration sequence (B, N, H, W) of features (frame 0 intra, then P).
        Returns the share of (mean, index) values where the integer network
        agrees with the rounded float one (a rate matter only, never a decode one)."""
        was_training = self.training
        self.eval()
        c = self.config
        gauss = gaussian_tables(self.scales.double().numpy())
        pmfs, offsets = [], []
        for kind in (INTRA, INTER):
            for s in self.z_log_scale[kind].exp().double().numpy():
                pmf, half = gaussian_pmf(float(s))
                pmfs.append(pmf)
                offsets.append(-half)
        hyper = IndexedTables.from_pmfs(pmfs, offsets)
        zs = {INTRA: [], INTER: []}
        ys = [self.encoder.analysis(_pad(calibration[:, t:t + 1]))
              for t in range(calibration.shape[1])]       # the same at every quality
        quality = torch.full((calibration.shape[0],), c.qualities - 1, dtype=torch.long)
        for q in range(c.qualities):
            quality.fill_(q)
            step = self.steps(quality)
            prev_q = None
            for t, y in enumerate(ys):
                kind = INTRA if prev_q is None else INTER
                u = y / step
                v = u if prev_q is None else u - prev_q
                zs[kind].append(torch.round(self._hyper(kind)[0](v)))
                prev_q = torch.round(u)
        synth, agree = [], {}
        for kind in (INTRA, INTER):
            z = torch.cat(zs[kind])
            hs = self._hyper(kind)[1]
            net = hs.to_integer(z)
            synth.append(net)
            mean_f, index_f = hs(z)
            same_m = same_i = total = 0
            for i in range(z.shape[0]):
                m_int, i_int = net(z[i].numpy().astype(np.int64))
                same_m += int((torch.round(mean_f[i]).numpy() == m_int).sum())
                same_i += int((torch.round(index_f[i]).numpy() == i_int).sum())
                total += m_int.size
            agree["intra" if kind == INTRA else "inter"] = {
                "mean": same_m / total, "index": same_i / total}
        self.tables = CodingTables(gaussian=gauss, hyper=hyper, synthesis=tuple(synth))
        self.train(was_training)
        return agree

    def _need_tables(self) -> CodingTables:
        if self.tables is None:
            raise DataError("the codec has no integer tables: call update() after training "
                            "(shipped weights have them)")
        return self.tables

    def weights_hash(self) -> bytes:
        """8 bytes of a sha256 over the weights and the coding tables: a stream names
        the exact model it needs."""
        h = hashlib.sha256()
        for k, v in sorted(self.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        if self.tables is not None:
            for k, v in sorted(self.tables.arrays().items()):
                h.update(k.encode())
                h.update(np.ascontiguousarray(v).tobytes())
        return h.digest()[:8]

    # ---- coding one frame ----------------------------------------------------------
    def _hyper_indexes(self, kind: int, shape) -> np.ndarray:
        cz = self.config.hyper_channels
        idx = np.arange(cz, dtype=np.int32) + kind * cz
        return np.broadcast_to(idx[:, None, None], (cz, *shape)).copy()

    @torch.no_grad()
    def encode_frame(self, feature: np.ndarray, quality: int, prev: np.ndarray | None,
                     *, deadzone: float = 0.0,
                     skip: float | None = blockskip.DEFAULT_KAPPA) -> EncodedFrame:
        """One normalised feature frame (H, W) -> its coded parts and its symbols q.
        ``prev``: the previous frame's q for a P frame, None for an I frame;
        ``deadzone``: the encoder's rounding (:func:`sci_edge.codec.quant.symbols`);
        ``skip``: for P frames, skip blocks by :func:`sci_edge.codec.skip.choose` with
        this rate-distortion factor (three parts), or None to code every block (two)."""
        tables = self._need_tables()
        skip = blockskip.check_skip(skip)
        kind = INTRA if prev is None else INTER
        x = torch.from_numpy(np.ascontiguousarray(feature, np.float32))[None, None]
        step = self.steps(torch.tensor([quality]))
        u = self.encoder.analysis(_pad(x)) / step
        v = u if prev is None else u - torch.from_numpy(prev.astype(np.float32))[None]
        z = torch.round(self._hyper(kind)[0](v))[0].numpy().astype(np.int32)
        q_plain = torch.round(u)[0].numpy().astype(np.int32)
        z_index = self._hyper_indexes(kind, z.shape[1:])
        if kind == INTER and skip is not None:
            parts, q = blockskip.code_inter(v[0].numpy(), q_plain, prev, z, tables,
                                            step[0, :, 0, 0].numpy(), z_index,
                                            kappa=skip, deadzone=deadzone)
            return EncodedFrame(kind=kind, parts=parts, symbols=q)
        mean, index = tables.synthesis[kind](z)
        if deadzone == 0.0:       # plain rounding of u itself, as training rounds
            q = q_plain
            sym = q - mean if prev is None else q - prev - mean
        else:
            sym = quant.symbols(v[0].numpy(), mean, deadzone)
            q = sym + mean if prev is None else sym + mean + prev
        z_bytes = tables.hyper.encode(z, z_index)
        y_bytes = tables.gaussian.encode(sym, index)
        return EncodedFrame(kind=kind, parts=(z_bytes, y_bytes), symbols=q)

    def decode_symbols(self, parts, kind: int, prev: np.ndarray | None,
                       size: tuple[int, int]) -> np.ndarray:
        """The integer latents q of a frame from its parts (integer work only): two
        parts, or three for a P frame with skipped blocks (:mod:`sci_edge.codec.skip`)."""
        tables = self._need_tables()
        ph, pw = padded_size(*size)
        zshape = (ph // SPATIAL_MULTIPLE, pw // SPATIAL_MULTIPLE)
        z_index = self._hyper_indexes(kind, zshape)
        if len(parts) == 3 and kind == INTER:
            return blockskip.decode_inter(parts, prev, tables, z_index)
        if len(parts) != 2:
            raise ValueError(f"{len(parts)} parts where the codec writes "
                             f"{'2 or 3' if kind == INTER else '2'}")
        z = tables.hyper.decode(parts[0], z_index)
        mean, index = tables.synthesis[kind](z)
        sym = tables.gaussian.decode(parts[1], index)
        q = sym + mean
        return q if prev is None else q + prev

    @torch.no_grad()
    def reconstruct(self, q: np.ndarray, quality: int, context: np.ndarray | None,
                    size: tuple[int, int]) -> np.ndarray:
        """Decoded normalised feature (H, W) from integer latents and the previous one."""
        step = self.steps(torch.tensor([quality]))
        y_hat = torch.from_numpy(q.astype(np.float32))[None] * step
        ph, pw = padded_size(*size)
        if context is None:
            ctx, flag = torch.zeros(1, 1, ph, pw), torch.zeros(1)
        else:
            ctx, flag = _pad(torch.from_numpy(context)[None, None]), torch.ones(1)
        out = self.decoder.synthesis(y_hat, ctx, flag)[0, 0, :size[0], :size[1]]
        return out.clamp_min(0.0).numpy()

    # ---- persistence ---------------------------------------------------------------
    def state_for_checkpoint(self) -> dict:
        state = {k: v for k, v in self.state_dict().items()}
        if self.tables is not None:
            for k, v in self.tables.arrays().items():
                state[f"tables.{k}"] = torch.from_numpy(np.ascontiguousarray(v))
        return state

    def load_from_checkpoint_state(self, state: dict) -> None:
        tables = {k[len("tables."):]: v.numpy() for k, v in state.items()
                  if k.startswith("tables.")}
        self.load_state_dict({k: v for k, v in state.items() if not k.startswith("tables.")})
        self.tables = CodingTables.from_arrays(tables) if tables else None


def _pad(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = padded_size(h, w)
    if (ph, pw) == (h, w):
        return x
    return F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")


class CodedSCI(nn.Module):
    """An SCI model whose features travel through the codec: the checkpoint kind
    "codec" holds both (the FEM that made the training features, the codec, and
    the cloud side fine-tuned on decoded features in stage III)."""

    def __init__(self, sci_config, codec_config: CodecConfig | None = None):
        super().__init__()
        from .sci import SCIModel

        self.sci = SCIModel(sci_config)
        self.codec = FeatureCodec(codec_config)

    def state_for_checkpoint(self) -> dict:
        state = {f"sci.{k}": v for k, v in self.sci.state_dict().items()}
        state.update({f"codec.{k}": v for k, v in self.codec.state_for_checkpoint().items()})
        return state

    def load_from_checkpoint_state(self, state: dict) -> None:
        self.sci.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("sci.")})
        self.codec.load_from_checkpoint_state(
            {k[6:]: v for k, v in state.items() if k.startswith("codec.")})

    def model_config(self) -> dict:
        return {"sci": self.sci.config.to_dict(), "codec": self.codec.config.to_dict()}


def _referenced_sci(path, ref) -> dict:
    """The "sci." tensors of a weights file a codec file names (checked by sha256)."""
    from .checkpoint import referenced_state

    return {f"sci.{k}": v for k, v in referenced_state(path, ref).items()}


def load_coded(path, *, device: str = "cpu") -> CodedSCI:
    """A CodedSCI from a stage-3 checkpoint or shipped codec weights (weights_only)."""
    from ..config import build
    from ..errors import CheckpointError
    from .checkpoint import load_checkpoint
    from .sci import SCIConfig

    doc = load_checkpoint(path, map_location=device)
    if doc["kind"] != "codec":
        raise CheckpointError(path, f"a {doc['kind']!r} checkpoint, not a codec one "
                                    "(made by sci-edge train --stage 3)")
    mc = doc["model_config"]
    state = dict(doc["state"])
    if "sci_from" in mc:          # the cloud side is a shipped model's, by reference
        state.update(_referenced_sci(path, mc["sci_from"]))
    try:
        model = CodedSCI(SCIConfig.from_dict(mc.get("sci", {})),
                         build(CodecConfig, mc.get("codec", {})))
        model.load_from_checkpoint_state(state)
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(path, f"weights do not fit the codec they describe "
                                    f"({first})") from exc
    return model.eval()
