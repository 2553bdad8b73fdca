"""U-Nets for denoising: the Noise2Noise U-Net and a small U-Net for 32x32 inputs.

Both take any image size: the input is padded (reflect) to a multiple of the network's
total down-sampling factor and the output cropped back. ``sigma`` is accepted for the
common denoiser signature and ignored (the networks are blind to the noise level).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Restorer
from .registry import register_model, register_weights


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``x`` (N, C, H, W) at the bottom and right to a multiple of ``multiple``.

    Reflect padding is used, repeated as often as needed for images smaller than the pad
    (a single reflect pad must be smaller than the image). Returns the padded tensor and
    the original (H, W) to crop back to.

    While tracing (ONNX or TorchScript export, :mod:`denoise.deploy`) the same padding is
    computed from the runtime shape instead (:func:`pad_to_multiple_traceable`): the loop
    below would be recorded with the example's sizes as constants.
    """
    if torch.jit.is_tracing():
        return pad_to_multiple_traceable(x, multiple)
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    while ph or pw:
        step_h, step_w = min(ph, x.shape[-2] - 1), min(pw, x.shape[-1] - 1)
        if step_h == 0 and step_w == 0:  # a 1-pixel side cannot reflect: replicate
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
            break
        x = F.pad(x, (0, step_w, 0, step_h), mode="reflect")
        ph, pw = ph - step_h, pw - step_w
    return x, (h, w)


def _reflect_index(n: torch.Tensor | int, size: torch.Tensor | int, device: torch.device) -> torch.Tensor:
    """Source indices of the ``size`` samples of a side of length ``n`` reflected at its
    end as often as needed (period ``2 (n - 1)``; a 1-pixel side is replicated)."""
    period = 2 * n - 2
    r = torch.arange(size, device=device) % (period + (n == 1))  # n = 1: r % 1 = 0
    return torch.where(r < n, r, period - r)


def pad_to_multiple_traceable(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple]:
    """:func:`pad_to_multiple` as index arithmetic on the shape (equal values): a trace of
    it pads any image size, not only the example's. The repeated reflect pads of the loop
    are one reflection of period ``2 (H - 1)``, gathered along each side."""
    h, w = x.shape[-2], x.shape[-1]
    th = (h + multiple - 1) // multiple * multiple
    tw = (w + multiple - 1) // multiple * multiple
    x = x.index_select(-2, _reflect_index(h, th, x.device))
    x = x.index_select(-1, _reflect_index(w, tw, x.device))
    return x, (h, w)


