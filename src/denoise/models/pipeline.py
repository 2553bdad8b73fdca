"""Median filters for impulse noise, and median-first pipelines for mixed noise.

Salt-and-pepper impulses (pixels set to 0 or 1) break denoisers built for Gaussian noise:
BM3D and DCT thresholding take an impulse for structure and spread it into a blotch. The
field's remedy is a median filter first:

* ``median``: the plain ``size x size`` median of every pixel, channel by channel. It
  removes impulses but also smooths every pixel, and leaves the Gaussian part of the noise
  correlated and weaker than the ``sigma`` a second stage is told;
* ``median-adaptive``: a *switching* (decision-based) median, the standard filter for
  salt-and-pepper noise. Only detected impulses change: a value within ``tolerance`` of the
  range's ends (0 or 1; half an 8-bit level by default) is an impulse, and it is replaced by
  the median of the *non-impulse* values of its 3x3 window; where that window holds none,
  the window grows (5x5, 7x7, up to ``max_size``), and where even the largest holds none
  (a saturated area) the plain median of that window is kept. This is the trimmed-median
  rule of decision-based filters (e.g. Esakkirajan et al. 2011, MDBUTMF) with the growing
  window of the adaptive median filter (Hwang and Haddad 1995). Every other pixel keeps its
  value, so the Gaussian noise there stays white with the same ``sigma``;
* ``median+bm3d``, ``median+dct``: ``median-adaptive`` then BM3D or DCT thresholding with
  the Gaussian level ``sigma`` (estimated from the median's output when not given).

The filters are written with tensor operations and run on any device; images are processed
in bands of rows so that the windows of a large image never sit in memory at once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError
from .classical import ClassicalDenoiser, sigma_per_image
from .registry import create_model, register_model

#: Half an 8-bit level: values this close to 0 or 1 count as impulses.
DEFAULT_TOLERANCE = 0.5 / 255


def _check_size(size, name: str, minimum: int = 1) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < minimum or size % 2 == 0:
        raise InputError(f"{name} must be an odd integer >= {minimum}, got {size!r}")
    return size


def _windows(padded: torch.Tensor, k: int, offset: int, rows: slice, width: int) -> torch.Tensor:
    """The ``k x k`` windows (N, C, rows, W, k * k) of the output ``rows`` of an image
    padded by ``offset + k // 2`` pixels on every side."""
    r = k // 2
    top, left = offset, offset
    band = padded[:, :, top + rows.start:top + rows.stop + 2 * r, left:left + width + 2 * r]
    return band.unfold(2, k, 1).unfold(3, k, 1).reshape(*band.shape[:2], rows.stop - rows.start, width, k * k)


