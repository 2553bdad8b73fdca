"""Camera-like noise: clean sRGB is "unprocessed" to linear raw, noised, and processed back.

The idea is that of Brooks et al., "Unprocessing Images for Learned Raw Denoising" (CVPR
2019), with the realistic noise model of CBDNet (Guo et al., 2019). For a colour image
(N, 3, H, W) in [0, 1], per image and in this order:

1. tone curve inverted: the sRGB transfer function, :func:`srgb_to_linear` (exact inverse
   of :func:`linear_to_srgb`);
2. colour correction inverted: a camera-to-sRGB matrix (CCM) is drawn as a random convex
   combination of the :data:`CCMS` (rows sum to 1, so grey stays grey) and its inverse is
   applied, :func:`apply_ccm`;
3. white balance inverted: red and blue are divided by gains drawn uniformly from
   :data:`RED_GAINS` and :data:`BLUE_GAINS` (green gain 1), :func:`apply_gains`;
4. Bayer mosaic RGGB: each pixel keeps one channel, :func:`mosaic`;
5. Poisson-Gaussian noise at each Bayer site with signal ``s`` (clamped at 0):
   ``shot * Poisson(s / shot) + sqrt(read) * N(0, 1) - s``, variance ``shot * s + read``,
   :func:`raw_noise`. ``shot`` is drawn log-uniformly from ``shot`` (default
   :data:`SHOT_RANGE`, about low to high ISO: shot level grows with the analog gain);
   ``read`` (a variance), unless given, follows the shot level as in Brooks et al.:
   ``log(read) = 2.18 log(shot) + 1.2 + N(0, 0.26^2)``;
6. demosaicing, bilinear by normalised convolution, :func:`demosaic`, applied to the raw
   *noise*: the linear image becomes ``linear + demosaic(noise)``. The clean signal is
   kept, so the clean image stays an exact target (real demosaicing would also blur it);
   the noise becomes correlated across neighbouring pixels and across channels;
6b. optional in-camera processing spread (``corr``, off by default): camera pipelines
   denoise and sharpen after demosaicing, and their JPEG keeps chroma at half resolution,
   so the noise of an sRGB photo is correlated over more than the 2-3 pixels bilinear
   demosaicing gives, its colour (chroma) part more than its brightness (luma) part
   (the reason AP-BSN needs pixel-shuffle strides of 4-5 on real sRGB noise). With
   ``corr`` a width ``w`` (pixels) is drawn per image; the noise's luma part (channel
   mean) is blurred by a Gaussian of standard deviation ``w`` and its chroma part (the
   rest) by ``2 w``, and each channel is rescaled to its former standard deviation (the
   level stays the shot/read level; only the spectrum changes), :func:`correlate`;
6c. optional in-camera chroma noise reduction (``chroma``, off by default; colour only):
   camera JPEG engines smooth colour noise much harder than brightness noise (their
   "noise reduction" settings act mostly on chroma, and 4:2:0 JPEG halves its
   resolution), so the colour part of a photo's noise is weaker, relative to its
   brightness part, than raw demosaiced noise has it. With ``chroma`` a factor ``f`` in
   [0, 1] is drawn per image and the noise's chroma part (the rest after its channel
   mean) is scaled by ``f``; the luma part is kept, :func:`reduce_chroma`. This acts on
   the noise after white balance and colour correction (linear sRGB primaries, where
   grey is equal in the three channels); ``f = 1`` is the plain noise, ``f = 0`` leaves
   grey noise;
6d. optional chroma low-pass (``cblur``, off by default; colour only): the noise
   reduction of a camera's JPEG engine is a spatial filter on chroma (and 4:2:0 JPEG
   resamples chroma at half resolution), so what is left of a photo's colour noise is
   low-frequency blotches, weaker *and* more correlated than the demosaiced noise;
   scaling alone (6c) keeps its fine grain. With ``cblur`` a width ``b`` (pixels) is
   drawn per image and the chroma part is blurred by a Gaussian of standard deviation
   ``b`` *without* restoring its level (unlike 6b), :func:`lowpass_chroma`; the luma part
   is kept. After 6c, in the same space;
7. forward processing: white-balance gains, CCM and sRGB tone curve again;
7a. optional global tone mapping (``tone``, off by default): cameras do not stop at the
   sRGB curve; their picture styles add an S-shaped contrast curve, which Brooks et al.
   model with a smoothstep ``3y^2 - 2y^3`` applied after the sRGB curve (and invert it
   first when unprocessing). It steepens mid-tones (slope 1.5 at 0.5) and flattens
   shadows and highlights, so the noise grows in mid-tones and shrinks near black and
   white. With ``tone`` a weight ``t`` in [0, 1] is drawn per image and the curve is
   ``(1 - t) y + t (3y^2 - 2y^3)`` (:func:`tone_curve`): the clean image is first taken
   through its inverse (:func:`inverse_tone_curve`), so it stays the exact target;
7b. optional in-camera sharpening (``sharp``, off by default): every camera's JPEG engine
   sharpens after the tone curve, by an unsharp mask on brightness, and it sharpens the
   noise with the image: the noise's high frequencies are boosted, so it looks like fine
   texture. With ``sharp`` an amount ``a`` is drawn per image and the sRGB noise's luma
   part (channel mean; the whole noise of a grey image) ``n`` becomes
   ``n + a (n - G(n))``, ``G`` a Gaussian blur of standard deviation
   :data:`~denoise.noise.isp.SHARPEN_WIDTH` pixels, :func:`sharpen_luma`. The clean image is kept as the
   target (it already is a processed photo, with its own sharpening);
8. optional JPEG round trip (8-bit, PIL) with a quality drawn uniformly from ``quality``.

Grey images (N, 1, H, W) take a simpler path: tone curve inverted, Poisson-Gaussian noise
per pixel in linear space (no mosaic, CCM or gains), tone curve, optional JPEG. With
``mosaic=True`` (spec token ``mosaic``) they instead model a colour photo turned grey,
the usual origin of a grey photo: the image is replicated to RGB, goes through the colour
path above (JPEG included) and is turned back to grey with the BT.601 luma weights
(:data:`LUMA`), so its noise carries the demosaicing correlation. Colour images ignore it.

Without JPEG the result is not clipped (``clip=True`` clips it to [0, 1]); with JPEG it is
in [0, 1] and on the 8-bit grid. ``shot=0, read=0`` without JPEG gives the input back (up
to rounding). Spec strings: ``camera``, ``camera:jpeg`` (quality 70-95), ``camera:mosaic``,
``camera:shot=0.001-0.01,read=1e-05,q=90,corr=0-1.5,chroma=0.2-1,cblur=0-4,sharp=0-1,tone=0-1``, each with ``:clip`` allowed; see
:meth:`Camera.from_spec`.
"""
from __future__ import annotations

