"""Long-term feature analysis: align neighbouring features to t and fuse them.

Associated Feature Regression (AFR, paper Eq. 9 / Fig. 6): a neighbour's
feature is first warped by its motion vectors (large motion), then a
deformable convolution, whose offsets are regressed from the warped neighbour,
the centre and the motion, aligns the sub-pixel rest. The neighbours before t
form the previous branch, those after t the subsequent branch; each branch is
merged, and [previous, centre, subsequent] are fused into Y_t.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from ..layers import ResBlock, conv1x1, conv3x3
from .deform import DeformConv2d, deform_columns
from .flow import FlowEstimator, warp


@dataclass(frozen=True)
class AnalysisConfig:
    neighbors: int = field(default=2, metadata={"min": 1})       # K features on each side of t
    stride: int = field(default=7, metadata={"min": 1})          # spike steps between features
    width: int = field(default=24, metadata={"min": 1})
    fuse_blocks: int = field(default=2, metadata={"min": 0})     # ResBlocks after fusion, at
                                                                 # each U-Net level
    encoder_blocks: int = field(default=1, metadata={"min": 0})  # ResBlocks of the per-feature
                                                                 # encoder
    fuse_levels: int = field(default=0, metadata={"min": 0})     # U-Net levels of the fusion
                                                                 # (0: full resolution only)

    def __post_init__(self):
        # checked here, not only when loading a TOML file: checkpoints and code build it too
        from ...config import check_fields

        check_fields(self)

    def to_dict(self) -> dict:
        return asdict(self)


class AFR(nn.Module):
    """Associated Feature Regression for one branch: warp + deformable alignment."""

    def __init__(self, width: int):
        super().__init__()
        self.offsets = nn.Sequential(conv3x3(2 * width + 2, width), nn.LeakyReLU(0.1),
                                     conv3x3(width, 18))
        nn.init.zeros_(self.offsets[-1].weight)
        nn.init.zeros_(self.offsets[-1].bias)
        self.deform = DeformConv2d(width, width)

    def forward(self, centre, neighbour, flow):
        warped = warp(neighbour, flow)
        offset = self.offsets(torch.cat([centre, warped, flow], dim=1))
        return F.leaky_relu(self.deform(warped, offset), 0.1)


class UNetFuse(nn.Module):
    """ResBlocks at full resolution (width w) and at ``levels`` coarser scales
    (width 2w; stride-2 convs down, bilinear up, additive skips): a wide receptive
    field for the fusion at little cost per pixel, and few enough weights to ship."""

    def __init__(self, width: int, blocks: int, levels: int):
        super().__init__()
        widths = [width * min(2 ** i, 2) for i in range(levels + 1)]
        self.enc = nn.ModuleList(nn.Sequential(*[ResBlock(w) for _ in range(blocks)])
                                 for w in widths)
        self.down = nn.ModuleList(conv3x3(a, b, stride=2) for a, b in zip(widths, widths[1:]))
        self.up = nn.ModuleList(conv1x1(b, a) for a, b in zip(widths, widths[1:]))
        self.dec = nn.ModuleList(ResBlock(w) for w in widths[:-1])

    def forward(self, x):
        skips = []
        for i, enc in enumerate(self.enc):
            if i:
                x = F.leaky_relu(self.down[i - 1](x), 0.1)
            x = enc(x)
            skips.append(x)
        for i in reversed(range(len(self.down))):
            up = F.interpolate(x, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            x = self.dec[i](skips[i] + self.up[i](up))
        return x


class LongTermAnalysis(nn.Module):
    """Features (B, 2K+1, H, W) at times t-K*s .. t+K*s -> Y_t (B, width, H, W).

    ``flows`` (B, 2K, 2, H, W), the motion of each neighbour onto t in pixels,
    may come from the codec; without them the module estimates its own.
    H and W must be multiples of 4 (SCIModel pads)."""

    def __init__(self, config: AnalysisConfig | None = None):
        super().__init__()
        self.config = config = config or AnalysisConfig()
        w, K = config.width, config.neighbors
        self.encode = nn.Sequential(conv3x3(1, w), nn.LeakyReLU(0.1),
                                    *[ResBlock(w) for _ in range(config.encoder_blocks)])
        self.flow = FlowEstimator(w)
        self.afr_prev = AFR(w)
        self.afr_next = AFR(w)
        self.merge_prev = conv1x1(K * w, w)
        self.merge_next = conv1x1(K * w, w)
        body = ([UNetFuse(w, config.fuse_blocks, config.fuse_levels)] if config.fuse_levels
                else [ResBlock(w) for _ in range(config.fuse_blocks)])
        self.fuse = nn.Sequential(conv1x1(3 * w, w), nn.LeakyReLU(0.1), *body)

    def estimate_flows(self, features: torch.Tensor) -> torch.Tensor:
        B, N, H, W = features.shape
        K = self.config.neighbors
        centre = features[:, K:K + 1]
        neighbours = [features[:, i:i + 1] for i in range(N) if i != K]
        ref = centre.expand(-1, len(neighbours), -1, -1).reshape(B * (N - 1), 1, H, W)
        nb = torch.cat(neighbours, dim=1).reshape(B * (N - 1), 1, H, W)
        return self.flow(ref, nb).view(B, N - 1, 2, H, W)

    def encode_features(self, features: torch.Tensor) -> torch.Tensor:
        """(B, N, H, W) features -> (B, N, width, H, W): each feature alone, so an
        encoding can be shared by every output that reads that feature."""
        B, N, H, W = features.shape
        return self.encode(features.reshape(B * N, 1, H, W)).view(B, N, -1, H, W)

    def forward(self, features: torch.Tensor, flows: torch.Tensor | None = None,
                encoded: torch.Tensor | None = None, fast: bool = False):
        """``encoded``: ``encode_features(features)`` computed beforehand (cached).
        ``fast``: the inference forms of AFR (:meth:`AFR.forward_fast`), the same
        output to ~1e-6; training and the reference path use the plain forms."""
        B, N, H, W = features.shape
        K = self.config.neighbors
        if N != 2 * K + 1:
            raise ValueError(f"expected {2 * K + 1} features, got {N}")
        if flows is None:
            flows = self.estimate_flows(features)
        enc = self.encode_features(features) if encoded is None else encoded
        centre = enc[:, K]
        if fast:
            prev, nxt = self._align_fast(enc, flows)
        else:
            prev = torch.cat([self.afr_prev(centre, enc[:, i], flows[:, i]) for i in range(K)], 1)
            nxt = torch.cat([self.afr_next(centre, enc[:, K + 1 + i], flows[:, K + i])
                             for i in range(K)], 1)
        y = torch.cat([self.merge_prev(prev), centre, self.merge_next(nxt)], dim=1)
        return self.fuse(y), flows

    def _align_fast(self, enc: torch.Tensor, flows: torch.Tensor):
        """Inference form of both AFR branches: (previous, subsequent) aligned
        neighbours, (B, K*width, H, W) each, as ``torch.cat`` of the AFR outputs.

        Same math as AFR.forward, arranged for the CPU: the weight-free sampling
        (warps and the deformable taps) of all 2K neighbours runs as one batch,
        since ``grid_sample`` spreads a batch, not one image, over threads; the
        centre's share of each branch's offset conv is computed once, not K
        times; the deformable kernel is one GEMM on the sampled columns. Float
        sums run in another order (outputs differ by ~1e-6)."""
        B, N, w, H, W = enc.shape
        K = self.config.neighbors
        # grid_sample gathers channels-last input about 4x faster than NCHW (the
        # layout its own output has) on the CPU: both samplings read channels-last
        cl = torch.channels_last
        nb = torch.cat([enc[:, :K], enc[:, K + 1:]], 1).reshape(B * 2 * K, w, H, W)
        warped = warp(nb.contiguous(memory_format=cl), flows.reshape(B * 2 * K, 2, H, W))
        warped = warped.contiguous(memory_format=cl)
        flows5 = flows.reshape(B, 2 * K, 2, H, W)
        warped5 = warped.view(B, 2 * K, w, H, W)
        centre = enc[:, K]
        offsets = []
        for j, afr in enumerate((self.afr_prev, self.afr_next)):
            first = afr.offsets[0]
            part = slice(j * K, (j + 1) * K)
            ct = F.conv2d(centre, first.weight[:, :w], first.bias, padding=first.padding)
            h = F.conv2d(torch.cat([warped5[:, part].reshape(B * K, w, H, W),
                                    flows5[:, part].reshape(B * K, 2, H, W)], 1),
                         first.weight[:, w:], None, padding=first.padding)
            h = (h.view(B, K, w, H, W) + ct[:, None]).view(B * K, w, H, W)
            offsets.append(afr.offsets[2](afr.offsets[1](h)).view(B, K, -1, H, W))
        off = torch.cat(offsets, 1).reshape(B * 2 * K, -1, H, W)
        dc = self.afr_prev.deform
        k = dc.weight.shape[-1]
        cols = deform_columns(warped, off, k, k, dc.padding).view(B, 2 * K, w * k * k, H * W)
        out = []
        for j, afr in enumerate((self.afr_prev, self.afr_next)):
            c = cols[:, j * K:(j + 1) * K]
            y = torch.matmul(afr.deform.weight.reshape(w, -1), c) + afr.deform.bias.view(1, 1, w, 1)
            out.append(F.leaky_relu(y, 0.1).view(B, K * w, H, W))
        return out[0], out[1]
