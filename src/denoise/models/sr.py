"""Super-resolution models: ESPCN, a compact RDN and bicubic interpolation.

* :class:`ESPCN` (Shi et al., 2016): three convolutions at low resolution (5x5 tanh, 3x3
  tanh, 3x3 to ``channels * scale**2``) and a sub-pixel convolution (PixelShuffle). The
  classic form: the network predicts the whole high-resolution image, not a residual over
  the bicubic upscale (adding one would widen the receptive field to the bicubic kernel's
  and cost an interpolation per tile; left out on purpose).
* :class:`CompactRDN` (Zhang et al., 2018, "Residual Dense Network"): shallow features,
  residual dense blocks (densely connected 3x3 conv+ReLU layers, a 1x1 local feature
  fusion and a local residual), global feature fusion (1x1 then 3x3 over the concatenated
  block outputs) with a global residual, a PixelShuffle upsampler (two x2 stages for x4)
  and an output convolution. The published RDN (16 blocks of 8 layers, 64 features,
  growth 64) has about 22 M parameters; the defaults here (6 blocks of 4 layers, 64
  features, growth 32) have about 1.1-1.3 M, for a CPU.
* :class:`Bicubic`: MATLAB's bicubic upscale (:func:`denoise.degrade.imresize`), the
  training-free baseline of every SR paper.

Every model declares its ``scale`` per instance and an exact ``receptive_field`` in input
(low-resolution) pixels, so tiled inference equals the untiled one.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .base import Restorer
from .registry import register_model, register_weights

#: The upscaling factors the models support.
SCALES = (2, 3, 4)


def _check_scale(scale) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(map(str, SCALES))}, got {scale!r}")
    return scale


def _check_channels(channels) -> int:
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"channels must be 1 (gray or Y) or 3 (RGB), got {channels!r}")
    return channels


def _upsampler_reach(stages: list[int]) -> int:
    """Input pixels reached by the upsampler ([3x3 conv, PixelShuffle(s)] per stage) and
    the output 3x3 conv: the interval of one output pixel, traced back through every stage,
    for every sub-pixel position (HR pixel p sits on pixel p // s of the stage below)."""
    total = math.prod(stages)
    reach = 0
    for p in range(total):
        lo, hi = p - 1, p + 1  # output conv at full resolution
        for s in reversed(stages):
            lo, hi = lo // s - 1, hi // s + 1  # PixelShuffle(s), then the stage's conv
        reach = max(reach, -lo, hi)  # relative to input pixel 0, where p sits
    return reach


class ESPCN(Restorer):
    """ESPCN: sub-pixel convolution super-resolution (pass channels=1 for Y, 3 for RGB)."""

    def __init__(self, channels: int = 1, scale: int = 2, features: tuple[int, int] = (64, 32)) -> None:
        super().__init__()
        self.channels, self.scale = _check_channels(channels), _check_scale(scale)
        f1, f2 = features
        self.body = nn.Sequential(
            nn.Conv2d(channels, f1, 5, padding=2), nn.Tanh(),
            nn.Conv2d(f1, f2, 3, padding=1), nn.Tanh(),
            nn.Conv2d(f2, channels * scale * scale, 3, padding=1),
            nn.PixelShuffle(scale))
        self.receptive_field = 2 + 1 + 1

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        return self.body(x)


class _DenseBlock(nn.Module):
    """Residual dense block: ``layers`` 3x3 conv+ReLU, each fed all earlier outputs
    (concatenated), a 1x1 local feature fusion back to ``features``, a local residual."""

    def __init__(self, features: int, growth: int, layers: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(features + i * growth, growth, 3, padding=1), nn.ReLU(inplace=True))
            for i in range(layers))
        self.fuse = nn.Conv2d(features + layers * growth, features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = x
        for conv in self.convs:
            state = torch.cat([state, conv(state)], 1)
        return x + self.fuse(state)


class CompactRDN(Restorer):
    """Residual Dense Network, compact (about 1.1-1.3 M parameters by default)."""

    def __init__(self, channels: int = 3, scale: int = 2, blocks: int = 6, layers: int = 4,
                 growth: int = 32, features: int = 64) -> None:
        super().__init__()
        self.channels, self.scale = _check_channels(channels), _check_scale(scale)
        for name, v in (("blocks", blocks), ("layers", layers), ("growth", growth), ("features", features)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        g0 = features
        self.shallow1 = nn.Conv2d(channels, g0, 3, padding=1)
        self.shallow2 = nn.Conv2d(g0, g0, 3, padding=1)
        self.blocks = nn.ModuleList(_DenseBlock(g0, growth, layers) for _ in range(blocks))
        self.fusion = nn.Sequential(nn.Conv2d(blocks * g0, g0, 1), nn.Conv2d(g0, g0, 3, padding=1))
        stages = [2, 2] if scale == 4 else [scale]
        up: list[nn.Module] = []
        for s in stages:
            up += [nn.Conv2d(g0, g0 * s * s, 3, padding=1), nn.PixelShuffle(s)]
        self.upsample = nn.Sequential(*up)
        self.tail = nn.Conv2d(g0, channels, 3, padding=1)
        # shallow (2) + blocks (layers 3x3 each) + fusion 3x3 (1), at input resolution;
        # then the upsampler and the output conv (2 pixels for x2, x3 and x4)
        self.receptive_field = 2 + blocks * layers + 1 + _upsampler_reach(stages)

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        first = self.shallow1(x)
        state = self.shallow2(first)
        outs = []
        for block in self.blocks:
            state = block(state)
            outs.append(state)
        state = self.fusion(torch.cat(outs, 1)) + first
        return self.tail(self.upsample(state))


class Bicubic(Restorer):
    """Bicubic upscaling (MATLAB's imresize, Keys a = -0.5): the training-free baseline."""

    #: The scale is chosen per instance (any of :data:`SCALES`), not fixed by the name.
    any_scale = True
    exportable = False
    receptive_field = 2  # the cubic kernel reaches 2 input pixels

    def __init__(self, scale: int = 2) -> None:
        super().__init__()
        self.scale = _check_scale(scale)

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        from ..degrade import imresize

        return imresize(x, self.scale)


register_model("espcn", scale=2, description="ESPCN super-resolution architecture "
               "(pass scale=2|3|4, channels=1 for Y or 3; sub-pixel convolution)")(ESPCN)
register_model("rdn", scale=2, description="compact Residual Dense Network super-resolution "
               "architecture (pass scale=2|3|4; ~1.1 M parameters)")(CompactRDN)
register_model("bicubic", kind="classical", scale=2, description="bicubic upscaling (MATLAB imresize; "
               "denoise upscale's training-free baseline, any scale 2|3|4)")(Bicubic)

#: The compact RDN of the shipped rdn-x* weights (about 0.28 M parameters; configs/rdn-x*.json).
SHIPPED_RDN = {"blocks": 6, "layers": 4, "features": 32, "growth": 16}
for _s in SCALES:
    register_weights(f"espcn-x{_s}", "espcn", scale=_s, channels=3, description=(
        f"ESPCN x{_s}, RGB, trained here on CBSD432 with MATLAB-convention 8-bit bicubic inputs "
        f"(configs/espcn-x{_s}.json)"))
for _s in (2, 4):
    register_weights(f"rdn-x{_s}", "rdn", scale=_s, channels=3, **SHIPPED_RDN, description=(
        f"compact RDN x{_s} (6 blocks x 4 layers, 32 features), RGB, trained here on CBSD432 with "
        f"MATLAB-convention 8-bit bicubic inputs (configs/gpu/rdn-x{_s}.json)"))