import io
import math
import re

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputError
from .isp import (  # the in-camera processing stages, re-exported here
    correlate,
    inverse_tone_curve,
    lowpass_chroma,
    reduce_chroma,
    sharpen_luma,
    tone_curve,
)
from .models import (
    Noise,
    Param,
    _check_param,
    _format_param,
    _normal,
    _poisson,
    _repr_param,
    _uniform,
)

#: Camera-to-sRGB colour correction matrices (rows sum to 1), typical of phone and DSLR
#: sensors; a random convex combination of them is used per image.
CCMS = torch.tensor([
    [[1.70, -0.55, -0.15], [-0.20, 1.55, -0.35], [0.05, -0.50, 1.45]],
    [[1.90, -0.80, -0.10], [-0.25, 1.45, -0.20], [0.00, -0.65, 1.65]],
    [[1.55, -0.45, -0.10], [-0.15, 1.40, -0.25], [0.05, -0.40, 1.35]],
], dtype=torch.float64)
RED_GAINS = (1.9, 2.4)
BLUE_GAINS = (1.5, 1.9)
#: Default shot-noise levels (variance per unit of linear signal), drawn log-uniformly.
SHOT_RANGE = (1e-4, 1.2e-2)
#: Read-noise variance from the shot level: log(read) = SLOPE * log(shot) + OFFSET + N(0, JITTER^2).
READ_SLOPE, READ_OFFSET, READ_JITTER = 2.18, 1.20, 0.26
#: ITU-R BT.601 luma weights, used to turn a colour photo grey (``mosaic=True``).
LUMA = (0.299, 0.587, 0.114)
#: JPEG qualities of ``camera:jpeg``.
JPEG_RANGE = (70.0, 95.0)


# ----------------------------------------------------------------------------- stages

