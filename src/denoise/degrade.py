"""Super-resolution degradations and the SR literature's evaluation protocol.

Degradations (high resolution -> low resolution), for integer scales 2, 3 and 4:

* :func:`bicubic_down` -- MATLAB's ``imresize(x, 1/s)`` (bicubic, antialiased), the one the SR
  literature's test inputs (Set5, Set14, ... ``LR/xS``) are made with; see :func:`imresize`.
  Checked against those files: MATLAB repeats the edge pixel beyond the borders (clamped
  indices; the mirrored indices of several Python ports miss the outermost LR ring by up to
  12 levels) and, on uint8 images, rounds to 8 bits between its two passes.
* :func:`decimate` -- plain decimation, no filter: keeps pixel ``(s*i, s*j)``, the top-left
  pixel of each ``s x s`` block (phase 0).
* :func:`blur_decimate` -- Gaussian blur of a given width (standard deviation in
  high-resolution pixels), then the same decimation.
* :func:`pil_bicubic` -- Pillow's ``Image.resize(..., Image.BICUBIC)`` on 8-bit images. Named
  apart because it is *not* MATLAB's: Pillow also uses the a = -0.5 cubic widened by the scale,
  but it cuts the kernel off at the borders (renormalising the weights) instead of
  repeating the edge pixel, takes its scale from the output size, and rounds and clips to 8 bits
  between its horizontal and vertical passes: inside the image it agrees with MATLAB within
  about a grey level, at the borders it differs by several.

Protocol (:func:`sr_psnr`, :func:`sr_ssim`), as the SR papers compute their tables: both
images are clipped and rounded to 8 bits (the output as it would be saved), converted to
luma Y with :func:`rgb_to_y` (ITU-R BT.601, MATLAB's ``rgb2ycbcr``, Y kept unrounded in
[16/255, 235/255]; gray images are used as they are), ``scale`` pixels are shaved off every
border, and PSNR / SSIM (:mod:`denoise.metrics`, data range 1) are taken on what remains.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import InputError
from .metrics import psnr, ssim
from .utils import check_image

__all__ = ["SCALES", "bicubic_down", "blur_decimate", "decimate", "imresize", "pil_bicubic",
           "rgb_to_y", "sr_psnr", "sr_ssim"]

#: The integer scales the named degradations accept.
SCALES = (2, 3, 4)

#: BT.601 luma of MATLAB's rgb2ycbcr for R, G, B in [0, 1]: Y = (16 + 65.481 R + 128.553 G
#: + 24.966 B) / 255.
_Y_WEIGHTS = (65.481, 128.553, 24.966)


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic'), support [-2, 2]."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


def _triangle(x: np.ndarray) -> np.ndarray:
    """Linear interpolation kernel (MATLAB's 'bilinear'), support [-1, 1]."""
    return np.clip(1.0 - np.abs(x), 0.0, None)


_KERNELS = {"cubic": (_cubic, 4.0), "linear": (_triangle, 2.0)}


def _contributions(in_len: int, out_len: int, scale: float, kernel: str, antialias: bool,
                   boundary: str = "replicate"):
    """Input indices (0-based) and weights of every output sample along one dimension.

    MATLAB's algorithm (``imresize>contributions``), in 1-based coordinates: output sample
    ``i`` sits at input position ``u = i / scale + 0.5 * (1 - 1 / scale)``; when shrinking
    with antialiasing the kernel becomes ``scale * k(scale * x)`` and its width
    ``width / scale``; the taps are ``floor(u - width / 2) + 0 .. ceil(width) + 1``, weighted
    ``k(u - j)``, normalised to sum 1; indices outside ``1..in_len`` are clamped to it
    (``boundary="replicate"``, MATLAB's ``min(max(1, j), in_len)``: the edge pixel is
    repeated outwards) or mirrored (``"symmetric"``: ``[1..n, n..1]`` repeated, the
    convention of several Python ports of imresize); the taps whose weight is zero
    everywhere are dropped (which changes nothing but the work).
    Returns (out_len, P) int64 indices and float64 weights.
    """
    func, width = _KERNELS[kernel]
    if scale < 1 and antialias:
        def k(x):
            return scale * func(scale * x)
        width = width / scale
    else:
        k = func
    i = np.arange(1, out_len + 1, dtype=np.float64)
    u = i / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = math.ceil(width) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based
    weights = k(u[:, None] - idx)
    weights = weights / weights.sum(axis=1, keepdims=True)
    idx = idx.astype(np.int64) - 1
    if boundary == "replicate":
        idx = np.clip(idx, 0, in_len - 1)
    else:
        mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
        idx = mirror[np.mod(idx, 2 * in_len)]
    keep = np.any(weights != 0, axis=0)
    return idx[:, keep], weights[:, keep]


def _resize_dim(x: torch.Tensor, dim: int, out_len: int, scale: float, kernel: str,
                antialias: bool, boundary: str) -> torch.Tensor:
    """Resize float64 ``x`` along ``dim`` (2 = height, 3 = width)."""
    idx, weights = _contributions(x.shape[dim], out_len, scale, kernel, antialias, boundary)
    taps = idx.shape[1]
    idx_t = torch.from_numpy(idx.reshape(-1)).to(x.device)
    w_t = torch.from_numpy(weights).to(x.device)
    gathered = x.index_select(dim, idx_t)
    if dim == 2:
        gathered = gathered.reshape(x.shape[0], x.shape[1], out_len, taps, x.shape[3])
        return (gathered * w_t[:, :, None]).sum(dim=3)
    gathered = gathered.reshape(x.shape[0], x.shape[1], x.shape[2], out_len, taps)
    return (gathered * w_t).sum(dim=4)


def _pair(value, name: str, kind) -> tuple:
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    ok = len(values) == 2 and all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                                  for v in values)
    if ok and kind is int:
        ok = all(float(v).is_integer() and v >= 1 for v in values)
    elif ok:
        ok = all(math.isfinite(float(v)) and 0 < float(v) <= 1e4 for v in values)
    if not ok:
        raise InputError(f"imresize: {name} must be a positive {'integer' if kind is int else 'number'}"
                         f" or a pair of them, got {value!r}")
    return tuple(kind(v) for v in values)


