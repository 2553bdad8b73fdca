"""Image quality metrics, one value per image: PSNR, SSIM and the residual's spread.

All take two batches ``(N, C, H, W)`` of the same shape and return a tensor ``(N,)`` in
the inputs' dtype; sums run in float64. ``data_range`` is the distance between the
darkest and the brightest possible value: 1.0 by default, the library's images being in
[0, 1]; pass 255 for 8-bit levels. A set's score is the mean of its per-image values.

The metrics measure what they are given: clip and quantise the outputs first
(:func:`denoise.io.quantize`) to score the images as saved to 8-bit files.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .errors import InputError

__all__ = ["psnr", "ssim", "residual_std", "SSIM_WINDOW", "SSIM_SIGMA"]

#: SSIM's Gaussian window (Wang et al. 2004): 11 taps, standard deviation 1.5 pixels.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03


def _check_pair(x, y, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Both images as float64, after checking they are (N, C, H, W) batches of one shape."""
    for label, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4 or not t.is_floating_point():
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise InputError(f"{name}: {label} must be a float tensor (N, C, H, W), got {got}")
    if x.shape != y.shape:
        raise InputError(f"{name}: x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.numel() == 0:
        raise InputError(f"{name}: empty images {tuple(x.shape)}")
    return x.to(torch.float64), y.to(torch.float64)


def _check_range(data_range, name: str) -> float:
    try:
        value = float(data_range)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{name}: data_range must be a positive number (1.0 for images in [0, 1], "
                         f"255 for 8-bit levels), got {data_range!r}")
    return value


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of each image: ``10 log10(data_range^2 / MSE)``.

    Identical images give ``inf``.
    """
    peak = _check_range(data_range, "psnr")
    a, b = _check_pair(x, y, "psnr")
    mse = (a - b).square().flatten(1).mean(dim=1)
    return (10.0 * torch.log10(peak ** 2 / mse)).to(x.dtype)


def residual_std(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Standard deviation of ``x - y`` over each image's pixels and channels (population,
    i.e. divided by the count). ``residual_std(noisy, clean)`` measures the noise level."""
    a, b = _check_pair(x, y, "residual_std")
    return (a - b).flatten(1).std(dim=1, correction=0).to(x.dtype)


def _gaussian_window(device: torch.device) -> torch.Tensor:
    radius = SSIM_WINDOW // 2
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    window = torch.exp(-taps.square() / (2 * SSIM_SIGMA ** 2))
    return window / window.sum()


def _local_mean(images: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Gaussian-weighted mean over every full window: (B, 1, H, W) -> (B, 1, H - 10, W - 10)."""
    size = window.numel()
    images = F.conv2d(images, window.view(1, 1, size, 1))
    return F.conv2d(images, window.view(1, 1, 1, size))


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity of each image (Wang et al. 2004), mean over its channels.

    Gaussian window (11 taps, sigma 1.5), K1 = 0.01, K2 = 0.03, population covariances.
    The SSIM map is averaged over the positions where the window fits entirely inside
    the image, which equals ``skimage.metrics.structural_similarity(x, y,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=...,
    channel_axis=0)`` (it filters with reflected borders, then crops 5 pixels per side).
    Images must be at least 11x11.
    """
    peak = _check_range(data_range, "ssim")
    a, b = _check_pair(x, y, "ssim")
    n, c, h, w = a.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise InputError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {h}x{w}")
    window = _gaussian_window(a.device)
    stack = torch.cat([a, b, a * a, b * b, a * b]).reshape(5 * n * c, 1, h, w)
    mu_a, mu_b, mean_aa, mean_bb, mean_ab = _local_mean(stack, window).reshape(5, n, c, h - SSIM_WINDOW + 1, w - SSIM_WINDOW + 1)
    var_a = mean_aa - mu_a.square()
    var_b = mean_bb - mu_b.square()
    cov = mean_ab - mu_a * mu_b
    c1, c2 = (_K1 * peak) ** 2, (_K2 * peak) ** 2
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a.square() + mu_b.square() + c1) * (var_a + var_b + c2))
    return index.flatten(1).mean(dim=1).to(x.dtype)
