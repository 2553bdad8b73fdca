"""FFDNet and DnCNN: the supervised convolutional denoisers of Zhang et al. (2017, 2018).

FFDNet works at half resolution: the image is split into its four 2x2 polyphase
sub-images (pixel-unshuffle), a noise-level map is appended as extra input channels, a
plain chain of 3x3 convolutions (conv+ReLU, conv+BN+ReLU in the middle, a linear conv
at the end) predicts the four sub-images of the residual, and pixel-shuffle puts them
back. The map lets one network serve every noise level in its training range, and lets
the user trade detail for smoothness by scaling it (``strength``); it may vary across
the image (a tensor map). Here the network predicts the noise (residual form, last conv
initialised to zero: training starts from the identity), which converges faster than
the paper's direct form at the same cost.

DnCNN is the reference architecture of the field: a full-resolution chain of 3x3
convolutions with batch normalisation predicting the noise, blind to its level.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .base import Restorer
from .registry import register_model, register_weights
from .unet import pad_to_multiple

#: The noise range (0-1 scale) FFDNet is trained on; a sigma above it is extrapolation.
SIGMA_MAX = 75 / 255


def _chain(cin: int, cout: int, features: int, layers: int, *, bn: bool = True) -> nn.Sequential:
    """conv+ReLU, (layers - 2) x conv+BN+ReLU, conv: the DnCNN/FFDNet body."""
    mods: list[nn.Module] = [nn.Conv2d(cin, features, 3, padding=1), nn.ReLU(inplace=True)]
    for _ in range(layers - 2):
        mods += [nn.Conv2d(features, features, 3, padding=1, bias=not bn)]
        if bn:
            mods.append(nn.BatchNorm2d(features))
        mods.append(nn.ReLU(inplace=True))
    last = nn.Conv2d(features, cout, 3, padding=1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    mods.append(last)
    for m in mods[:-1]:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return nn.Sequential(*mods)


def noise_map(sigma, x: torch.Tensor) -> torch.Tensor:
    """The noise-level map (N, 1 or C, H, W) of ``sigma`` for images ``x`` (N, C, H, W).

    ``sigma`` is a number, a tensor of shape (N,) (one level per image) or a map of shape
    (N, 1, H, W) or (N, C, H, W) (a level per pixel, and per channel); 0-1 scale.
    """
    n, c, h, w = x.shape
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.ndim == 0:
        return s.expand(n, 1, h, w)
    if s.ndim == 1:
        if s.shape[0] not in (1, n):
            raise InputError(f"sigma has {s.shape[0]} values for a batch of {n} images")
        return s.reshape(-1, 1, 1, 1).expand(n, 1, h, w)
    if s.ndim == 4 and s.shape[0] in (1, n) and s.shape[1] in (1, c) and tuple(s.shape[2:]) == (h, w):
        return s.expand(n, s.shape[1], h, w)
    raise InputError(f"a noise map must have shape (N, 1, H, W) or (N, {c}, H, W) = "
                     f"({n}, 1|{c}, {h}, {w}); got {tuple(s.shape)}")


class FFDNet(Restorer):
    """FFDNet: 2x pixel-unshuffle, noise-level map input, conv+BN+ReLU chain, pixel-shuffle.

    Defaults follow the paper: 15 layers of 64 features for gray, 12 of 96 for color.
    ``forward(x, sigma)`` needs ``sigma`` (0-1 scale; see :func:`noise_map`).

    ``blind=True`` drops the map input: the same half-resolution body, blind to the noise
    level (``sigma`` is ignored). The ``real-*`` models use it for camera noise, whose
    level varies with brightness and whose pixels are correlated by demosaicing: the 2x2
    pixel-unshuffle puts a Bayer cell's neighbours into channels of one position.
    """

    uses_sigma = True
    alignment = 2  # the 2x2 pixel-unshuffle grid
    #: The largest noise level of the training range (0-1 scale); above it is extrapolation.
    sigma_max = SIGMA_MAX

    def __init__(self, channels: int = 1, features: int | None = None, layers: int | None = None,
                 blind: bool = False):
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        features = features or (64 if channels == 1 else 96)
        layers = layers or (15 if channels == 1 else 12)
        if layers < 3:
            raise ValueError(f"layers must be at least 3, got {layers}")
        self.channels = channels
        self.blind = bool(blind)
        self.uses_sigma = not self.blind
        self.body = _chain(4 * channels + (0 if self.blind else channels), 4 * channels, features, layers)
        # each 3x3 conv at half resolution reaches 2 pixels further, plus the 2x2 block
        self.receptive_field = 2 * layers + 1

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        inp, (h, w) = pad_to_multiple(x, 2)
        if self.blind:
            return x + F.pixel_shuffle(self.body(F.pixel_unshuffle(inp, 2)), 2)[..., :h, :w]
        if sigma is None:
            raise InputError("FFDNet needs the noise level sigma (0-1 scale)")
        m = noise_map(sigma, x)
        if m.shape[-2:] != inp.shape[-2:] or torch.jit.is_tracing():  # traced: any size
            m, _ = pad_to_multiple(m.contiguous(), 2)
        # the map at half resolution: the mean level of each 2x2 block, per channel
        m = F.avg_pool2d(m, 2).expand(-1, self.channels, -1, -1)
        y = torch.cat([F.pixel_unshuffle(inp, 2), m], dim=1)
        return x + F.pixel_shuffle(self.body(y), 2)[..., :h, :w]


class DnCNN(Restorer):
    """DnCNN: a full-resolution chain of 3x3 convolutions (BN in the middle) predicting
    the noise; 17 layers for gray, 20 for color, 64 features. Blind: ``sigma`` is ignored."""

    uses_sigma = False

    def __init__(self, channels: int = 1, features: int = 64, layers: int | None = None):
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        layers = layers or (17 if channels == 1 else 20)
        self.channels = channels
        self.body = _chain(channels, channels, features, layers)
        self.receptive_field = layers

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:  # noqa: ARG002 - blind
        return x + self.body(x)


register_model("ffdnet", description="FFDNet architecture (pass channels=1|3; noise-level map input)")(FFDNet)
register_model("dncnn", description="DnCNN architecture (pass channels=1|3; blind, residual)")(DnCNN)
register_weights("ffdnet-gray", "ffdnet", channels=1, description=(
    "FFDNet, gray, trained with clean targets on Train400, Gaussian sigma 0-75 (noise-level map input)"))
register_weights("ffdnet-color", "ffdnet", channels=3, description=(
    "FFDNet, color, trained with clean targets on CBSD432, Gaussian sigma 0-75 (noise-level map input)"))
register_weights("real-color", "ffdnet", channels=3, features=80, layers=12, blind=True, description=(
    "Real photos, color: blind FFDNet body (12 layers of 80 features at half resolution) trained with clean "
    "targets on CBSD432 with camera noise (unprocessed Poisson-Gaussian raw noise, demosaicing, in-camera "
    "chroma noise reduction, tone curve, sharpening, JPEG), last on targets cleaned by an earlier stage"))
register_weights("real-gray", "ffdnet", channels=1, features=64, layers=12, blind=True, description=(
    "Real photos, gray: blind FFDNet body (12 layers of 64 features at half resolution) trained with clean "
    "targets on CBSD432 turned gray after camera noise (demosaicing-correlated, JPEG)"))