def _check_batch(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point() or x.numel() == 0:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{name}: expected a non-empty float tensor (N, C, H, W), got {got}")
    return x


def imresize(x: torch.Tensor, scale=None, *, size=None, kernel: str = "cubic",
             antialias: bool = True, boundary: str = "replicate", uint8: bool = False) -> torch.Tensor:
    """Resize a float batch ``(N, C, H, W)`` as MATLAB's ``imresize(x, scale)`` or
    ``imresize(x, [H', W'])`` does on a double image.

    ``kernel``: ``"cubic"`` (MATLAB's default 'bicubic': Keys' kernel, a = -0.5) or
    ``"linear"`` ('bilinear'). Give either ``scale``, a number or a pair (height, width),
    for an output of ``ceil(H * scale) x ceil(W * scale)`` as MATLAB's, or ``size``, a pair
    (H', W'), the scale then being ``H' / H`` and ``W' / W``. When shrinking with ``antialias`` (MATLAB's
    default) the kernel is stretched by ``1 / scale``, a low-pass filter against aliasing.
    Beyond the borders the edge pixel is repeated (``boundary="replicate"``, MATLAB's
    clamped indices; ``"symmetric"`` mirrors them instead), see :func:`_contributions`. The
    resize is separable and MATLAB's order is kept: the dimension with the smaller scale
    first, the height first when they are equal. Computed in float64, returned in ``x``'s
    dtype, unclipped (the cubic kernel overshoots a little at edges) and unrounded, as
    MATLAB on a double image; then the order changes only float rounding.

    ``uint8=True`` does what MATLAB does to a uint8 image: the input is rounded to 8 bits and
    the result of *each* pass is clipped and rounded to 8 bits (MATLAB returns every pass in
    the input's class; rounding halves up), so the output holds 8-bit levels / 255. The
    SR test sets' LR inputs were made this way (see :func:`bicubic_down`).
    """
    x = _check_batch(x, "imresize")
    if kernel not in _KERNELS:
        raise InputError(f"imresize: kernel must be one of {sorted(_KERNELS)}, got {kernel!r}")
    if boundary not in ("replicate", "symmetric"):
        raise InputError(f"imresize: boundary must be 'replicate' or 'symmetric', got {boundary!r}")
    if not torch.isfinite(x).all():
        raise InputError("imresize: x contains NaN or Inf values")
    h, w = x.shape[2], x.shape[3]
    if (scale is None) == (size is None):
        raise InputError("imresize: give exactly one of scale and size")
    if size is not None:
        out = _pair(size, "size", int)
        scales = (out[0] / h, out[1] / w)
    else:
        scales = _pair(scale, "scale", float)
        out = (math.ceil(h * scales[0]), math.ceil(w * scales[1]))
        if min(out) < 1:
            raise InputError(f"imresize: scale {scale!r} makes an empty image from {h}x{w}")
    if max(out) > 1 << 16:
        raise InputError(f"imresize: output {out[0]}x{out[1]} is too large")
    return _imresize(x, scales, out, kernel, antialias, boundary, bool(uint8))


def _imresize(x: torch.Tensor, scales, out, kernel: str, antialias: bool,
              boundary: str = "replicate", uint8: bool = False) -> torch.Tensor:
    y = x.to(torch.float64)
    if uint8:
        y = round_8bit(y)
    order = (0, 1) if scales[0] <= scales[1] else (1, 0)
    for d in order:
        y = _resize_dim(y, 2 + d, out[d], scales[d], kernel, antialias, boundary)
        if uint8:
            y = round_8bit(y)
    return y.to(x.dtype)


def _check_scale(s, name: str) -> int:
    if isinstance(s, bool) or not isinstance(s, numbers.Real) or not float(s).is_integer() \
            or int(s) not in SCALES:
        raise InputError(f"{name}: scale must be one of {SCALES}, got {s!r}")
    return int(s)


def _check_size(x: torch.Tensor, need: int, name: str, what: str) -> None:
    h, w = x.shape[-2:]
    if h < need or w < need:
        raise InputError(f"{name}: the image ({h}x{w}) is smaller than the {what} "
                         f"({need} pixels); give at least {need}x{need}")


def bicubic_down(x: torch.Tensor, s: int, *, uint8: bool = False) -> torch.Tensor:
    """MATLAB's ``imresize(x, 1/s)`` (antialiased bicubic), ``ceil(H/s) x ceil(W/s)``.

    The image must be at least as large as the kernel (``4 s`` pixels each way).
    ``uint8=True``: as MATLAB on a uint8 image (8-bit levels after each pass, see
    :func:`imresize`). On the SR test sets (SR_LR Set5 and Set14, ``HR/xS``) that reproduces
    the published ``LR/xS`` exactly on 99.7-100% of the samples and within one grey level on
    all; the float computation, rounded once at the end, within one level on 99.8-100%.
    """
    s = _check_scale(s, "bicubic_down")
    check_image(x)
    _check_size(x, 4 * s, "bicubic_down", "bicubic kernel")
    h, w = x.shape[-2:]
    # the weights use the exact scale 1/s, the size is computed in integers (ceil(H * (1/s))
    # in floats can land one above ceil(H / s))
    return _imresize(x, (1.0 / s, 1.0 / s), (-(-h // s), -(-w // s)), "cubic", True,
                     "replicate", bool(uint8))


def decimate(x: torch.Tensor, s: int) -> torch.Tensor:
    """Plain decimation ``x[..., ::s, ::s]``: keeps the top-left pixel of each s x s block
    (phase 0; the LR pixel (i, j) is the HR pixel (s i, s j)), ``ceil(H/s) x ceil(W/s)``.
    No filtering, so fine detail aliases. A view is not returned: the result is a copy."""
    s = _check_scale(s, "decimate")
    check_image(x)
    _check_size(x, s, "decimate", "scale")
    return x[..., ::s, ::s].clone()


def _gaussian_taps(width: float, dtype, device) -> torch.Tensor:
    radius = math.ceil(3.0 * width)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    g = torch.exp(-0.5 * (t / width) ** 2)
    return (g / g.sum()).to(dtype)


def blur_decimate(x: torch.Tensor, s: int, width: float) -> torch.Tensor:
    """Gaussian blur of standard deviation ``width`` (HR pixels), then :func:`decimate`.

    The kernel has ``2 ceil(3 width) + 1`` taps (normalised to sum 1), applied separably
    with reflected borders (``reflect``: the edge pixel is not repeated); the image must be
    at least that large. ``width = 0`` means no blur (plain decimation).
    """
    s = _check_scale(s, "blur_decimate")
    check_image(x)
    if isinstance(width, bool) or not isinstance(width, numbers.Real) or not math.isfinite(width) \
            or not 0 <= width <= 50:
        raise InputError(f"blur_decimate: width must be a number in [0, 50] (HR pixels), got {width!r}")
    if width == 0:
        return decimate(x, s)
    taps = _gaussian_taps(float(width), torch.float64, x.device)
    size = taps.numel()
    _check_size(x, size, "blur_decimate", "Gaussian kernel")
    n, c, h, w = x.shape
    r = size // 2
    y = x.to(torch.float64).reshape(n * c, 1, h, w)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), taps.view(1, 1, size, 1))
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), taps.view(1, 1, 1, size))
    return decimate(y.reshape(n, c, h, w).to(x.dtype), s)


