"""Signal-dependent noise level estimation for real photos: a noise level function (NLF).

:func:`denoise.estimate.estimate_sigma` assumes white Gaussian noise and reads only the
finest wavelet subband; real camera noise depends on brightness (shot noise, tone curve)
and is spatially correlated (demosaicing, noise reduction, JPEG), so most of its power sits
below that subband and the wavelet estimate reads far too low. :func:`estimate_noise_level`
measures the noise power over all frequencies of 8x8 blocks, in flat regions, per
brightness bin and channel:

1. **Blocks.** Every 8x8 block (stride 4; 8 on photos over :data:`LARGE` pixels) of each
   channel goes through the orthonormal 2-D DCT. The DC coefficient gives the block's
   brightness (its bin). The two lowest AC ones, (0, 1) and (1, 0), are left out with it
   (:data:`HIDDEN`): a brightness ramp across the block, common in photos, lands there.
   The other 61 are grouped into :data:`BANDS` bands of neighbouring radial frequency.
2. **Flat blocks, chosen without bias.** A block is a candidate when the four blocks
   adjacent to it (8 pixels away, sharing no pixel) have the least energy among the blocks
   of its bin (the lowest :data:`FLAT_QUANTILE` fraction). Texture is spatially coherent,
   so such blocks are mostly flat, but the choice does not depend on the block's own
   noise: its coefficients stay unbiased samples of the noise, whatever its correlation.
   Mostly clipped blocks (saturated highlights, black) are left out.
3. **Noise power per band.** Per bin and band, the median band energy of the candidates,
   divided by the median of chi-square with as many degrees of freedom as coefficients
   (the exact correction for Gaussian noise whose spectrum is flat within the band), is
   the noise variance per coefficient of that band.
4. **Robust to texture.** Texture shows up as excess power in the low bands of some bins.
   The spectral *shape* of the noise is taken once per channel from the flattest blocks
   of the whole image (lowest :data:`SHAPE_QUANTILE` of the neighbour energy relative to
   their bin's level, and the same low quantile of their band energies, chi-square
   corrected); each bin's *level* is the median over bands of its band power divided by
   that shape, so a minority of texture-inflated bands does not move it. The bin's noise
   variance is the shape's total power at that level over the 64 pixels: the 61 measured
   coefficients plus the 3 hidden ones at the lowest band's power. For white noise the
   shape is flat and this is plain sigma^2; for correlated noise it adds the
   low-frequency power that the finest subband misses.
5. **A smooth NLF.** A noise level function must be smooth in brightness. Per channel the
   bin variances are fitted (weighted by their candidate counts) by a non-negative mix of
   four curves: constant and linear in the brightness (Gaussian, Poisson-Gaussian noise
   added to the image) and the same two added to linear light and carried through the
   sRGB tone curve (camera noise); the fit is repeated with bins above it down-weighted,
   so it follows the lower envelope. A bin more than :data:`CAP` times above the fit
   (texture that the steps above left) is lowered to that; bins without enough flat
   blocks take the fit's value.

The constants (block size, quantiles, cap) were chosen on synthetic noise only: white and
blurred Gaussian noise on Set12/CBSD68/CBSD432 images and ``camera`` noise (with and
without JPEG) on CBSD432; measuring more scales (2x2-averaged images, 16x16 and 32x32
footprints) read texture as noise there and was dropped.

What it does not see: noise correlated over much more than 8 pixels (its power below the
blocks' lowest frequencies is extrapolated, not measured) and noise that differs between
flat and textured regions (JPEG and in-camera noise reduction remove more of it where the
image is flat, where it is measured): on real photos (PolyU) it reads about two thirds of
the residual noise, the wavelet estimate about a seventh
(``benchmarks/results/noise_level_polyu.md``). ``sigma`` of the result is the root mean
square of the NLF over the image's pixels: the noise standard deviation of the whole image.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError
from .utils import check_image

__all__ = ["NoiseLevel", "estimate_noise_level", "BINS", "BLOCK"]

#: Brightness bins of the NLF (uniform over [0, 1]).
BINS = 12
#: Block size (pixels) and stride of the block grid.
BLOCK, STRIDE = 8, 4
#: Bands of AC frequencies per block.
BANDS = 8
#: Coefficients not measured (DC, (0, 1), (1, 0)): their noise power is extrapolated.
HIDDEN = 3
#: Fraction of a bin's blocks kept as flat candidates (lowest neighbour energy).
FLAT_QUANTILE = 0.2
#: Fraction of the whole image's blocks, and quantile of their band energies, for the shape.
SHAPE_QUANTILE = 0.1
#: A bin needs this many flat candidates to be measured.
MIN_BLOCKS = 8
#: A measured bin may exceed the smooth fit by at most this factor (in sigma).
CAP = 1.2
#: Pixel values at most this close to 0 or 1 count as clipped; blocks with more than a
#: quarter of them say nothing about the noise and are left out.
_CLIP = 1e-6
#: Images with more pixels than this use non-overlapping blocks (a quarter of the work).
LARGE = 4_000_000
#: Blocks transformed at once (bounds memory on large photos).
_CHUNK = 65536


@dataclass(frozen=True)
class NoiseLevel:
    """A noise level function per image and channel (0-1 scale), from :func:`estimate_noise_level`.

    ``levels`` (N, C, BINS): the noise standard deviation at the brightness ``centers``
    (BINS,); ``measured`` (N, C, BINS): which bins rest on enough flat blocks (the others
    come from the smooth fit); ``sigma`` (N,): the root mean square of the NLF over each
    image's pixels and channels, the image's noise level as one number.
    """

    levels: torch.Tensor
    measured: torch.Tensor
    centers: torch.Tensor
    sigma: torch.Tensor

    def at(self, brightness: torch.Tensor) -> torch.Tensor:
        """The NLF at ``brightness`` (N, C or 1, H, W): linear between bin centres, constant
        beyond the outer ones; per channel when ``brightness`` has the NLF's channels."""
        n, c, _ = self.levels.shape
        if brightness.dim() != 4 or brightness.shape[0] != n or brightness.shape[1] not in (1, c):
            raise InputError(f"brightness must have shape ({n}, 1 or {c}, H, W), got {tuple(brightness.shape)}")
        levels = self.levels.to(brightness.device, torch.float32)
        if brightness.shape[1] == 1 and c > 1:
            levels = levels.pow(2).mean(1, keepdim=True).sqrt()  # one level for all channels
        out = torch.empty(brightness.shape, dtype=torch.float32, device=brightness.device)
        for ch in range(brightness.shape[1]):  # a channel at a time: bounded memory on large photos
            pos = (brightness[:, ch].flatten(1).float().clamp(0, 1) * BINS - 0.5).clamp(0, BINS - 1)
            lo = pos.floor().long().clamp(max=max(BINS - 2, 0))
            left = torch.gather(levels[:, ch], 1, lo)
            right = torch.gather(levels[:, ch], 1, (lo + 1).clamp(max=BINS - 1))
            out[:, ch] = (left + (right - left) * (pos - lo)).view_as(out[:, ch])
        return out

    def to_map(self, x: torch.Tensor, *, per_channel: bool = True) -> torch.Tensor:
        """A per-pixel noise map of images ``x`` (N, C, H, W), 0-1 scale, float32, on x's
        device: the NLF at each pixel's local brightness (the mean of its 9x9
        neighbourhood, as the blocks were binned by their mean). Shape (N, C, H, W), or
        (N, 1, H, W) with ``per_channel=False`` (the root mean square over channels), as
        :func:`denoise.inference.restore` takes it for models with a noise-level map."""
        check_image(x)
        if x.shape[0] != self.levels.shape[0] or x.shape[1] != self.levels.shape[1]:
            raise InputError(f"the noise level was estimated for {tuple(self.levels.shape[:2])} "
                             f"(images, channels), got images of shape {tuple(x.shape)}")
        bright = local_brightness(x.detach().cpu())
        if not per_channel:
            bright = bright.mean(1, keepdim=True)
        return self.at(bright).clamp(0, 1).to(x.device)

    def summary(self, index: int = 0) -> str:
        """``"7.3 (NLF 4.1-9.8 over brightness)"``: image ``index`` on the 0-255 scale."""
        low, high = self.range()[index].tolist()
        return f"{float(self.sigma[index]) * 255:.1f} (NLF {low * 255:.1f}-{high * 255:.1f} over brightness)"

    def range(self) -> torch.Tensor:
        """(N, 2): the lowest and highest level of each image's NLF over its measured bins
        (all bins when none is measured)."""
        out = []
        for levels, measured in zip(self.levels, self.measured):
            values = levels[measured] if measured.any() else levels.flatten()
            out.append(torch.stack([values.min(), values.max()]))
        return torch.stack(out)


