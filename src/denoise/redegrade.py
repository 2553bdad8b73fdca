"""What an estimated blur kernel buys: the input re-degraded to the SR network's training
condition.

SR networks are trained on MATLAB's bicubic degradation (:func:`denoise.degrade.bicubic_down`:
the antialiased cubic kernel stretched ``s`` times, LR pixel ``n`` centred on HR position
``s n + (s - 1) / 2``). A photo degraded otherwise -- ``y = decimate(k * x, s)``, a blur ``k``
then phase-0 decimation -- is a mismatched input: fed directly, the network sees a blurrier,
half-pixel-shifted image than it was trained on. :func:`redegrade` maps ``y`` to an estimate
of ``bicubic_down(x, s)`` given ``k`` (estimated by :func:`denoise.blur.estimate_blur`),
which the unchanged network then upscales.

Method: a Wiener-style filter on the LR grid, one FFT. Ignoring aliasing, an LR frequency
``w`` (radians per LR pixel) carries the HR frequency ``W = w / s`` times the response of the
degradation: ``A(W) = sum_t k[t] exp(-i W t)`` for ``y`` and ``T(W) = sum_p b[p] exp(i W p)``
for the bicubic target (its taps ``b[p] = cubic((p - (s - 1) / 2) / s) / s`` at HR offsets
``p`` from ``s n``, which carry its half-pixel phase). The filter is

    H(w) = (1 + eps) T(W) conj(A(W)) / (|A(W)|^2 + eps)

``eps`` (default :data:`DEFAULT_EPS`) bounds the gain where the blur removed the signal: the
8-bit noise and the aliasing it would amplify; the factor ``1 + eps`` keeps the mean. The image is reflected by a margin before
the FFT (the FFT's periodic borders) and cropped back; the result is clipped to [0, 1].
Aliasing is not undone (a blur narrower than about one HR pixel leaves aliased detail that
no LR filter can remove). Chosen over re-estimating the HR image through the network (which
would need the network to be right on the very input it mismatches) and over fine-tuning
(which needs training data of that degradation): it is cheap, deterministic and works
with any network.
"""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from .errors import InputError
from .utils import check_image

__all__ = ["DEFAULT_EPS", "bicubic_taps", "redegrade"]

#: Wiener regularisation of :func:`redegrade` (relative to a kernel's unit DC gain), chosen on
#: CBSD68 crops, not on the test sets (benchmarks/blur_estimation.py, its last table): of the
#: two best values (1e-4 and 3e-4, about 0.01 dB apart) the more regularised, since
#: the kernel it is used with is estimated.
DEFAULT_EPS = 3e-4


def _cubic(x: torch.Tensor) -> torch.Tensor:
    ax = x.abs()
    return ((1.5 * ax ** 3 - 2.5 * ax ** 2 + 1.0) * (ax <= 1)
            + (-0.5 * ax ** 3 + 2.5 * ax ** 2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


def bicubic_taps(scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MATLAB's antialiased bicubic downscaling by ``scale`` along one dimension, as
    ``(offsets, weights)``: LR pixel ``n`` is ``sum weights[i] x[scale n + offsets[i]]``
    (away from the borders; the weights sum to 1), float64."""
    centre = (scale - 1) / 2.0
    p = torch.arange(math.floor(centre - 2 * scale), math.ceil(centre + 2 * scale) + 1,
                     dtype=torch.float64)
    w = _cubic((p - centre) / scale) / scale
    keep = w != 0
    return p[keep], w[keep] / w[keep].sum()


def _kernel_response(kernel: torch.Tensor, fy: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
    """``A(Wy, Wx) = sum_t k[t] exp(-i (Wy ty + Wx tx))`` on the grid ``fy x fx`` (radians
    per HR pixel), for a kernel in convolution orientation centred on its middle tap."""
    ky, kx = kernel.shape
    ty = torch.arange(ky, dtype=torch.float64) - ky // 2
    tx = torch.arange(kx, dtype=torch.float64) - kx // 2
    ey = torch.exp(-1j * fy[:, None] * ty[None, :])  # (Fy, ky)
    ex = torch.exp(-1j * fx[:, None] * tx[None, :])  # (Fx, kx)
    return ey @ kernel.to(torch.complex128) @ ex.T


def _target_response(scale: int, f: torch.Tensor) -> torch.Tensor:
    offsets, weights = bicubic_taps(scale)
    return (weights.to(torch.complex128)[None, :] * torch.exp(1j * f[:, None] * offsets[None, :])).sum(1)


def _check_kernel(kernel) -> torch.Tensor:
    kernel = getattr(kernel, "kernel", kernel)  # a BlurEstimate
    if not isinstance(kernel, torch.Tensor) or kernel.dim() != 2 or kernel.shape[0] % 2 == 0 \
            or kernel.shape[1] % 2 == 0 or not kernel.is_floating_point():
        got = tuple(kernel.shape) if isinstance(kernel, torch.Tensor) else type(kernel).__name__
        raise InputError(f"the kernel must be a float tensor (K, K) with odd sides, got {got}")
    if not torch.isfinite(kernel).all() or abs(float(kernel.sum()) - 1.0) > 1e-3:
        raise InputError("the kernel must be finite and sum to 1 (a blur kernel)")
    return kernel.detach().cpu().to(torch.float64)


def redegrade(image: torch.Tensor, kernel, scale: int, *, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """``image`` (N, C, H, W in [0, 1]), low resolution, degraded by ``kernel`` then a phase-0
    ``scale``-times decimation, re-degraded to MATLAB's bicubic condition (an estimate of
    ``bicubic_down(x, scale)``): the Wiener-style filter of the module docstring. ``kernel``
    is a (K, K) tensor summing to 1 in HR pixels (convolution orientation) or a
    :class:`denoise.blur.BlurEstimate`. Returns a tensor like ``image``."""
    check_image(image, "the image")
    kernel = _check_kernel(kernel)
    if isinstance(scale, bool) or not isinstance(scale, numbers.Integral) or scale not in (2, 3, 4):
        raise InputError(f"scale must be 2, 3 or 4, got {scale!r}")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 < eps <= 10:
        raise InputError(f"eps must be a number in (0, 10], got {eps!r}")
    n, c, h, w = image.shape
    pad_y = min(h - 1, 16 + kernel.shape[0])
    pad_x = min(w - 1, 16 + kernel.shape[1])
    x = image.detach().to(torch.float64).reshape(n * c, 1, h, w)
    if pad_y > 0 and pad_x > 0:
        x = F.pad(x, (pad_x, pad_x, pad_y, pad_y), mode="reflect")
    hh, ww = x.shape[-2:]
    fy = 2 * math.pi * torch.fft.fftfreq(hh, dtype=torch.float64) / scale
    fx = 2 * math.pi * torch.fft.rfftfreq(ww, dtype=torch.float64) / scale
    a = _kernel_response(kernel, fy, fx)
    t = _target_response(scale, fy)[:, None] * _target_response(scale, fx)[None, :]
    gain = t * a.conj() / (a.abs() ** 2 + eps) * (1.0 + eps)  # DC gain 1 (the mean is kept)
    out = torch.fft.irfft2(torch.fft.rfft2(x) * gain, s=(hh, ww))
    if pad_y > 0 and pad_x > 0:
        out = out[..., pad_y:pad_y + h, pad_x:pad_x + w]
    return out.reshape(n, c, h, w).clamp(0.0, 1.0).to(image.dtype)
