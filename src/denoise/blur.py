"""Blur estimation through a frozen super-resolution network (degradation estimation).

A low-resolution photo ``y`` is modelled as ``y = decimate(k * x, s)``: the high-resolution
scene ``x`` blurred by an unknown kernel ``k`` (in high-resolution pixels), then decimated
at phase 0 (:func:`denoise.degrade.blur_decimate`'s degradation). With the SR network ``f``
frozen, :func:`estimate_blur` runs it **once** on ``y`` (its output does not depend on the
kernel) and fits the kernel by gradient descent (``torch.optim``) so that the network's
output, blurred and decimated again, reproduces the input::

    min_k  mean over channels and interior LR pixels of (decimate(k * f(y), s) - y)^2

Two parametrisations (``kind``):

* ``"gaussian"``: an isotropic Gaussian of width ``w = exp(theta)`` (standard deviation in
  HR pixels, as ``blur_decimate``'s ``width``) and, with ``shift=True`` (default), a sub-pixel
  centre ``(dy, dx)``: a nuisance parameter that absorbs a sampling-grid offset between the
  network and the degradation (a network trained on MATLAB's bicubic places LR pixel ``n`` at
  HR ``s n + (s - 1) / 2``, phase-0 decimation at ``s n``), which a centred Gaussian could
  only mimic by widening. Fitted with L-BFGS (strong-Wolfe line search) from the best point
  of a coarse grid (24 log-spaced widths from 0.3 to ``size / 5`` HR pixels, centres in
  half-pixel steps), so it needs no starting guess and escapes the local minima that a
  sharp kernel's centre has on textured images.
* ``"free"``: every entry of a ``size x size`` kernel, a softmax over logits (non-negative,
  sum 1), started from the grid's best centred Gaussian, fitted with Adam for a fixed number
  of steps. Prior: none by default. The optional smoothness penalty ``smooth * size^2 *
  sum |grad k|^2`` (against the data term normalised by the variance of ``y``) biased the
  sharp kernels (width 0.8) on synthetic tests far more than it cleaned the tails of the
  wide ones, and a centre prior pulls every kernel inwards; the tails are kept in check by
  the Gaussian start and the fixed step count instead (the residual reaches the 8-bit
  floor within the default 300 steps; more steps fit the rounding noise).

The network's output is constant, so the data term is a quadratic form in the kernel: its
Gram matrix (``size^2 x size^2``, by im2col over blocks of rows) is computed once and each
optimiser step is a small matrix product, whatever the image size. The data term is
divided by the variance of ``y`` over the region (step sizes and the prior do not depend
on the image's contrast); :attr:`BlurEstimate.loss` and the curve are the plain mean squared
residual (0-1 scale). Borders: the ``border`` outermost LR pixels on every side are left
out (default ``ceil(radius / s) + 4``: the kernel never reaches past the network's output,
and the network's own border effects stay out).

Kernels are returned in convolution orientation (``(k * x)[i] = sum_t k[t] x[i - t]``), centred
on the middle tap, as float64 ``(size, size)`` tensors. What the estimate buys is in
:mod:`denoise.redegrade` (the input re-degraded to the network's training condition).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError
from .redegrade import redegrade
from .upscale import check_scale, check_upscaler, upscale
from .utils import check_image

__all__ = ["KINDS", "BlurEstimate", "estimate_blur", "fit_kernel", "gaussian_kernel", "redegrade",
           "textured_window"]

#: The kernel parametrisations :func:`estimate_blur` fits.
KINDS = ("gaussian", "free")
#: Default kernel sizes (taps per side): a Gaussian up to width 10/3 HR pixels keeps 3 standard
#: deviations; a free kernel covers the Gaussians of width <= 2 to 3 standard deviations.
DEFAULT_SIZE = {"gaussian": 21, "free": 13}
#: Default optimiser iterations (L-BFGS for the Gaussian, Adam for the free kernel).
DEFAULT_STEPS = {"gaussian": 30, "free": 300}
#: Default learning rates (L-BFGS step scale; Adam on the logits).
DEFAULT_LR = {"gaussian": 1.0, "free": 0.05}
#: Default smoothness prior of the free kernel (see the module docstring).
DEFAULT_SMOOTH = 0.0
#: :func:`estimate_blur` fits on a window of at most this many LR pixels per side.
DEFAULT_CROP = 128


@dataclass
class BlurEstimate:
    """What :func:`estimate_blur` returns."""

    kind: str  # "gaussian" or "free"
    scale: int
    kernel: torch.Tensor  # (size, size) float64, non-negative, sums to 1, convolution orientation
    loss: float  # final mean squared residual (0-1 scale) over the interior LR pixels
    curve: list[float] = field(default_factory=list)  # the residual after each step
    width: float | None = None  # Gaussian width (standard deviation), HR pixels; None for "free"
    shift: tuple[float, float] | None = None  # Gaussian centre (dy, dx), HR pixels
    border: int = 0  # LR pixels left out at every side
    window: tuple[int, int, int, int] | None = None  # (top, left, height, width) of the LR image used

    @property
    def width_lr(self) -> float | None:
        """The Gaussian width in LR pixels (``width / scale``)."""
        return None if self.width is None else self.width / self.scale

    @property
    def moment_width(self) -> float:
        """The kernel's width from its second moment about its centroid, HR pixels:
        ``sqrt(sum k |t - mean|^2 / 2)``, the width of a Gaussian of the same spread (for any
        kernel, e.g. a free one)."""
        var = 0.0
        for marginal in (self.kernel.sum(1), self.kernel.sum(0)):
            t = torch.arange(marginal.numel(), dtype=marginal.dtype)
            var += float((marginal * (t - (marginal * t).sum()) ** 2).sum())
        return math.sqrt(max(var, 0.0) / 2.0)

    @property
    def rms_levels(self) -> float:
        """The root mean squared residual in 8-bit grey levels."""
        return math.sqrt(max(self.loss, 0.0)) * 255.0

    def to_dict(self) -> dict:
        """A JSON-ready summary (the kernel as nested lists)."""
        return {"kind": self.kind, "scale": self.scale, "width_hr": self.width, "width_lr": self.width_lr,
                "moment_width_hr": self.moment_width, "shift_hr": list(self.shift) if self.shift else None,
                "residual_mse": self.loss, "residual_rms_levels": self.rms_levels, "border_lr": self.border,
                "window_lr": list(self.window) if self.window else None, "steps": len(self.curve),
                "kernel_size": self.kernel.shape[-1], "kernel": self.kernel.tolist()}


def _check_size_arg(size, name: str = "size") -> int:
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1 or size % 2 == 0 \
            or size > 101:
        raise InputError(f"{name} must be an odd number of taps in 1..101, got {size!r}")
    return int(size)


def _check_width(width) -> float:
    if isinstance(width, bool) or not isinstance(width, numbers.Real) or not math.isfinite(width) \
            or not 0 < width <= 50:
        raise InputError(f"width must be a number in (0, 50] (HR pixels), got {width!r}")
    return float(width)


def _gaussian(width: torch.Tensor, size: int, shift: torch.Tensor | None = None) -> torch.Tensor:
    """The sampled isotropic Gaussian (differentiable in ``width`` and ``shift``), sum 1; a
    softmax of the log-density, so a tiny width gives a delta, never 0 / 0."""
    r = size // 2
    t = torch.arange(-r, r + 1, dtype=width.dtype, device=width.device)
    dy, dx = (shift[0], shift[1]) if shift is not None else (0.0, 0.0)
    gy = torch.softmax(-0.5 * ((t - dy) / width) ** 2, 0)
    gx = torch.softmax(-0.5 * ((t - dx) / width) ** 2, 0)
    return gy[:, None] * gx[None, :]


def gaussian_kernel(width: float, size: int | None = None) -> torch.Tensor:
    """The isotropic Gaussian kernel of standard deviation ``width`` (HR pixels), sampled on
    ``size x size`` integer taps centred on the middle one and normalised to sum 1; float64.
    ``size`` defaults to ``2 ceil(3 width) + 1``, the taps of
    :func:`denoise.degrade.blur_decimate` (whose separable blur is this kernel's outer product)."""
    width = _check_width(width)
    size = 2 * math.ceil(3.0 * width) + 1 if size is None else _check_size_arg(size)
    return _gaussian(torch.tensor(width, dtype=torch.float64), size)


def _positive(value, name: str, *, integer: bool = False, allow_zero: bool = False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) \
        and (value >= 0 if allow_zero else value > 0)
    if ok and integer:
        ok = float(value).is_integer()
    if not ok:
        raise InputError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} "
                         f"{'integer' if integer else 'number'}, got {value!r}")
    return int(value) if integer else float(value)