def local_brightness(x: torch.Tensor) -> torch.Tensor:
    """The mean of each pixel's 9x9 neighbourhood (edges replicated), per channel, float32."""
    r = BLOCK // 2
    padded = F.pad(x.to(torch.float32), (r, r, r, r), mode="replicate")
    rows = F.avg_pool2d(padded, (1, 2 * r + 1), stride=1)
    return F.avg_pool2d(rows, (2 * r + 1, 1), stride=1)


def estimate_noise_level(x: torch.Tensor) -> NoiseLevel:
    """The noise level function of each image of ``x`` (N, C, H, W), values in [0, 1].

    Returns a :class:`NoiseLevel`: the noise standard deviation (0-1 scale) per brightness
    bin and channel, its root mean square over the image (``sigma``), and ``to_map`` for
    a per-pixel map. See the module text for the method. Images need at least 24x24
    pixels (a block and its four neighbours); InputError otherwise.
    """
    check_image(x)
    n, c, h, w = x.shape
    if min(h, w) < 3 * BLOCK:
        raise InputError(f"estimate_noise_level needs images of at least {3 * BLOCK}x{3 * BLOCK} "
                         f"pixels, got {h}x{w}")
    levels = torch.zeros(n, c, BINS, dtype=torch.float64)
    measured = torch.zeros(n, c, BINS, dtype=torch.bool)
    for i in range(n):
        for ch in range(c):
            levels[i, ch], measured[i, ch] = _channel_nlf_of(x[i, ch].detach().cpu())
    centers = (torch.arange(BINS, dtype=torch.float32) + 0.5) / BINS
    sigma = torch.stack([  # the NLF's root mean square over each image's pixels
        NoiseLevel(levels[i:i + 1].float(), measured[i:i + 1], centers, torch.zeros(1)).at(
            local_brightness(x[i:i + 1].detach().cpu())).double().pow(2).mean().sqrt() for i in range(n)])
    return NoiseLevel(levels.float(), measured, centers, sigma.float())