def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """Inverse sRGB transfer function (linear below 0.04045, power 2.4 above)."""
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """sRGB transfer function; negative values stay on the linear segment."""
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(0.0031308) ** (1 / 2.4) - 0.055)


def apply_ccm(x: torch.Tensor, ccm: torch.Tensor) -> torch.Tensor:
    """Each pixel's colour times a per-image 3x3 matrix ``ccm`` (N, 3, 3)."""
    return torch.einsum("nij,njhw->nihw", ccm.to(x.dtype), x)


def apply_gains(x: torch.Tensor, red: torch.Tensor, blue: torch.Tensor) -> torch.Tensor:
    """Red and blue multiplied by per-image gains (N,); pass 1 / gain to invert."""
    ones = torch.ones_like(red)
    return x * torch.stack([red, ones, blue], 1).to(x.dtype).view(-1, 3, 1, 1)


def bayer_masks(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) masks of the RGGB pattern: R at (even, even), B at (odd, odd), G elsewhere."""
    yy = torch.arange(h, device=like.device).view(h, 1) % 2
    xx = torch.arange(w, device=like.device).view(1, w) % 2
    red = (yy == 0) & (xx == 0)
    blue = (yy == 1) & (xx == 1)
    return torch.stack([red, ~(red | blue), blue]).unsqueeze(0).to(like.dtype)


def mosaic(x: torch.Tensor) -> torch.Tensor:
    """The RGGB Bayer raw (N, 1, H, W) of a colour image (N, 3, H, W)."""
    return (x * bayer_masks(x.shape[2], x.shape[3], x)).sum(1, keepdim=True)


# Red/blue: the full 3x3 neighbourhood; green: the cross only (a green site's diagonal
# neighbours are green too, and must not blur it).
_KERNELS = torch.tensor([[[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]],
                         [[0.0, 0.25, 0.0], [0.25, 1.0, 0.25], [0.0, 0.25, 0.0]],
                         [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]]], dtype=torch.float64)


def demosaic(raw: torch.Tensor) -> torch.Tensor:
    """Bilinear demosaicing of an RGGB raw (N, 1, H, W) into (N, 3, H, W).

    Each channel is the weighted mean of its known samples in the 3x3 neighbourhood
    (normalised convolution), so known samples are kept, missing green is the mean of
    the 4 neighbours, missing red/blue of the 2 or 4 nearest ones, and a constant raw
    gives a constant image, borders included.
    """
    masks = bayer_masks(raw.shape[2], raw.shape[3], raw)
    kernel = _KERNELS.to(raw.device, raw.dtype).unsqueeze(1)
    num = F.conv2d(raw * masks, kernel, padding=1, groups=3)
    den = F.conv2d(masks.expand(raw.shape[0], 3, -1, -1), kernel, padding=1, groups=3)
    return num / den


def raw_noise(signal: torch.Tensor, shot: torch.Tensor, read: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Poisson-Gaussian noise for a linear signal (clamped at 0), per-image ``shot`` and
    ``read`` (N, 1, 1, 1): ``shot * Poisson(s / shot) - s + sqrt(read) * N(0, 1)``,
    variance ``shot * s + read``; no shot noise where ``shot`` is 0."""
    s = signal.clamp_min(0)
    safe = torch.where(shot > 0, shot, torch.ones_like(shot))
    counts = _poisson((s / safe).to(torch.float64), gen).to(s.dtype)
    shot_part = torch.where(shot > 0, safe * counts - s, torch.zeros_like(s))
    return shot_part + read.sqrt() * _normal(s.shape, gen, s)


def jpeg(x: torch.Tensor, quality: list[int]) -> torch.Tensor:
    """A JPEG round trip (8-bit, 4:2:0 for colour) of each image at its quality."""
    out = []
    for image, q in zip(x.clamp(0, 1), quality):
        array = (image.detach().cpu().double().numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
        pil = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
        buffer = io.BytesIO()
        pil.save(buffer, format="JPEG", quality=int(q))
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())), dtype=np.float64) / 255
        decoded = decoded.reshape(array.shape).transpose(2, 0, 1)
        out.append(torch.from_numpy(np.ascontiguousarray(decoded)))
    return torch.stack(out).to(x.device, x.dtype)


# ----------------------------------------------------------------------------- model

