"""Cloud-side feature decoder: hyper-synthesis (entropy parameters) and the
synthesis transform (latents -> features), which may be heavy.

The hyper-synthesis trains in float; :meth:`HyperSynthesis.to_integer` turns it
into the integer network both sides run at coding time
(:mod:`sci_edge.codec.intnet`). The synthesis of a P frame also reads the
previously decoded feature, a context only the cloud side needs.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...codec.intnet import ACT_MAX, IntHyperSynthesis, quantise_conv
from ..layers import ResBlock, conv1x1, conv3x3

HYPER_UPSCALE = 4
# The last layer's outputs are scaled up: means in symbol units and indexes in table
# levels span tens to hundreds, far more than a parameter moves at a usual learning
# rate; these gains are folded into the weights by to_integer().
MEAN_GAIN = 32.0
INDEX_GAIN = 32.0


class HyperSynthesis(nn.Module):
    """(B, Cz, h, w) rounded hyper-latents -> means and continuous scale indexes,
    each (B, C, 4h, 4w); all layers run at the hyper-latents' resolution and a
    pixel shuffle spreads them, so the integer version stays cheap."""

    def __init__(self, channels: int, hyper_channels: int, width: int, levels: int):
        super().__init__()
        self.channels, self.levels = channels, levels
        r2 = HYPER_UPSCALE ** 2
        self.conv1 = conv3x3(hyper_channels, width)
        self.conv2 = conv3x3(width, width)
        self.conv3 = conv1x1(width, 2 * channels * r2)
        # start at a small scale (a sixth of the table) with zero means
        nn.init.zeros_(self.conv3.weight)
        with torch.no_grad():
            bias = torch.zeros(2 * channels, r2)
            bias[channels:] = levels / 6.0 / INDEX_GAIN
            self.conv3.bias.copy_(bias.reshape(-1))
        gains = torch.cat([torch.full((channels, r2), MEAN_GAIN),
                           torch.full((channels, r2), INDEX_GAIN)]).reshape(-1)
        self.register_buffer("out_gain", gains, persistent=False)

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv3(h) * self.out_gain[None, :, None, None]

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.conv2(F.relu(self.conv1(z))))
        out = F.pixel_shuffle(self._head(h), HYPER_UPSCALE)
        means, index = out.split(self.channels, dim=1)
        return means, index.clamp(0.0, self.levels - 1.0)

    @torch.no_grad()
    def to_integer(self, z_calib: torch.Tensor) -> IntHyperSynthesis:
        """The integer network, activation scales from calibration hyper-latents
        (rounded integers, (N, Cz, h, w)); the last layer outputs whole means and
        indexes, so its scale is 1."""
        a1 = F.relu(self.conv1(z_calib))
        a2 = F.relu(self.conv2(a1))
        s1 = max(float(a1.max()), 1e-6) / ACT_MAX
        s2 = max(float(a2.max()), 1e-6) / ACT_MAX
        # the output range must hold the largest mean any input can give
        layers = (
            quantise_conv(self.conv1.weight.numpy(), self.conv1.bias.numpy(), 1.0, s1, relu=True),
            quantise_conv(self.conv2.weight.numpy(), self.conv2.bias.numpy(), s1, s2, relu=True),
            quantise_conv((self.conv3.weight * self.out_gain[:, None, None, None]).numpy(),
                          (self.conv3.bias * self.out_gain).numpy(), s2, 1.0, relu=False),
        )
        return IntHyperSynthesis(layers=layers, upscale=HYPER_UPSCALE,
                                 channels=self.channels, levels=self.levels)


class SynthesisTransform(nn.Module):
    """(B, C, H/8, W/8) dequantised latents and a (B, 1, H, W) context (the previous
    decoded frame; zeros and flag 0 for I frames) -> (B, 1, H, W) normalised features:
    the inverse block transform (initialised to the inverse DCT) plus a learned
    residual that starts at zero."""

    def __init__(self, channels: int, width: int, blocks: int = 2):
        super().__init__()
        from ..end.encoder import BLOCK, dct_basis

        self.block = nn.Conv2d(channels, BLOCK * BLOCK, 1, bias=False)
        with torch.no_grad():
            self.block.weight.copy_(torch.from_numpy(dct_basis(channels).T).float()[:, :, None, None])
        self.shuffle = nn.PixelShuffle(BLOCK)
        w2 = width // 2
        self.inp = conv3x3(channels, width)
        self.stage1 = nn.Sequential(*[ResBlock(width) for _ in range(blocks)])
        self.up1 = nn.Sequential(conv3x3(width, 4 * w2), nn.PixelShuffle(2))
        self.context_embed = nn.PixelUnshuffle(4)
        self.context = conv3x3(17, w2)       # 16 context values per 4x4 patch + the flag
        self.merge = conv3x3(2 * w2, w2)
        self.stage2 = nn.Sequential(*[ResBlock(w2) for _ in range(blocks)])
        self.up2 = nn.Sequential(conv3x3(w2, 16), nn.PixelShuffle(4))
        nn.init.zeros_(self.up2[0].weight)
        nn.init.zeros_(self.up2[0].bias)

    def forward(self, y_hat: torch.Tensor, context: torch.Tensor, has_context: torch.Tensor):
        x = self.up1(self.stage1(F.relu(self.inp(y_hat))))
        flag = has_context.view(-1, 1, 1, 1).to(x.dtype)
        patches = self.context_embed(context) * flag
        flag = flag.expand(-1, 1, *patches.shape[-2:])
        c = F.relu(self.context(torch.cat([patches, flag], dim=1)))
        x = self.stage2(F.relu(self.merge(torch.cat([x, c], dim=1))))
        return self.shuffle(self.block(y_hat)) + self.up2(x)


class FeatureDecoder(nn.Module):
    """The cloud side of the codec: hyper-synthesis for I and P frames, synthesis."""

    def __init__(self, channels: int, hyper_channels: int, width: int, hyper_width: int,
                 levels: int):
        super().__init__()
        self.hyper_intra = HyperSynthesis(channels, hyper_channels, hyper_width, levels)
        self.hyper_inter = HyperSynthesis(channels, hyper_channels, hyper_width, levels)
        self.synthesis = SynthesisTransform(channels, width)
