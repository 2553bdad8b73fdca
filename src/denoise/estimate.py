"""Noise level estimation from a single noisy image.

The robust wavelet estimator of Donoho and Johnstone (1994): the finest diagonal detail
subband (HH1) of a wavelet transform holds almost only noise, so for white Gaussian noise
``median(|HH1|) / 0.6745`` estimates its standard deviation. With the default Daubechies-2
wavelet and half-sample symmetric borders this reproduces
``skimage.restoration.estimate_sigma(image, channel_axis=0, average_sigmas=True)``,
computed here in torch for whole batches.
"""
from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist

import torch
import torch.nn.functional as F

from .errors import InputError
from .utils import check_image

__all__ = ["estimate_sigma", "WAVELETS"]

#: 0.6745: the median of |N(0, 1)|.
_MAD_TO_SIGMA = NormalDist().inv_cdf(0.75)

#: Coefficients at most this large count as exact zeros (flat or saturated regions carry
#: no noise and are left out, as scikit-image leaves out exact zeros).
_ZERO = 1e-9


def _haar() -> tuple[float, ...]:
    return (1 / math.sqrt(2), 1 / math.sqrt(2))


def _db2() -> tuple[float, ...]:
    r3, norm = math.sqrt(3), 4 * math.sqrt(2)
    return tuple(v / norm for v in (1 - r3, 3 - r3, 3 + r3, 1 + r3))


#: Low-pass decomposition filters (PyWavelets' dec_lo order) by wavelet name.
WAVELETS = {"haar": _haar, "db1": _haar, "db2": _db2}


@lru_cache(maxsize=None)
def _high_pass(wavelet: str) -> tuple[float, ...]:
    """The high-pass decomposition filter: the quadrature mirror of the low-pass one."""
    low = WAVELETS[wavelet]()
    taps = len(low)
    return tuple((-1) ** (k + 1) * low[taps - 1 - k] for k in range(taps))


def _pad_symmetric(x: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """Half-sample symmetric extension (``abc|cba``) along ``dim`` (pad <= size)."""
    size = x.shape[dim]
    head = x.narrow(dim, 0, pad).flip(dim)
    tail = x.narrow(dim, size - pad, pad).flip(dim)
    return torch.cat([head, x, tail], dim=dim)


def _detail(x: torch.Tensor, wavelet: str) -> torch.Tensor:
    """Finest diagonal detail coefficients (HH1) of each plane of ``x`` (B, 1, H, W).

    Matches ``pywt.dwtn(plane, wavelet)['dd']`` with PyWavelets' default 'symmetric'
    mode: extend by len(filter) - 1 on both sides, convolve, keep every other sample
    starting from the second.
    """
    high = torch.tensor(_high_pass(wavelet), dtype=x.dtype, device=x.device).flip(0)
    pad = high.numel() - 1
    x = _pad_symmetric(_pad_symmetric(x, pad, 2), pad, 3)[..., 1:, 1:]
    x = F.conv2d(x, high.view(1, 1, -1, 1), stride=(2, 1))
    return F.conv2d(x, high.view(1, 1, 1, -1), stride=(1, 2))


def _median_nonzero(values: torch.Tensor) -> torch.Tensor:
    """Median of each row of ``values`` (B, M) >= 0 over its entries above ``_ZERO``
    (numpy's median: the mean of the two middle values for an even count); 0 when none."""
    medians = []
    for row in values:
        kept = row[row > _ZERO]
        count = kept.numel()
        if count == 0:
            medians.append(row.new_zeros(()))
            continue
        low = kept.kthvalue((count + 1) // 2).values
        high = kept.kthvalue(count // 2 + 1).values
        medians.append((low + high) / 2)
    return torch.stack(medians)


def estimate_sigma(x: torch.Tensor, *, wavelet: str = "db2") -> torch.Tensor:
    """Estimate the Gaussian noise standard deviation of each image of ``x`` (N, C, H, W).

    Returns a tensor (N,) on the scale of ``x`` (0-1 for images in [0, 1]): for each
    channel ``median(|HH1|) / 0.6745`` of the finest diagonal wavelet subband, averaged
    over the channels. ``wavelet`` is ``"db2"`` (default, as scikit-image) or ``"haar"``.
    Image structure biases the estimate upwards a little at low noise levels.
    """
    check_image(x)
    if wavelet not in WAVELETS:
        raise InputError(f"unknown wavelet {wavelet!r}; use one of {', '.join(WAVELETS)}")
    n, c, h, w = x.shape
    taps = len(_high_pass(wavelet))
    if min(h, w) < taps:
        raise InputError(f"estimate_sigma needs images of at least {taps}x{taps} pixels, got {h}x{w}")
    detail = _detail(x.to(torch.float64).reshape(n * c, 1, h, w), wavelet)
    sigma = _median_nonzero(detail.flatten(1).abs()) / _MAD_TO_SIGMA
    return sigma.view(n, c).mean(dim=1).to(x.dtype)