def _bands(x: torch.Tensor, k: int, chunk_elements: int) -> list[slice]:
    """Row bands of ``x`` whose ``k x k`` windows hold at most ``chunk_elements`` values."""
    n, c, h, w = x.shape
    rows = max(1, chunk_elements // max(1, n * c * w * k * k))
    return [slice(i, min(i + rows, h)) for i in range(0, h, rows)]


def median_filter(x: torch.Tensor, size: int = 3, *, chunk_elements: int = 1 << 22) -> torch.Tensor:
    """The ``size x size`` median of every pixel of (N, C, H, W), channel by channel, with
    the border replicated."""
    _check_size(size, "median size")
    r = size // 2
    padded = F.pad(x, (r, r, r, r), mode="replicate") if r else x
    out = torch.empty_like(x)
    for rows in _bands(x, size, chunk_elements):
        out[:, :, rows] = _windows(padded, size, 0, rows, x.shape[-1]).median(dim=-1).values
    return out


def impulse_mask(x: torch.Tensor, tolerance: float = DEFAULT_TOLERANCE) -> torch.Tensor:
    """True where a value lies within ``tolerance`` of 0 or 1 (a salt-and-pepper impulse)."""
    return (x <= tolerance) | (x >= 1 - tolerance)


def switching_median(x: torch.Tensor, *, max_size: int = 7, tolerance: float = DEFAULT_TOLERANCE,
                     chunk_elements: int = 1 << 22) -> torch.Tensor:
    """Replace the impulses of (N, C, H, W) (:func:`impulse_mask`) by the median of the
    non-impulse values of the smallest window (3x3, 5x5, ... ``max_size``) that holds any;
    every other value is kept (see the module docstring)."""
    _check_size(max_size, "max_size", 3)
    if not 0 <= tolerance < 0.5:
        raise InputError(f"tolerance must be in [0, 0.5), got {tolerance!r}")
    bad = impulse_mask(x, tolerance)
    out = x.clone()
    todo = bad.clone()
    big = max_size // 2
    padded = F.pad(x, (big, big, big, big), mode="replicate")
    padded_bad = F.pad(bad.to(x.dtype), (big, big, big, big), mode="replicate") > 0.5
    for k in range(3, max_size + 1, 2):
        if not todo.any():
            break
        offset = big - k // 2
        for rows in _bands(x, k, chunk_elements):
            need = todo[:, :, rows]
            if not need.any():
                continue
            values = _windows(padded, k, offset, rows, x.shape[-1])
            good = ~_windows(padded_bad, k, offset, rows, x.shape[-1])
            count = good.sum(dim=-1, keepdim=True)
            ordered = values.masked_fill(~good, float("inf")).sort(dim=-1).values
            lo = ((count - 1).clamp(min=0) // 2)
            hi = (count // 2).clamp(max=k * k - 1)
            median = (ordered.gather(-1, lo) + ordered.gather(-1, hi)).squeeze(-1) / 2
            fill = need & (count.squeeze(-1) > 0)
            if k == max_size:  # nothing but impulses even here: the plain median
                rest = need & ~fill
                median = torch.where(rest, values.median(dim=-1).values, median)
                fill = need
            out[:, :, rows] = torch.where(fill, median, out[:, :, rows])
            todo[:, :, rows] = need & ~fill
    return out


@register_model("median", kind="classical",
                description="plain 3x3 median filter per channel (impulse noise; smooths every pixel)")
class MedianFilter(ClassicalDenoiser):
    """The plain ``size x size`` median of every pixel (blind; ``sigma`` is ignored)."""

    uses_sigma = False

    def __init__(self, size: int = 3):
        super().__init__()
        self.size = _check_size(size, "median size")
        self.receptive_field = size // 2

    def extra_repr(self) -> str:
        return f"size={self.size}"

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        return median_filter(x, self.size)


@register_model("median-adaptive", kind="classical",
                description="switching median: replaces only salt-and-pepper impulses (values at 0 or 1)")
class AdaptiveMedian(ClassicalDenoiser):
    """:func:`switching_median` (blind; ``sigma`` is ignored). ``receptive_field`` is exact:
    the largest window's radius."""

    uses_sigma = False

    def __init__(self, max_size: int = 7, tolerance: float = DEFAULT_TOLERANCE):
        super().__init__()
        self.max_size = _check_size(max_size, "max_size", 3)
        if not 0 <= tolerance < 0.5:
            raise InputError(f"tolerance must be in [0, 0.5), got {tolerance!r}")
        self.tolerance = tolerance
        self.receptive_field = max_size // 2

    def extra_repr(self) -> str:
        return f"max_size={self.max_size}, tolerance={self.tolerance:.5f}"

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        return switching_median(x, max_size=self.max_size, tolerance=self.tolerance)


class MedianThen(ClassicalDenoiser):
    """A median filter (``median``: "adaptive" or "plain" 3x3), then the registered
    classical ``denoiser`` with the Gaussian level ``sigma``.

    Called with sigma None, the level is estimated from the median's output (the impulses
    would inflate an estimate on the input). :func:`denoise.inference.restore` estimates a
    missing sigma on the input itself, impulses included (one policy for every model), which
    over-estimates it and over-smooths: give the Gaussian level when it is known."""

    uses_sigma = True

    def __init__(self, denoiser: str = "dct", median: str = "adaptive", **kwargs):
        super().__init__()
        if median not in ("adaptive", "plain"):
            raise InputError(f"median must be 'adaptive' or 'plain', got {median!r}")
        self.first = AdaptiveMedian() if median == "adaptive" else MedianFilter(3)
        self.second = create_model(denoiser, **kwargs)
        if not isinstance(self.second, ClassicalDenoiser) or self.second.scale != 1:
            raise InputError(f"the stage after the median must be a classical denoiser, got {denoiser!r}")
        self.denoiser, self.median = denoiser, median
        self.receptive_field = self.first.receptive_field + self.second.receptive_field

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        y = self.first(x)
        if sigma is None:
            from ..estimate import estimate_sigma

            sigma = estimate_sigma(y)
        return self.second(y, sigma_per_image(y, sigma))


register_model("median+bm3d", kind="classical", requires="bm3d", denoiser="bm3d",
               description="switching median for the impulses, then BM3D for the Gaussian part")(MedianThen)
register_model("median+dct", kind="classical", denoiser="dct",
               description="switching median for the impulses, then DCT thresholding for the Gaussian part")(MedianThen)