# ----------------------------------------------------------------------------- blocks

@lru_cache(maxsize=None)
def _dct_basis() -> torch.Tensor:
    """The orthonormal 2-D DCT-II of 8x8 blocks as a (64, 64) matrix (row u*8+v)."""
    k = torch.arange(BLOCK, dtype=torch.float64)
    d = torch.cos(math.pi * (k[None, :] + 0.5) * k[:, None] / BLOCK) * math.sqrt(2 / BLOCK)
    d[0] /= math.sqrt(2)
    return torch.kron(d, d)


@lru_cache(maxsize=None)
def _bands() -> tuple[torch.Tensor, torch.Tensor]:
    """``(labels, sizes)``: the band of each of the 64 coefficients, by radial frequency in
    equal-count groups, and the number of coefficients per band. The :data:`HIDDEN` ones
    (label -1: DC and the two lowest, where the mean and a brightness ramp of the block go)
    are not measured."""
    u = torch.arange(BLOCK, dtype=torch.float64)
    radius = (u[:, None] ** 2 + u[None, :] ** 2).sqrt().flatten()
    order = torch.argsort(radius, stable=True)[HIDDEN:]
    labels = torch.full((BLOCK * BLOCK,), -1, dtype=torch.long)
    for band, members in enumerate(torch.tensor_split(order, BANDS)):
        labels[members] = band
    sizes = torch.bincount(labels[labels >= 0], minlength=BANDS).to(torch.float64)
    return labels, sizes


@lru_cache(maxsize=None)
def _chi2_quantile(q: float, k: int) -> float:
    """The ``q`` quantile of chi-square with ``k`` degrees of freedom, over ``k``."""
    a = torch.tensor(k / 2, dtype=torch.float64)
    lo, hi = 0.0, float(k + 40 * math.sqrt(2 * k) + 40)
    for _ in range(80):
        mid = (lo + hi) / 2
        if float(torch.special.gammainc(a, torch.tensor(mid / 2, dtype=torch.float64))) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2 / k