def _interior(sr: torch.Tensor, lr: torch.Tensor, scale: int, size: int, border: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The part of ``sr`` the kernel reads for the interior LR pixels, and those pixels."""
    (h, w), r, b = lr.shape[-2:], size // 2, border
    first = scale * b - r  # the HR rows / columns from the first interior pixel's taps ...
    return (sr[..., first:scale * (h - b - 1) + r + 1, first:scale * (w - b - 1) + r + 1],
            lr[..., b:h - b, b:w - b])  # ... to the last one's


def _forward(z: torch.Tensor, kernel: torch.Tensor, scale: int) -> torch.Tensor:
    """``decimate(kernel * z)`` at the valid positions of ``z`` (the region ``_interior`` cut);
    ``kernel`` in convolution orientation."""
    n, c, h, w = z.shape
    weight = torch.flip(kernel, (0, 1)).to(z.dtype)[None, None]
    out = F.conv2d(z.reshape(n * c, 1, h, w), weight, stride=scale)
    return out.reshape(n, c, *out.shape[-2:])


@dataclass
class _Quadratic:
    """The data term as a quadratic form in the (flipped, flattened) kernel ``v``:
    ``mean residual^2 = (v' G v - 2 b' v + c) / n``. The network's output is constant, so
    this is computed once and every optimiser step costs one small matrix product."""

    gram: torch.Tensor
    cross: torch.Tensor
    sq: float
    n: int

    def mse(self, kernel: torch.Tensor) -> torch.Tensor:
        v = torch.flip(kernel, (0, 1)).reshape(-1)
        return ((v @ self.gram @ v) - 2 * (self.cross @ v) + self.sq) / self.n


def _quadratic(z: torch.Tensor, y: torch.Tensor, scale: int, size: int,
               max_rows: int = 1 << 14) -> _Quadratic:
    """:class:`_Quadratic` of ``decimate(k * z) ~ y`` (im2col over blocks of LR rows)."""
    n, c, h, w = z.shape
    z = z.reshape(n * c, 1, h, w)
    y = y.reshape(n * c, *y.shape[-2:])
    rows_out, cols_out = y.shape[-2:]
    step = max(1, max_rows // max(1, cols_out * n * c))
    taps = size * size
    gram = torch.zeros(taps, taps, dtype=z.dtype)
    cross = torch.zeros(taps, dtype=z.dtype)
    for r0 in range(0, rows_out, step):
        r1 = min(rows_out, r0 + step)
        block = z[..., scale * r0: scale * (r1 - 1) + size, :]
        cols = F.unfold(block, size, stride=scale)  # (n c, taps, rows * cols)
        cols = cols.permute(0, 2, 1).reshape(-1, taps)
        target = y[:, r0:r1].reshape(-1)
        gram += cols.T @ cols
        cross += cols.T @ target
    return _Quadratic(gram, cross, float((y ** 2).sum()), y.numel())


def _smoothness(kernel: torch.Tensor) -> torch.Tensor:  # squared first differences
    return ((kernel[1:] - kernel[:-1]) ** 2).sum() + ((kernel[:, 1:] - kernel[:, :-1]) ** 2).sum()


@dataclass(frozen=True)
class _Settings:
    """The checked arguments of a fit."""

    kind: str
    scale: int
    size: int
    steps: int
    rate: float
    border: int
    smooth: float
    init: float | None

    @property
    def min_side(self) -> int:
        """The smallest LR image side: the borders and 8 pixels between them."""
        return 2 * self.border + 8


def _settings(kind, scale, size, steps, rate, border, smooth, init) -> _Settings:
    if kind not in KINDS:
        raise InputError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    scale = check_scale(scale)
    size = DEFAULT_SIZE[kind] if size is None else _check_size_arg(size)
    steps = DEFAULT_STEPS[kind] if steps is None else _positive(steps, "steps", integer=True)
    rate = DEFAULT_LR[kind] if rate is None else _positive(rate, "the learning rate")
    reach = math.ceil((size // 2) / scale)  # LR pixels the kernel reaches
    border = reach + 4 if border is None else max(reach, _positive(border, "border", integer=True,
                                                                   allow_zero=True))
    return _Settings(kind, scale, size, steps, rate, border,
                     _positive(smooth, "smooth", allow_zero=True),
                     None if init is None else _check_width(init))


def _check_pair(sr, lr, cfg: _Settings) -> None:
    check_image(lr, "the low-resolution image")
    check_image(sr, "the network's output")
    h, w = lr.shape[-2:]
    if sr.shape[:2] != lr.shape[:2] or sr.shape[-2:] != (cfg.scale * h, cfg.scale * w):
        raise InputError(f"the network's output {tuple(sr.shape)} is not the input "
                         f"{tuple(lr.shape)} enlarged {cfg.scale} times; check the model's scale")
    _check_side(lr, cfg)


def _check_side(lr: torch.Tensor, cfg: _Settings) -> None:
    h, w = lr.shape[-2:]
    if min(h, w) < cfg.min_side:
        raise InputError(f"the image ({h}x{w} pixels) is too small for a {cfg.size}x{cfg.size} "
                         f"kernel at x{cfg.scale} ({cfg.border} border pixels are left out on each "
                         f"side); give at least {cfg.min_side}x{cfg.min_side} pixels or a smaller size")


def _grid_start(quad: _Quadratic, size: int, scale: int, shift: bool) -> tuple[float, float, float]:
    """The best ``(width, dy, dx)`` of a coarse grid (the fit's start): 24 log-spaced widths
    from 0.3 to ``size / 5`` HR pixels and, with ``shift``, centres in half-pixel steps up to
    ``(scale - 1) / 2 + 0.5`` (offsets between sampling conventions)."""
    widths = torch.logspace(math.log10(0.3), math.log10(size / 5), 24, dtype=torch.float64)
    reach = (scale - 1) / 2 + 0.5 if shift else 0.0
    offsets = torch.arange(-reach, reach + 0.25, 0.5, dtype=torch.float64)
    best = (math.inf, 1.0, 0.0, 0.0)
    with torch.no_grad():
        for w in widths:
            for dy in offsets:
                ks = torch.stack([_gaussian(w, size, torch.stack([dy, dx])) for dx in offsets])
                v = torch.flip(ks, (1, 2)).reshape(len(offsets), -1)
                mse = ((v @ quad.gram) * v).sum(1) - 2 * (v @ quad.cross)
                i = int(mse.argmin())
                if float(mse[i]) < best[0]:
                    best = (float(mse[i]), float(w), float(dy), float(offsets[i]))
    return best[1:]


def fit_kernel(sr: torch.Tensor, lr: torch.Tensor, scale: int, *, kind: str = "gaussian",
               size: int | None = None, steps: int | None = None, lr_rate: float | None = None,
               border: int | None = None, shift: bool = True, smooth: float = DEFAULT_SMOOTH,
               init: float | None = None, progress: bool = False) -> BlurEstimate:
    """Fit the blur kernel so that ``decimate(k * sr, scale)`` reproduces ``lr``.

    ``sr`` is the (frozen) high-resolution estimate, ``(N, C, scale H, scale W)``: the
    network's output for ``lr`` (:func:`estimate_blur`) or, to test the optimiser alone, the
    true image (an "oracle"). The arguments are those of :func:`estimate_blur` (``lr_rate``
    is its ``lr``). Raises InputError for bad arguments or images too small for the kernel.
    """
    from tqdm.auto import tqdm

    cfg = _settings(kind, scale, size, steps, lr_rate, border, smooth, init)
    _check_pair(sr, lr, cfg)
    kind, scale, size, rate, smooth, init = cfg.kind, cfg.scale, cfg.size, cfg.rate, cfg.smooth, cfg.init
    z, y = _interior(sr.detach().to(torch.float64), lr.detach().to(torch.float64), scale, size,
                     cfg.border)
    norm = y.var().clamp_min(1e-8)
    quad = _quadratic(z, y, scale, size)
    curve: list[float] = []

    start = _grid_start(quad, size, scale, shift and kind == "gaussian")
    init = start[0] if init is None else init
    if kind == "gaussian":
        theta = torch.tensor(math.log(init), dtype=torch.float64, requires_grad=True)
        offset = torch.tensor(start[1:], dtype=torch.float64, requires_grad=shift)
        params = [theta] + ([offset] if shift else [])

        def make() -> torch.Tensor:
            return _gaussian(theta.exp(), size, offset)

        opt = torch.optim.LBFGS(params, lr=rate, max_iter=1, history_size=20, line_search_fn="strong_wolfe")
    else:
        logits = torch.log(_gaussian(torch.tensor(init, dtype=torch.float64), size).clamp_min(1e-12))
        logits = (logits - logits.mean()).reshape(-1).requires_grad_(True)
        params = [logits]

        def make() -> torch.Tensor:
            return torch.softmax(logits, 0).reshape(size, size)

        opt = torch.optim.Adam(params, lr=rate)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        k = make()
        loss = quad.mse(k) / norm
        if kind == "free" and smooth:
            loss = loss + smooth * size * size * _smoothness(k)
        loss.backward()
        return loss

    for _ in tqdm(range(cfg.steps), desc=f"blur ({kind})", unit="step", disable=not progress, leave=False):
        opt.step(closure)
        with torch.no_grad():
            curve.append(max(0.0, float(quad.mse(make()))))
    with torch.no_grad():
        k = make().detach().clone()
        final = float(((_forward(z, k, scale) - y) ** 2).mean())
    if not math.isfinite(final):
        raise InputError("the blur estimation diverged (non-finite residual); try a smaller --lr")
    result = BlurEstimate(kind, scale, k, final, curve, border=cfg.border)
    if kind == "gaussian":
        result.width = float(theta.detach().exp())
        result.shift = tuple(float(v) for v in offset.detach())
    return result


def textured_window(image: torch.Tensor, crop: int) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the ``crop x crop`` window of ``image`` with the most
    detail (mean squared Laplacian of the channel mean) among a 3 x 3 grid of candidates;
    the whole image when it is not larger."""
    h, w = image.shape[-2:]
    ch, cw = min(crop, h), min(crop, w)
    if (ch, cw) == (h, w):
        return 0, 0, h, w
    g = image.detach().to(torch.float64).mean(1, keepdim=True)[:1]
    lap = F.conv2d(g, torch.tensor([[[[0, 1, 0], [1, -4, 1], [0, 1, 0]]]], dtype=torch.float64)) ** 2
    best = (-1.0, 0, 0)
    for top in sorted({round(i * (h - ch) / 2) for i in range(3)}):
        for left in sorted({round(j * (w - cw) / 2) for j in range(3)}):
            score = float(lap[..., top:top + ch - 2, left:left + cw - 2].mean())
            best = max(best, (score, top, left))
    return best[1], best[2], ch, cw


def estimate_blur(image: torch.Tensor, model: str | nn.Module, scale: int, *, kind: str = "gaussian",
                  size: int | None = None, steps: int | None = None, lr: float | None = None,
                  border: int | None = None, shift: bool = True, smooth: float = DEFAULT_SMOOTH,
                  init: float | None = None, crop: int | None = DEFAULT_CROP,
                  device: str | torch.device | None = "cpu", progress: bool = False) -> BlurEstimate:
    """Estimate the blur kernel ``image`` (N, C, H, W in [0, 1], low resolution) went through
    before a ``scale``-times decimation, through the frozen SR ``model`` (a registered name, a
    path, or a module with the model contract, of that scale).

    The model runs once (:func:`denoise.upscale.upscale`) on the ``crop x crop`` window with
    the most detail (:func:`textured_window`; None: the whole image -- the fit's cost grows
    with the pixels); :func:`fit_kernel` then fits ``kind`` "gaussian" (width, and centre with
    ``shift``) or "free" (softmax entries; optional smoothness prior ``smooth``, default 0) of
    ``size`` taps per side (odd; default 21 / 13) with ``steps`` iterations (default 30 L-BFGS
    / 300 Adam) at learning rate ``lr``, leaving ``border`` LR pixels out; ``init``: the starting
    width (HR pixels; default the best of a coarse grid). See the module docstring.
    InputError for a bad image, a scale the model lacks, or an image too small for the kernel.
    """
    check_image(image, "the image")
    cfg = _settings(kind, scale, size, steps, lr, border, smooth, init)
    _check_side(image, cfg)
    scale, _ = check_upscaler(model, cfg.scale)
    if crop is not None:
        crop = max(_positive(crop, "crop", integer=True), cfg.min_side)
    window = textured_window(image, crop) if crop else (0, 0, *image.shape[-2:])
    top, left, h, w = window
    part = image[..., top:top + h, left:left + w]
    sr = upscale(part, scale, model, device=device).clone()
    result = fit_kernel(sr.to(image.device), part, scale, kind=kind, size=size, steps=steps,
                        lr_rate=lr, border=border, shift=shift, smooth=smooth, init=init,
                        progress=progress)
    result.window = window
    return result
