"""Conv-deconv denoisers with symmetric skip connections: RED-Net and the gated DSC network.

**RED-Net** (Mao, Shen and Yang 2016, "Image restoration using very deep convolutional
encoder-decoder networks with symmetric skip connections"), the full-resolution denoising
variant: ``depth / 2`` 3x3 convolutions (ReLU) then ``depth / 2`` mirrored 3x3 transposed
convolutions. Every second convolution's output is added to the output of its mirrored
transposed convolution before that one's ReLU, and the input is added to the output
(residual form; the last layer starts at zero, so training starts from the identity).

**DSC** ("direct symmetric connections" with gates): five 3x3 convolutions (the first at
full resolution, four with stride 2; 64, 64, 128, 256, 512 features) and five mirrored 3x3
transposed convolutions back to full resolution, ReLU after each but the last (linear, so
that the residual can be negative). With ``X_i`` the output of conv ``i``, the main path
into conv ``i + 1`` is ``delta_i * X_i`` and the mirrored transposed conv ``i`` (the one
that takes ``X_i``'s shape back to ``X_{i-1}``'s) gets ``Y_i + (1 - delta_i) * X_i``, ``Y_i``
being the decoder's feature of that shape. The gates are fixed (the report's 0.1, 0.2, 0.3,
0.4), learned (one scalar per connection, kept in (0, 1)) or absent (``delta = 1``, no
skips: the plain 10-layer network). The input is padded to a multiple of 16 (four stride-2
stages) and the output cropped back.

Both are blind (``sigma`` is ignored).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .base import Restorer
from .registry import register_model, register_weights
from .unet import pad_to_multiple

#: The report's fixed gates delta_1..delta_4 (main path after conv 1..4).
DEFAULT_GATES = (0.1, 0.2, 0.3, 0.4)
#: DSC feature widths of conv 1..5.
DSC_WIDTHS = (64, 64, 128, 256, 512)
#: Learned gates are ``EPS + (1 - 2 EPS) * sigmoid(logit)``: strictly inside (0, 1) even in
#: float32, where a plain sigmoid rounds to exactly 0 or 1 for large logits.
GATE_EPS = 1e-3


def _check_channels(channels) -> int:
    if isinstance(channels, bool) or channels not in (1, 3):
        raise InputError(f"channels must be 1 (gray) or 3 (color), got {channels!r}")
    return int(channels)


def _init_relu(m: nn.Module) -> None:
    """He initialisation for a conv or transposed conv followed by a ReLU, zero bias."""
    # a stride-1 transposed conv's inputs per output are in_channels * k * k, which torch
    # counts as the weight's fan_out (its weight is (in, out, k, k))
    mode = "fan_out" if isinstance(m, nn.ConvTranspose2d) else "fan_in"
    nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
    nn.init.zeros_(m.bias)


class REDNet(Restorer):
    """RED-Net (Mao et al. 2016): conv/deconv chain, a symmetric skip every two layers,
    residual output. ``depth`` 20 or 30 in the paper (any even depth >= 6 here)."""

    uses_sigma = False

    def __init__(self, channels: int = 3, depth: int = 20, features: int = 64):
        super().__init__()
        self.channels = _check_channels(channels)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 6 or depth % 2:
            raise InputError(f"RED-Net depth must be an even integer >= 6 (the paper uses 20 or 30), "
                             f"got {depth!r}")
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise InputError(f"features must be a positive integer, got {features!r}")
        self.depth, self.features = depth, features
        n = depth // 2
        self.convs = nn.ModuleList(
            [nn.Conv2d(channels if i == 0 else features, features, 3, padding=1) for i in range(n)])
        self.deconvs = nn.ModuleList(
            [nn.ConvTranspose2d(features, channels if j == n - 1 else features, 3, padding=1)
             for j in range(n)])
        for m in list(self.convs) + list(self.deconvs)[:-1]:
            _init_relu(m)
        nn.init.zeros_(self.deconvs[-1].weight)
        nn.init.zeros_(self.deconvs[-1].bias)
        #: 1-based conv layers whose outputs are skipped (every second one, below the middle).
        self.skip_from = tuple(range(2, n, 2))
        # ``depth`` stride-1 3x3 layers, each reaching one pixel further; the skips are
        # shorter paths. Zero padding at a tile's edge is within that reach.
        self.receptive_field = depth

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        n = self.depth // 2
        y, skips = x, {}
        for k, conv in enumerate(self.convs, start=1):
            y = F.relu(conv(y))
            if k in self.skip_from:
                skips[k] = y
        for j, deconv in enumerate(self.deconvs, start=1):
            y = deconv(y)  # deconv j gives the shape of conv n - j's output
            if j == n:
                break
            if n - j in skips:
                y = y + skips[n - j]
            y = F.relu(y)
        return x + y


def _dsc_radius() -> int:
    """Exact radius (input pixels) that can affect one DSC output pixel, by interval
    arithmetic along one axis over every output phase modulo 16, taking the union of the
    main path and the skips at each level (an upper bound for any gates and weights).

    Backwards through the layers (indices at level ``l`` are in units of ``2 ** l``): a
    stride-1 3x3 layer widens [a, b] to [a - 1, b + 1]; a stride-2 3x3 conv (padding 1)
    maps output [a, b] to input [2a - 1, 2b + 1]; a stride-2 3x3 transposed conv (padding 1,
    output padding 1) maps output [a, b] to input [floor(a / 2), ceil(b / 2)].
    """
    levels = len(DSC_WIDTHS) - 1
    worst = 0
    for p in range(2 ** levels):
        dec = [(p - 1, p + 1)]  # inputs of deconv 1..5 (level 0..4) a pixel p depends on
        for _ in range(levels):
            a, b = dec[-1]
            dec.append((a // 2, -(-b // 2)))
        need = dec[levels]  # X_5 = the input of deconv 5, at level 4
        for level in range(levels - 1, -1, -1):  # X_4 .. X_1 (level 3 .. 0)
            a, b = 2 * need[0] - 1, 2 * need[1] + 1  # through conv level + 2 (stride 2)
            need = (min(a, dec[level][0]), max(b, dec[level][1]))  # with the skip into deconv
        a, b = need[0] - 1, need[1] + 1  # through conv 1
        worst = max(worst, p - a, b - p)
    return worst


class GatedDSC(Restorer):
    """The gated conv-deconv network with direct symmetric connections (DSC).

    ``gates``: ``"fixed"`` (``fixed`` = delta_1..delta_4, buffers), ``"learned"`` (one
    parameter per connection, ``delta = eps + (1 - 2 eps) sigmoid(logit)``, initialised at
    ``fixed``) or ``"none"`` (the plain 10-layer network). ``output``: ``"residual"`` (input
    plus the network, last layer zero: identity at start) or ``"direct"``.
    """

    uses_sigma = False
    alignment = 2 ** (len(DSC_WIDTHS) - 1)  # four stride-2 stages
    receptive_field = _dsc_radius()  # 32

    def __init__(self, channels: int = 3, gates: str = "fixed", fixed: Sequence[float] = DEFAULT_GATES,
                 output: str = "residual"):
        super().__init__()
        self.channels = _check_channels(channels)
        if gates not in ("fixed", "learned", "none"):
            raise InputError(f"gates must be 'fixed', 'learned' or 'none', got {gates!r}")
        if output not in ("residual", "direct"):
            raise InputError(f"output must be 'residual' or 'direct', got {output!r}")
        self.gate_mode, self.output = gates, output
        n = len(DSC_WIDTHS)
        if gates != "none":
            values = _check_gates(fixed, n - 1)
            if gates == "fixed":
                self.register_buffer("gate_values", torch.tensor(values, dtype=torch.float32))
            else:
                q = [(v - GATE_EPS) / (1 - 2 * GATE_EPS) for v in values]
                self.gate_logits = nn.Parameter(torch.tensor([math.log(t / (1 - t)) for t in q]))
        widths = (channels,) + DSC_WIDTHS
        self.convs = nn.ModuleList(
            [nn.Conv2d(widths[i], widths[i + 1], 3, stride=1 if i == 0 else 2, padding=1) for i in range(n)])
        # deconvs[i] mirrors convs[i]: back from widths[i + 1] to widths[i] features
        self.deconvs = nn.ModuleList(
            [nn.ConvTranspose2d(widths[i + 1], widths[i], 3, stride=1 if i == 0 else 2, padding=1,
                                output_padding=0 if i == 0 else 1) for i in range(n)])
        for m in list(self.convs) + list(self.deconvs)[1:]:
            _init_relu(m)
        last = self.deconvs[0]
        if output == "residual":
            nn.init.zeros_(last.weight)
        else:
            nn.init.kaiming_normal_(last.weight, mode="fan_out", nonlinearity="linear")
        nn.init.zeros_(last.bias)

    def gates(self) -> torch.Tensor | None:
        """delta_1..delta_4 (a tensor in (0, 1)), or None for the plain network."""
        if self.gate_mode == "fixed":
            return self.gate_values
        if self.gate_mode == "learned":
            return GATE_EPS + (1 - 2 * GATE_EPS) * torch.sigmoid(self.gate_logits)
        return None

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        inp, (h, w) = pad_to_multiple(x, self.alignment)
        delta = self.gates()
        y, feats = inp, []
        for i, conv in enumerate(self.convs):
            if i and delta is not None:
                y = delta[i - 1] * y  # main path into conv i + 1 (1-based)
            y = F.relu(conv(y))
            feats.append(y)  # X_{i+1}
        for i in range(len(self.deconvs) - 1, -1, -1):
            if i < len(self.deconvs) - 1 and delta is not None:
                y = y + (1 - delta[i]) * feats[i]  # skip from X_{i+1} into its mirror
            y = self.deconvs[i](y)
            if i:
                y = F.relu(y)
        y = y[..., :h, :w]
        return x + y if self.output == "residual" else y


def _check_gates(fixed, count: int) -> list[float]:
    """The gate values as floats, each strictly inside (0, 1); InputError otherwise."""
    try:
        values = [float(v) for v in fixed]
    except (TypeError, ValueError):
        raise InputError(f"gate values must be {count} numbers in (0, 1), got {fixed!r}") from None
    if len(values) != count:
        raise InputError(f"gate values must be {count} numbers in (0, 1) (one per connection), "
                         f"got {len(values)}")
    bad = [v for v in values if not 0 < v < 1]  # also rejects nan
    if bad:
        raise InputError(f"gate values must lie strictly between 0 and 1, got {bad[0]!r} in {values}")
    return values


register_model("rednet", description="RED-Net conv-deconv denoiser with symmetric skips "
               "(pass depth=20|30, channels=1|3; blind, residual)")(REDNet)
register_model("dsc", description="Gated conv-deconv denoiser with direct symmetric connections "
               "(pass gates=fixed|learned|none, channels=1|3; blind)")(GatedDSC)
register_weights("rednet-mixed-color", "rednet", channels=3, depth=20, description=(
    "RED-Net-20, color, trained with clean targets on CBSD432 for Gaussian (sigma 0-50) plus salt-and-pepper "
    "(p 0-0.2) noise, blind (the variant that won benchmarks/gates_claim.py)"))