def pil_bicubic(x: torch.Tensor, s: int) -> torch.Tensor:
    """Pillow's bicubic downscaling by ``s`` (``Image.resize(..., Image.BICUBIC)``) on the
    image rounded to 8 bits; returns 8-bit levels / 255 in ``x``'s dtype. Not MATLAB's
    imresize (see the module's docstring).

    The output is ``floor(H/s) x floor(W/s)``: Pillow takes its scale from the sizes, so the
    region resized is the top-left ``s floor(H/s) x s floor(W/s)`` (``box=``), which keeps
    the scale exactly ``s`` (the pixels beyond the box still feed the kernel); on sizes that
    are multiples of ``s`` it is the whole image, as :func:`bicubic_down`'s."""
    s = _check_scale(s, "pil_bicubic")
    check_image(x)
    _check_size(x, 4 * s, "pil_bicubic", "bicubic kernel")
    n, c, h, w = x.shape
    out = (w // s, h // s)
    box = (0, 0, out[0] * s, out[1] * s)
    levels = round_8bit(x.to(torch.float64)).mul(255).round().to(torch.uint8).cpu().numpy()
    result = np.empty((n, c, out[1], out[0]), dtype=np.uint8)
    for i in range(n):
        for j in range(c):
            img = Image.fromarray(levels[i, j], mode="L")
            result[i, j] = np.asarray(img.resize(out, Image.BICUBIC, box=box))
    return torch.from_numpy(result).to(device=x.device, dtype=x.dtype) / 255.0


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """Luma Y of an RGB batch in [0, 1], ITU-R BT.601 as MATLAB's ``rgb2ycbcr`` (on double
    images): ``Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255``, in [16/255, 235/255],
    not rounded; ``(N, 3, H, W) -> (N, 1, H, W)``. A gray batch (C = 1) is returned as is."""
    check_image(x)
    if x.shape[1] == 1:
        return x
    wr, wg, wb = (v / 255.0 for v in _Y_WEIGHTS)
    y = 16.0 / 255.0 + wr * x[:, 0:1].double() + wg * x[:, 1:2].double() + wb * x[:, 2:3].double()
    return y.to(x.dtype)


def round_8bit(x: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and round to 8-bit levels as MATLAB's uint8 conversion (halves up):
    ``floor(255 x + 0.5) / 255``, what the SR literature's 8-bit test inputs went through."""
    return torch.floor(x.clamp(0.0, 1.0) * 255.0 + 0.5) / 255.0


def _sr_pair(sr, hr, scale, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    check_image(sr, "sr")
    check_image(hr, "hr")
    if sr.shape != hr.shape:
        raise InputError(f"{name}: sr and hr must have the same shape, got {tuple(sr.shape)} "
                         f"and {tuple(hr.shape)}; crop hr to a multiple of the scale first")
    if isinstance(scale, bool) or not isinstance(scale, numbers.Integral) or not 0 <= scale <= 16:
        raise InputError(f"{name}: scale (the border shaved) must be an integer in 0..16, got {scale!r}")
    h, w = sr.shape[-2:]
    if h <= 2 * scale or w <= 2 * scale:
        raise InputError(f"{name}: a {h}x{w} image leaves nothing after shaving {scale} pixels")
    ys = [rgb_to_y(round_8bit(t.to(torch.float64))) for t in (sr, hr)]
    if scale:
        ys = [t[..., scale:-scale, scale:-scale] for t in ys]
    return ys[0], ys[1]


def sr_psnr(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> torch.Tensor:
    """PSNR (dB, one per image, float64) of a super-resolved batch against the ground truth
    by the SR papers' protocol: 8-bit outputs, Y channel, ``scale`` pixels shaved at each
    border, data range 1 (see the module's docstring)."""
    a, b = _sr_pair(sr, hr, scale, "sr_psnr")
    return psnr(a, b, data_range=1.0)


def sr_ssim(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> torch.Tensor:
    """SSIM (one per image, float64) by the same protocol as :func:`sr_psnr`; the
    Gaussian-window SSIM of :func:`denoise.metrics.ssim` (Wang et al.'s ``ssim_index``)."""
    a, b = _sr_pair(sr, hr, scale, "sr_ssim")
    return ssim(a, b, data_range=1.0)
