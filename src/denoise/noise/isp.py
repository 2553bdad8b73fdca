"""In-camera processing stages of the camera noise model (:mod:`denoise.noise.camera`):
what a camera's pipeline does to the noise after demosaicing, each a pure function of a
noise field (or an sRGB image) and per-image parameters, (N,) tensors.

- :func:`correlate`: the spread of in-camera denoising (``corr``), level kept;
- :func:`reduce_chroma`, :func:`lowpass_chroma`: chroma noise reduction (``chroma``,
  ``cblur``);
- :func:`tone_curve`, :func:`inverse_tone_curve`: the picture style's S curve (``tone``);
- :func:`sharpen_luma`: the JPEG engine's unsharp mask (``sharp``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Width (Gaussian standard deviation, pixels) of the unsharp mask of ``sharp``.
SHARPEN_WIDTH = 1.0


def tone_curve(y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Global tone mapping ``(1 - t) y + t (3y^2 - 2y^3)`` with ``t = weight`` (N,) per image,
    on sRGB values; outside [0, 1] (noise can reach there) the offset at the nearest end,
    0, is kept, so values there pass unchanged."""
    c = y.clamp(0, 1)
    return y + weight.to(y).view(-1, 1, 1, 1) * (c * c * (3 - 2 * c) - c)


def inverse_tone_curve(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`tone_curve` on [0, 1] (``x`` is clamped to it), in closed form:
    with ``y = z + 1/2`` the curve ``(1 - t) y + t (3y^2 - 2y^3) = x`` is the depressed
    cubic ``z^3 + p z + q = 0``, ``p = -(1 + t/2) / (2t)``, ``q = (x - 1/2) / (2t)``, whose
    middle real root (the one in [-1/2, 1/2]) the trigonometric formula gives; computed in
    float64, weight 0 the identity."""
    xd = x.clamp(0, 1).double()
    t = weight.double().to(x.device).view(-1, 1, 1, 1)
    ts = t.clamp_min(1e-6)
    p = -(1 + ts / 2) / (2 * ts)
    q = (xd - 0.5) / (2 * ts)
    cos_arg = ((3 * q / (2 * p)) * torch.sqrt(-3 / p)).clamp(-1, 1)
    y = 0.5 + 2 * torch.sqrt(-p / 3) * torch.cos(torch.acos(cos_arg) / 3 - 2 * math.pi / 3)
    return torch.where(t > 0, y, xd).clamp(0, 1).to(x.dtype)


def _gaussian_blur(x: torch.Tensor, width: float) -> torch.Tensor:
    """Separable Gaussian blur (standard deviation ``width`` pixels, reflect padding)."""
    if width <= 0:
        return x
    radius = max(1, math.ceil(3 * width))
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / width) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1),
                 groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1),
                    groups=c)


def correlate(noise: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """Spread a noise field (N, C, H, W) over ``width`` (N,) pixels, keeping its level.

    Per image: the luma part (the channel mean) is blurred by a Gaussian of standard
    deviation ``width``, the chroma part (the rest; colour only) by ``2 * width``, each
    rescaled to its standard deviation before the blur, and each channel of their sum is
    rescaled to the channel's standard deviation before the blur. A width of 0 keeps the
    image's noise as it is.
    """
    out = []
    for field, w in zip(noise, width.tolist()):
        field = field[None]
        if w <= 0:
            out.append(field)
            continue
        luma = field.mean(1, keepdim=True)
        parts = [(luma, w), (field - luma, 2 * w)] if field.shape[1] > 1 else [(field, w)]
        spread = 0
        for part, width_px in parts:
            blurred = _gaussian_blur(part, width_px)
            spread = spread + blurred * (part.std() / blurred.std().clamp_min(1e-12))
        dims = (0, 2, 3)  # each channel back to its former level
        out.append(spread * (field.std(dims, keepdim=True) / spread.std(dims, keepdim=True).clamp_min(1e-12)))
    return torch.cat(out)


def reduce_chroma(noise: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale the chroma part of a colour noise field (N, 3, H, W) by ``factor`` (N,).

    The luma part is the channel mean, the chroma part the rest: the result is
    ``luma + factor * (noise - luma)``, so the channel mean is unchanged.
    """
    luma = noise.mean(1, keepdim=True)
    return luma + factor.to(noise).view(-1, 1, 1, 1) * (noise - luma)


def lowpass_chroma(noise: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """Blur the chroma part of a colour noise field (N, 3, H, W) by a Gaussian of standard
    deviation ``width`` (N,) pixels, its level not restored (a low-pass filter: the
    chroma part gets weaker and smoother); the luma part (channel mean) is kept. A width
    of 0 keeps the image's noise as it is."""
    luma = noise.mean(1, keepdim=True)
    out = [luma[k:k + 1] + _gaussian_blur(noise[k:k + 1] - luma[k:k + 1], w) for k, w in enumerate(width.tolist())]
    return torch.cat(out)


def sharpen_luma(noise: torch.Tensor, amount: torch.Tensor, width: float = SHARPEN_WIDTH) -> torch.Tensor:
    """Unsharp-mask the luma part (channel mean) of a noise field (N, C, H, W) by ``amount``
    (N,): ``luma + amount * (luma - blur(luma))``, blur a Gaussian of standard deviation
    ``width`` pixels; the chroma part (the rest) is kept. An amount of 0 keeps the noise."""
    luma = noise.mean(1, keepdim=True)
    detail = luma - _gaussian_blur(luma, width)
    return noise + amount.to(noise).view(-1, 1, 1, 1) * detail