def _draw(value: Param, n: int, gen: torch.Generator, like: torch.Tensor, *, log: bool = False) -> torch.Tensor:
    """(N,) values: fixed, or drawn uniformly (log-uniformly when ``log`` and lo > 0)."""
    u = _uniform((n,), gen, like).double()
    if not isinstance(value, tuple):
        return torch.full((n,), float(value), dtype=torch.float64)
    lo, hi = value
    if log and lo > 0:
        return torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u)
    return lo + (hi - lo) * u


_NUMBER = r"\d*\.?\d+(?:e[-+]?\d+)?"


class Camera(Noise):
    """Camera-like noise by unprocessing (see the module text for the stages).

    ``shot``: shot-noise level (variance per unit of linear signal), a value or a range
    drawn log-uniformly (uniformly if it starts at 0); default :data:`SHOT_RANGE`.
    ``read``: read-noise variance (linear scale), a value or a range drawn uniformly;
    None (default) derives it from the shot level with jitter. ``quality``: JPEG quality
    (1-100), a value or a range drawn uniformly and rounded per image; None: no JPEG.
    """

    kind = "camera"

    def __init__(self, shot: Param = SHOT_RANGE, read: Param | None = None, quality: Param | None = None, *,
                 corr: Param | None = None, chroma: Param | None = None, cblur: Param | None = None,
                 sharp: Param | None = None, tone: Param | None = None, mosaic: bool = False, clip: bool = False):
        super().__init__(clip=clip)
        self.mosaic = bool(mosaic)
        self.corr = None if corr is None else _check_param("Camera", "correlation width", corr, 0.0, 16.0)
        self.chroma = None if chroma is None else _check_param("Camera", "chroma factor", chroma, 0.0, 1.0)
        self.cblur = None if cblur is None else _check_param("Camera", "chroma blur width", cblur, 0.0, 16.0)
        self.sharp = None if sharp is None else _check_param("Camera", "sharpening amount", sharp, 0.0, 4.0)
        self.tone = None if tone is None else _check_param("Camera", "tone curve weight", tone, 0.0, 1.0)
        self.shot = _check_param("Camera", "shot level", shot, 0.0)
        self.read = None if read is None else _check_param("Camera", "read variance", read, 0.0)
        self.quality = None if quality is None else _check_param("Camera", "JPEG quality", quality, 1.0, 100.0)

    def _apply(self, x, gen):
        n, c = x.shape[:2]  # c is 1 or 3 (checked by sample)
        if c == 1 and self.mosaic:
            noisy, _ = self._apply(x.expand(n, 3, *x.shape[2:]), gen)
            luma = torch.tensor(LUMA, dtype=noisy.dtype, device=noisy.device).view(1, 3, 1, 1)
            return (noisy * luma).sum(1, keepdim=True), None
        shot = _draw(self.shot, n, gen, x, log=True)
        if self.read is None:
            jitter = _normal((n,), gen, x).double() * READ_JITTER
            read = torch.where(shot > 0, torch.exp(READ_SLOPE * shot.clamp_min(1e-300).log() + READ_OFFSET + jitter),
                               torch.zeros_like(shot))
        else:
            read = _draw(self.read, n, gen, x)
        shot, read = (v.to(x.dtype).to(x.device).view(n, 1, 1, 1) for v in (shot, read))
        tone = None if self.tone is None else _draw(self.tone, n, gen, x)
        linear = srgb_to_linear(x.clamp(0, 1) if tone is None else inverse_tone_curve(x, tone))
        if c == 1:
            noise = raw_noise(linear, shot, read, gen)
            if self.corr is not None:
                noise = correlate(noise, _draw(self.corr, n, gen, x))
            noisy = linear_to_srgb(linear + noise)
        else:
            weights = _uniform((n, len(CCMS)), gen, x).double() + 1e-6
            ccm = torch.einsum("nk,kij->nij", weights / weights.sum(1, keepdim=True), CCMS)
            red = _draw(RED_GAINS, n, gen, x)
            blue = _draw(BLUE_GAINS, n, gen, x)
            raw = apply_gains(apply_ccm(linear, torch.linalg.inv(ccm)), 1 / red, 1 / blue)
            noise = demosaic(raw_noise(mosaic(raw), shot, read, gen))
            if self.corr is not None:
                noise = correlate(noise, _draw(self.corr, n, gen, x))
            # forward processing is linear: the clean part processes back to ``linear``
            noise = apply_ccm(apply_gains(noise, red, blue), ccm)
            if self.chroma is not None:  # in processed linear RGB, where grey noise is equal in R, G, B
                noise = reduce_chroma(noise, _draw(self.chroma, n, gen, x))
            if self.cblur is not None:  # the same space: the camera's chroma noise filter
                noise = lowpass_chroma(noise, _draw(self.cblur, n, gen, x))
            noisy = linear_to_srgb(linear + noise)
        if tone is not None:  # the picture style's contrast curve, after the sRGB curve
            noisy = tone_curve(noisy, tone)
        if self.sharp is not None:  # the camera's unsharp mask, on the processed (sRGB) noise
            clean = linear_to_srgb(linear) if tone is None else tone_curve(linear_to_srgb(linear), tone)
            noisy = clean + sharpen_luma(noisy - clean, _draw(self.sharp, n, gen, x))
        if self.quality is not None:
            quality = _draw(self.quality, n, gen, x).round().int().tolist()
            noisy = jpeg(noisy, quality)
        return noisy, None

    @classmethod
    def from_spec(cls, rest: str, spec: str, usage: str = "") -> "Camera":
        """The model of a spec after ``camera:``: colon-separated tokens, each ``clip``,
        ``jpeg`` (quality :data:`JPEG_RANGE`) or comma-separated ``KEY=VALUE`` with keys
        ``shot``, ``read``, ``q``, a value being a number or a range ``LO-HI``."""
        kwargs: dict = {}
        hint = f"; use one of: {usage}" if usage else ""
        for token in filter(None, (t.strip() for t in rest.split(":"))):
            if token in ("clip", "jpeg", "mosaic"):
                kwargs["quality" if token == "jpeg" else token] = JPEG_RANGE if token == "jpeg" else True
                continue
            for item in token.split(","):
                key, eq, value = (s.strip() for s in item.partition("="))
                name = {"shot": "shot", "read": "read", "q": "quality", "corr": "corr", "chroma": "chroma",
                        "cblur": "cblur", "sharp": "sharp", "tone": "tone"}.get(key)
                if not eq or name is None:
                    raise InputError(f"bad camera option {item.strip()!r} in noise spec {spec!r} "
                                     f"(use shot=, read=, q=, corr=, chroma=, cblur=, sharp=, tone=, jpeg, mosaic, clip){hint}")
                kwargs[name] = _parse_camera_value(value, spec)
        return cls(**kwargs)

    def _spec_params(self):
        items = [] if self.shot == SHOT_RANGE else [f"shot={_format_param(self.shot)}"]
        items += [] if self.read is None else [f"read={_format_param(self.read)}"]
        items += [] if self.quality is None else [f"q={_format_param(self.quality)}"]
        items += [] if self.corr is None else [f"corr={_format_param(self.corr)}"]
        items += [] if self.chroma is None else [f"chroma={_format_param(self.chroma)}"]
        items += [] if self.cblur is None else [f"cblur={_format_param(self.cblur)}"]
        items += [] if self.sharp is None else [f"sharp={_format_param(self.sharp)}"]
        items += [] if self.tone is None else [f"tone={_format_param(self.tone)}"]
        return ",".join(items)

    @property
    def spec(self) -> str:
        params = self._spec_params()
        return ("camera" + (f":{params}" if params else "") + (":mosaic" if self.mosaic else "")
                + (":clip" if self.clip else ""))

    def _repr_params(self):
        return (f"shot={_repr_param(self.shot)}, read={None if self.read is None else _repr_param(self.read)}, "
                f"quality={None if self.quality is None else _repr_param(self.quality)}"
                + (f", corr={_repr_param(self.corr)}" if self.corr is not None else "")
                + (f", chroma={_repr_param(self.chroma)}" if self.chroma is not None else "")
                + (f", cblur={_repr_param(self.cblur)}" if self.cblur is not None else "")
                + (f", sharp={_repr_param(self.sharp)}" if self.sharp is not None else "")
                + (f", tone={_repr_param(self.tone)}" if self.tone is not None else "")
                + (", mosaic=True" if self.mosaic else ""))


def _parse_camera_value(text: str, spec: str) -> Param:
    try:
        return float(text)
    except ValueError:
        pass
    match = re.fullmatch(f"({_NUMBER})-({_NUMBER})", text)
    if match is None:
        raise InputError(f"bad number {text!r} in noise spec {spec!r}")
    return float(match.group(1)), float(match.group(2))