def conv_receptive_radius(layers: list[tuple[str, int]]) -> int:
    """Upper bound of the radius (pixels) of input that can affect one output pixel.

    ``layers`` lists the deepest path from input to output as ``("conv", k)`` (k x k,
    stride 1), ``("pool", 2)`` (2x2, stride 2) and ``("up", 2)`` (nearest or 2x2
    transposed, factor 2). A k x k conv at input spacing ``j`` reaches ``(k // 2) * j``
    further. Pooling and the matching up-sampling only select the block of side
    ``2 ** levels`` an output pixel lies in, which adds at most ``2 ** levels - 1``
    (the block's misalignment) once, however many levels there are.
    """
    radius, jump, max_jump = 0, 1, 1
    for kind, k in layers:
        if kind == "conv":
            radius += (k // 2) * jump
        elif kind == "pool":
            jump *= k
            max_jump = max(max_jump, jump)
        elif kind == "up":
            jump //= k
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
    return radius + max_jump - 1


class N2NUNet(Restorer):
    """The Noise2Noise U-Net (Lehtinen et al. 2018, appendix A.1).

    48 features, five 2x2 max-poolings, leaky ReLU 0.1, nearest up-sampling with skip
    concatenations (the last one with the input itself) and a linear 3x3 output conv.

    ``residual=True`` adds the input to the output (the network predicts the negative
    noise, as DnCNN does), with the output conv initialised to zero so that training
    starts from the identity; the output stays linear. It converges much faster than the
    paper's plain form (``residual=False``), which matters on small compute budgets.
    """

    depth = 5
    alignment = 2 ** depth

    def __init__(self, channels: int = 3, features: int = 48, residual: bool = False):
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.channels = channels
        self.residual = residual
        f, f2 = features, 2 * features
        self.enc0 = nn.Conv2d(channels, f, 3, padding=1)
        self.enc = nn.ModuleList([nn.Conv2d(f, f, 3, padding=1) for _ in range(6)])  # enc_conv1..6
        # dec5 sees up(enc6) + pool4; dec4..dec2 see up(dec) + a pooled skip (f2 + f channels).
        self.dec_a = nn.ModuleList([nn.Conv2d(2 * f if i == 0 else f2 + f, f2, 3, padding=1)
                                    for i in range(4)])
        self.dec_b = nn.ModuleList([nn.Conv2d(f2, f2, 3, padding=1) for _ in range(4)])
        self.dec1a = nn.Conv2d(f2 + channels, 64, 3, padding=1)
        self.dec1b = nn.Conv2d(64, 32, 3, padding=1)
        self.dec1c = nn.Conv2d(32, channels, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0.1, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)
        if residual:
            nn.init.zeros_(self.dec1c.weight)
        else:
            nn.init.kaiming_normal_(self.dec1c.weight, nonlinearity="linear")
        self.receptive_field = conv_receptive_radius(self.layer_path())

    @classmethod
    def layer_path(cls) -> list[tuple[str, int]]:
        """The deepest input-to-output path, for :func:`conv_receptive_radius`."""
        enc = [("conv", 3), ("conv", 3), ("pool", 2)] + [("conv", 3), ("pool", 2)] * 4 + [("conv", 3)]
        dec = [("up", 2), ("conv", 3), ("conv", 3)] * 4 + [("up", 2)] + [("conv", 3)] * 3
        return enc + dec

    @staticmethod
    def _act(x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 0.1)

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:  # noqa: ARG002 - blind
        inp, (h, w) = pad_to_multiple(x, 2 ** self.depth)
        act = self._act
        y = act(self.enc0(inp))
        skips = []
        for i in range(5):  # enc_conv1..5, each followed by a pool
            y = F.max_pool2d(act(self.enc[i](y)), 2)
            skips.append(y)
        y = act(self.enc[5](y))  # enc_conv6 at 1/32 resolution
        for i in range(4):  # dec5..dec2: up, concat with pool4..pool1
            y = F.interpolate(y, scale_factor=2, mode="nearest")
            y = torch.cat([y, skips[3 - i]], dim=1)
            y = act(self.dec_b[i](act(self.dec_a[i](y))))
        y = F.interpolate(y, scale_factor=2, mode="nearest")
        y = torch.cat([y, inp], dim=1)
        y = act(self.dec1b(act(self.dec1a(y))))
        y = self.dec1c(y)[..., :h, :w]
        return x + y if self.residual else y


class SmallUNet(Restorer):
    """A small U-Net for 32x32 inputs: four encoder blocks (PReLU), sigmoid output.

    Encoder blocks at 32, 16, 8 and 4 pixels (for a 32x32 input) with ``features``,
    2x, 2x and 4x features; transposed-conv up-sampling with skip concatenations.
    """

    depth = 3
    alignment = 2 ** depth

    def __init__(self, channels: int = 3, features: int = 32):
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.channels = channels
        widths = [features, 2 * features, 2 * features, 4 * features]

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.PReLU(cout),
                                 nn.Conv2d(cout, cout, 3, padding=1), nn.PReLU(cout))

        self.encoders = nn.ModuleList()
        cin = channels
        for wd in widths:
            self.encoders.append(block(cin, wd))
            cin = wd
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for skip in reversed(widths[:-1]):
            self.ups.append(nn.ConvTranspose2d(cin, skip, 2, stride=2))
            self.decoders.append(block(2 * skip, skip))
            cin = skip
        self.head = nn.Conv2d(cin, channels, 1)
        path = ([("conv", 3)] * 2 + [("pool", 2)]) * 3 + [("conv", 3)] * 2 \
            + ([("up", 2)] + [("conv", 3)] * 2) * 3
        self.receptive_field = conv_receptive_radius(path)

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:  # noqa: ARG002 - blind
        y, (h, w) = pad_to_multiple(x, 2 ** self.depth)
        skips = []
        for i, enc in enumerate(self.encoders):
            if i:
                y = F.max_pool2d(y, 2)
            y = enc(y)
            skips.append(y)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips[:-1])):
            y = dec(torch.cat([up(y), skip], dim=1))
        return torch.sigmoid(self.head(y))[..., :h, :w]


register_model("n2n-unet", description="Noise2Noise U-Net architecture (pass channels=1|3)")(N2NUNet)
register_model("unet-small", description="Small U-Net for 32x32 inputs (PReLU, sigmoid output)")(SmallUNet)
register_weights("n2n-unet-gray", "n2n-unet", channels=1, residual=True, description=(
    "Noise2Noise U-Net (residual), gray, trained with noisy targets on Train400, blind Gaussian sigma 0-50"))
register_weights("n2n-unet-color", "n2n-unet", channels=3, residual=True, description=(
    "Noise2Noise U-Net (residual), color, trained with noisy targets on CBSD432, blind Gaussian sigma 0-50"))
register_weights("ee559-project1", "unet-small", channels=3, features=32, description=(
    "EE-559 mini-project 1 (unet-small, Noise2Noise on the course's 32x32 color crops)"))