def _block_stats(plane: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For the 8x8 blocks (step ``stride``) of one channel ``plane`` (H, W): their means
    (gh, gw), band energies (BANDS, gh, gw) and whether they are mostly clipped (gh, gw).
    Computed in float32, a strip of block rows at a time (bounded memory on large photos)."""
    h, w = plane.shape
    gh, gw = (h - BLOCK) // stride + 1, (w - BLOCK) // stride + 1
    offset = float(plane.mean())
    image = (plane - offset).to(torch.float32)[None, None]
    labels, _ = _bands()
    members = (F.one_hot(labels.clamp_min(0), BANDS).float() * (labels >= 0).unsqueeze(1)).T
    basis = _dct_basis().float()
    rows = max(1, _CHUNK // gw)
    means, energies = [], []
    for top in range(0, gh, rows):
        count = min(rows, gh - top)
        strip = image[:, :, top * stride:(top + count - 1) * stride + BLOCK]
        coef = basis @ F.unfold(strip, BLOCK, stride=stride)[0]  # (64, count * gw)
        means.append(coef[0] / BLOCK)
        energies.append(members @ coef.pow(2))
    mean = (torch.cat(means).double() + offset).view(gh, gw)
    energy = torch.cat(energies, 1).double().view(BANDS, gh, gw)
    edge = ((plane <= _CLIP) | (plane >= 1 - _CLIP)).to(torch.float32)[None, None]
    clipped = F.avg_pool2d(edge, BLOCK, stride=stride)[0, 0] > 0.25
    return mean, energy, clipped


def _neighbour_energy(total: torch.Tensor, bad: torch.Tensor, stride: int) -> torch.Tensor:
    """The summed AC energy (gh, gw) of the four blocks adjacent to each block (one block
    size away); infinite where a neighbour is missing (image border) or the block is clipped."""
    k = BLOCK // stride
    gh, gw = total.shape
    padded = F.pad(total[None], (k, k, k, k), value=float("inf"))[0]
    score = (padded[:gh, k:k + gw] + padded[2 * k:, k:k + gw]
             + padded[k:k + gh, :gw] + padded[k:k + gh, 2 * k:])
    return score.masked_fill(bad, float("inf"))


# ----------------------------------------------------------------------------- per channel

def _channel_nlf_of(plane: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(levels, measured)`` (BINS,) of one channel ``plane`` (H, W). Blocks step by
    :data:`STRIDE` pixels, by a whole block on photos over :data:`LARGE` pixels."""
    stride = BLOCK if plane.numel() > LARGE else STRIDE
    mean, energy, clipped = _block_stats(plane, stride)
    score = _neighbour_energy(energy.sum(0), clipped, stride)
    edges = torch.linspace(0, 1, BINS + 1, dtype=torch.float64)[1:-1]
    bins = torch.bucketize(mean.clamp(0, 1).contiguous(), edges)
    return _channel_nlf(score.flatten(), bins.flatten(), energy.flatten(1))


def _channel_nlf(score: torch.Tensor, bins: torch.Tensor, energy: torch.Tensor):
    """The NLF of one channel from its blocks' neighbour energies (L,), bins (L,) and band
    energies (BANDS, L): steps 3 to 5 of the module text."""
    _, sizes = _bands()
    median = torch.tensor([_chi2_quantile(0.5, int(k)) for k in sizes], dtype=torch.float64) * sizes
    usable = torch.isfinite(score)
    power = torch.full((BINS, BANDS), float("nan"), dtype=torch.float64)
    counts = torch.zeros(BINS, dtype=torch.float64)
    block_level = torch.full_like(score, float("nan"))
    for b in range(BINS):
        members = usable & (bins == b)
        if members.sum() * FLAT_QUANTILE < MIN_BLOCKS:
            continue
        chosen = members & (score <= torch.quantile(score[members], FLAT_QUANTILE))
        power[b] = torch.quantile(energy[:, chosen], 0.5, dim=1) / median
        counts[b] = chosen.sum()
        block_level[members] = torch.quantile(power[b], 0.5)
    measured = counts > 0
    if not measured.any():  # too few blocks per bin (a small image): one level for all
        if not usable.any():
            return torch.zeros(BINS, dtype=torch.float64), measured
        level = torch.quantile(energy[:, usable], 0.5, dim=1) / median
        sigma = (((level * sizes).sum() + HIDDEN * level[0]) / BLOCK ** 2).clamp_min(0).sqrt()
        return sigma.expand(BINS).clone(), measured
    shape = _noise_shape(score, energy, block_level)
    keep = shape > 1e-3 * shape.max()
    gain = torch.quantile(power[measured][:, keep] / shape[keep], 0.5, dim=1)
    variance = torch.full((BINS,), float("nan"), dtype=torch.float64)
    variance[measured] = gain * ((shape * sizes).sum() + HIDDEN * shape[0]) / BLOCK ** 2
    fitted = _fit_nlf(variance, counts).clamp_min(0).sqrt()
    level = torch.where(measured, torch.minimum(variance.clamp_min(0).sqrt(), CAP * fitted), fitted)
    return level, measured


def _noise_shape(score: torch.Tensor, energy: torch.Tensor, block_level: torch.Tensor) -> torch.Tensor:
    """The noise power per band (BANDS,), up to a factor, from the flattest blocks of the
    image relative to their bin's level; flat (white noise) when nothing is measurable."""
    _, sizes = _bands()
    ok = torch.isfinite(block_level) & (block_level > 0)
    if not ok.any():
        return torch.ones(BANDS, dtype=torch.float64)
    relative = score[ok] / block_level[ok]
    flat = relative <= torch.quantile(relative, SHAPE_QUANTILE)
    normalised = energy[:, ok][:, flat] / block_level[ok][flat]
    low = torch.tensor([_chi2_quantile(SHAPE_QUANTILE, int(k)) for k in sizes], dtype=torch.float64) * sizes
    shape = torch.quantile(normalised, SHAPE_QUANTILE, dim=1) / low
    if not bool((shape > 0).any()):
        return torch.ones(BANDS, dtype=torch.float64)
    return shape / shape.max()


# ----------------------------------------------------------------------------- smooth fit

def _curves(brightness: torch.Tensor) -> torch.Tensor:
    """(B, 4): the variance curves the NLF is a non-negative mix of (module text, step 5)."""
    lin = torch.where(brightness <= 0.04045, brightness / 12.92,
                      ((brightness.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4)
    slope = torch.where(lin <= 0.0031308, torch.full_like(lin, 12.92),
                        1.055 / 2.4 * lin.clamp_min(0.0031308) ** (1 / 2.4 - 1))
    return torch.stack([torch.ones_like(brightness), brightness, slope ** 2, slope ** 2 * lin], 1)


def _nnls(a: np.ndarray, y: np.ndarray, w: np.ndarray, most: int) -> np.ndarray:
    """Weighted non-negative least squares by trying every subset of at most ``most``
    columns (there are four)."""
    best, best_cost = np.zeros(a.shape[1]), math.inf
    root = np.sqrt(w)
    for size in range(1, most + 1):
        for subset in itertools.combinations(range(a.shape[1]), size):
            cols = list(subset)
            coef = np.linalg.lstsq(a[:, cols] * root[:, None], y * root, rcond=None)[0]
            if (coef < 0).any():
                continue
            full = np.zeros(a.shape[1])
            full[cols] = coef
            cost = float(((a @ full - y) ** 2 * w).sum())
            if cost < best_cost:
                best, best_cost = full, cost
    return best


def _fit_nlf(variance: torch.Tensor, counts: torch.Tensor, rounds: int = 6) -> torch.Tensor:
    """The smooth lower-envelope fit (BINS,) of the measured bin variances (NaN where not
    measured), weighted by ``counts``; bins above the fit are down-weighted each round."""
    centers = (torch.arange(BINS, dtype=torch.float64) + 0.5) / BINS
    curves = _curves(centers).numpy()
    ok = torch.isfinite(variance).numpy()
    a, y, base = curves[ok], variance.numpy()[ok], counts.numpy()[ok]
    most = max(1, min(a.shape[1], int(ok.sum()) - 1))
    weight = base.copy()
    for _ in range(rounds):
        fit = a @ _nnls(a, y, weight, most)
        ratio = y / np.maximum(fit, 1e-20)
        weight = base * np.where(ratio > 1, np.minimum(ratio, 1e6) ** -4.0, 1.0)
    return torch.from_numpy(curves @ _nnls(a, y, weight, most))
