"""A learned blur-width estimator: a small CNN that reads the Gaussian blur width of a
low-resolution image directly, for a Gaussian blur then an x2 decimation.

:func:`denoise.blur.estimate_blur` fits the kernel through a frozen SR network; a network
trained on bicubic inputs returns a blurred input still blurred, which biases that fit low
(``benchmarks/results/blur_estimation_rdn-x2.md``). This module skips the network: a
regressor (:class:`BlurWidthNet`, about 106k parameters) trained on synthetic degradations
predicts ``log(width)`` (width: the standard deviation of the Gaussian, in high-resolution
pixels, as :func:`denoise.degrade.blur_decimate`'s ``width``) from the image's luma.

Training (``benchmarks/train_blur_width.py``; the shipped weights' card,
``denoise/weights/blur-width-x2.json``, records the run): random 128x128 crops of CBSD432
(its last 20 images held out for validation), random flips and 90-degree rotations, a
Gaussian blur of width drawn log-uniformly in [0.3, 3.0] HR pixels, phase-0 x2 decimation
(``blur_decimate``), rounding to 8 bits, then luma Y (``rgb_to_y``). The network sees each
64x64 LR window with its mean removed and divided by its standard deviation (the log of
that standard deviation is a feature of the head, so it can tell 8-bit rounding from
detail); it predicts ``log(width)`` and a log scale ``s`` of its own error (a Laplace
likelihood), used to weight the windows.

Inference (:func:`estimate_width`): the image's luma (Y of RGB as ``rgb_to_y``; a gray
image as Y of the same gray on three channels) is cut into :data:`WINDOW` x :data:`WINDOW`
windows on an even grid (at most :data:`MAX_GRID` per side; an image smaller than a window
but at least :data:`MIN_SIDE` pixels is one window), each seen in up to 8 flips/rotations
(the Gaussian is isotropic; :data:`BUDGET` network passes in all), and the predictions of
``log(width)`` are averaged with weights ``exp(-2 s)``. Scale 2 only: the blur a network
sees after an x3 or x4 decimation is another problem.

Measured (``benchmarks/results/blur_estimation_learned.md``; Set5/Set14 128x128 centre crops,
widths 0.8, 1.0, 1.2, 1.6, 2.0, the protocol of ``benchmarks/blur_estimation.py``): within
10% of the true width in 59 of 95 cases (by width 5, 9, 15, 15, 15 of 19), mean absolute
relative error 9.4%, largest 32%, biased high by 6% on average; the fit through the frozen
``rdn-x2`` is within 10% in none (mean error 62%). About 20 ms for a 64x64 image and 60 ms
for 256x256 on one CPU thread. On the 20 held-out CBSD432 images: 91 of 100 within 10%,
mean error 5.3%.

What it cannot know: the sharpness of the scene itself. An image whose content was already
soft (out of focus, smooth) reads as blurred by about the width that would make a typical
CBSD432 photo that soft; an image sharper than those photos (rendered text, drawings) reads
too narrow. The estimator is only trained on Gaussian blur with exact x2 decimation and 8-bit
rounding: noise, JPEG or another kernel shape are out of its training distribution.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
from torch import nn

from .errors import InputError
from .symmetries import transform
from .utils import check_image

__all__ = ["BUDGET", "MAX_GRID", "MIN_SIDE", "NAME", "WINDOW", "BlurWidthNet", "estimate_width",
           "load_estimator", "luma", "predict_windows", "weights_path"]

#: The shipped weights' name (``denoise/weights/NAME.safetensors`` and its card ``NAME.json``).
NAME = "blur-width-x2"
#: The LR window side the network was trained on (pixels).
WINDOW = 64
#: The smallest image side accepted (pixels); smaller images hold too little detail.
MIN_SIDE = 32
#: At most this many windows per side of the image (a ``MAX_GRID x MAX_GRID`` grid).
MAX_GRID = 8
#: Network passes per image: windows times flips/rotations (8 per window at most).
BUDGET = 32
#: The smallest window standard deviation the normalisation divides by (0-1 scale).
MIN_STD = 1.0 / 255.0
#: Clamp of the predicted log scale ``s`` (its weights stay within a factor e^12).
LOG_SCALE_RANGE = (-4.0, 2.0)


class BlurWidthNet(nn.Module):
    """Regressor of ``(log width, log error scale)`` from normalised LR luma windows.

    Six 3x3 convolutions without padding (``widths`` channels, the 3rd and 5th with stride
    2), ReLU, then the spatial mean of the last features and the window's ``log(std)``
    into a two-layer head. Input ``(N, 1, H, W)`` with ``H, W >= 32``: windows already
    normalised (:meth:`normalise`); output ``(N, 2)``.
    """

    def __init__(self, widths: tuple[int, int, int] = (24, 48, 64), hidden: int = 64) -> None:
        super().__init__()
        a, b, c = widths
        self.features = nn.Sequential(
            nn.Conv2d(1, a, 3), nn.ReLU(inplace=True),
            nn.Conv2d(a, a, 3), nn.ReLU(inplace=True),
            nn.Conv2d(a, b, 3, stride=2), nn.ReLU(inplace=True),
            nn.Conv2d(b, b, 3), nn.ReLU(inplace=True),
            nn.Conv2d(b, c, 3, stride=2), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Linear(c + 1, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 2))

    @staticmethod
    def normalise(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(windows - mean) / std`` per window and ``log(std)`` (N, 1); std at least
        :data:`MIN_STD`."""
        mean = y.mean(dim=(-2, -1), keepdim=True)
        std = y.std(dim=(-2, -1), keepdim=True).clamp_min(MIN_STD)
        return (y - mean) / std, std.log().reshape(-1, 1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """``y``: luma windows (N, 1, H, W) on the 0-1 scale; returns (N, 2): predicted
        ``log(width)`` (HR pixels) and the log scale of its error."""
        z, log_std = self.normalise(y)
        f = self.features(z).mean(dim=(-2, -1))
        out = self.head(torch.cat([f, log_std], 1))
        return torch.stack([out[:, 0], out[:, 1].clamp(*LOG_SCALE_RANGE)], 1)


def weights_path() -> Path:
    """The shipped weights, ``denoise/weights/blur-width-x2.safetensors``."""
    from .models.registry import WEIGHTS_DIR

    return WEIGHTS_DIR / f"{NAME}.safetensors"


@functools.lru_cache(maxsize=4)
def _load(path: str) -> BlurWidthNet:
    from .models.registry import load_weights

    net = BlurWidthNet()
    load_weights(net, path)  # safetensors, strict; ModelError when missing or mismatched
    return net.eval().requires_grad_(False)


def load_estimator(path: str | Path | None = None) -> BlurWidthNet:
    """The regressor with the shipped weights (or the safetensors file ``path``), in eval
    mode, loaded once and cached."""
    return _load(str(weights_path() if path is None else Path(path)))


def luma(image: torch.Tensor) -> torch.Tensor:
    """The luma the network reads, (N, 1, H, W) float32: BT.601 Y of RGB as
    :func:`denoise.degrade.rgb_to_y`; a gray image is taken as the same gray on all three
    channels (``Y = (16 + 219 g) / 255``)."""
    from .degrade import rgb_to_y

    x = image.detach().to("cpu", torch.float64)
    if x.shape[1] == 1:
        return ((16.0 + 219.0 * x) / 255.0).float()
    return rgb_to_y(x).float()


def _starts(length: int, count: int, size: int) -> list[int]:
    if count <= 1:
        return [(length - size) // 2]
    return [round(i * (length - size) / (count - 1)) for i in range(count)]


def _windows(y: torch.Tensor) -> torch.Tensor:
    """The windows of one luma image (1, 1, H, W), in all their views: (M, 1, S, S)."""
    h, w = y.shape[-2:]
    if min(h, w) < WINDOW:  # one window: the largest square
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        crops = [y[..., top:top + side, left:left + side]]
    else:
        rows = min(MAX_GRID, math.ceil(h / WINDOW))
        cols = min(MAX_GRID, math.ceil(w / WINDOW))
        crops = [y[..., t:t + WINDOW, c:c + WINDOW] for t in _starts(h, rows, WINDOW)
                 for c in _starts(w, cols, WINDOW)]
    views = max(1, min(8, BUDGET // len(crops)))
    batch = torch.cat(crops, 0)
    return torch.cat([transform(batch, k) for k in range(views)], 0)


def _check(image, scale) -> None:
    from .upscale import check_scale

    check_image(image, "the image")
    scale = check_scale(scale)
    if scale != 2:
        raise InputError(f"the learned blur-width estimator is trained for x2 only, got scale {scale}; "
                         "use the fit through an SR model (denoise.blur.estimate_blur, "
                         "estimate-blur --method fit) for other scales")
    if image.shape[0] != 1:
        raise InputError(f"the learned blur-width estimator takes one image at a time, got a batch "
                         f"of {image.shape[0]}")
    h, w = image.shape[-2:]
    if min(h, w) < MIN_SIDE:
        raise InputError(f"the image ({h}x{w} pixels) is too small for the learned blur-width "
                         f"estimator; give at least {MIN_SIDE}x{MIN_SIDE} pixels")
    lo, hi = float(image.min()), float(image.max())
    if lo < -0.01 or hi > 1.01:
        raise InputError(f"the image must hold values in [0, 1], got [{lo:.3g}, {hi:.3g}]; "
                         "divide 8-bit images by 255")


def predict_windows(image: torch.Tensor, net: BlurWidthNet | None = None) -> torch.Tensor:
    """The network's ``(log width, log scale)`` for every window and view of ``image``
    ``(1, C, H, W)`` (already checked), (M, 2)."""
    net = load_estimator() if net is None else net
    batch = _windows(luma(image))
    with torch.no_grad():
        return net(batch).double()


def estimate_width(image: torch.Tensor, scale: int = 2, *, net: BlurWidthNet | None = None) -> float:
    """The Gaussian blur width (standard deviation, in high-resolution pixels) that
    ``image`` -- one low-resolution image ``(1, C, H, W)``, C 1 or 3, values in [0, 1] --
    went through before an x2 decimation, by the learned regressor (see the module
    docstring). Divide by ``scale`` for the width in the image's own pixels.

    ``scale`` must be 2. ``net``: a :class:`BlurWidthNet` to use instead of the shipped
    weights. InputError for a bad image (shape, dtype, non-finite or out-of-range values, a
    batch of several), a side under :data:`MIN_SIDE` pixels or another scale; ModelError when
    the shipped weights are missing.
    """
    _check(image, scale)
    out = predict_windows(image, net)
    weights = torch.exp(-2.0 * out[:, 1])
    log_width = float((weights * out[:, 0]).sum() / weights.sum())
    return math.exp(log_width)
