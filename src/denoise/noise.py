"""Noise models: objects that corrupt clean images ``(N, C, H, W)`` in [0, 1].

Each model is called as ``noise(x, generator)`` and returns the noisy batch. Randomness
comes only from the ``generator`` passed: a :class:`torch.Generator`, an int seed, or None
for torch's global generator (so ``torch.manual_seed`` governs it). Random numbers are
drawn on the generator's device and moved to the image's, so a CPU generator gives the
same noise for an image on any device.

Parameters are on the 0-1 intensity scale, except in spec strings (see
:func:`parse_noise`), where Gaussian sigmas are on the 0-255 scale as in the literature.
Every parameter may also be a range ``(lo, hi)``: a value is then drawn uniformly per
image (blind training, as in Noise2Noise).

``clip`` defaults to False everywhere, so Gaussian and Poisson noise stay unbiased
("noise not clipped", the benchmark protocol of DnCNN/FFDNet). The replacement and
masking noises (Bernoulli, Impulse, SaltPepper, Text) never leave [0, 1] for inputs in
[0, 1]; for them ``clip`` changes nothing.

=================  =================  ===========================================
spec               class              noisy image
=================  =================  ===========================================
gaussian:25        Gaussian(25/255)   x + sigma * N(0, 1)
gaussian:0-50      Gaussian(range)    sigma drawn per image in [0, 50/255]
poisson:30         Poisson(30)        Poisson(lam * x) / lam (lam photons at white)
poissongaussian:   PoissonGaussian    Poisson(lam * x) / lam + sigma * N(0, 1)
  30,10
bernoulli:0.5      Bernoulli(0.5)     x * mask, mask = 1 with probability p (kept)
impulse:0.5        Impulse(0.5)       a fraction p of pixels get a uniform random colour
saltpepper:0.1     SaltPepper(0.1)    a fraction p of pixels set to 0 or 1 (even odds)
text:0.25          Text(0.25)         random strings cover a fraction p of the pixels
text:0.25,10-30    Text(0.25, (10,    the same, font sizes 10 to 30 pixels whatever
                   30))               the image size (crops and full images alike)
=================  =================  ===========================================

Append ``:clip`` to a spec to clip the result to [0, 1], e.g. ``gaussian:25:clip``.
"""
from __future__ import annotations

import functools
import math
import re
import string
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .errors import InputError
from .utils import check_image

__all__ = ["Noise", "Gaussian", "Poisson", "PoissonGaussian", "Bernoulli", "Impulse",
           "SaltPepper", "Text", "NOISE_KINDS", "parse_noise", "sigma_of", "make_generator"]

#: A parameter: one value, or a range (lo, hi) drawn uniformly per image.
Param = Union[float, tuple[float, float]]
GeneratorLike = Union[torch.Generator, int, None]


def make_generator(generator: GeneratorLike = None) -> torch.Generator:
    """A :class:`torch.Generator` from a generator, an int seed, or None (the global one)."""
    if generator is None:
        return torch.default_generator
    if isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(int(generator))
    raise InputError(f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}")


def _uniform(shape: Sequence[int], gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(tuple(shape), generator=gen, device=gen.device).to(like.device, like.dtype)


def _normal(shape: Sequence[int], gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=gen, device=gen.device).to(like.device, like.dtype)


def _poisson(rate: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return torch.poisson(rate.to(gen.device), generator=gen).to(rate.device)


def _per_image(value: Param, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """The parameter for each image of the batch, shaped (N, 1, 1, 1) to broadcast."""
    n = like.shape[0]
    if isinstance(value, tuple):
        lo, hi = value
        return lo + (hi - lo) * _uniform((n, 1, 1, 1), gen, like)
    return torch.full((n, 1, 1, 1), float(value), dtype=like.dtype, device=like.device)


def _check_param(owner: str, name: str, value, low: float, high: float = math.inf, *,
                 open_low: bool = False, unit: str = "", scale: float = 1.0) -> Param:
    """Validate a number, or a (lo, hi) range, against the bounds; return it as floats.

    ``scale`` only changes how the value is shown in messages (255: as ``25/255``).
    """
    lower = f"> {low:g}" if open_low else f">= {low:g}"
    rule = lower if math.isinf(high) else f"{lower} and <= {high:g}"
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    try:
        values = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        values = ()
    if len(values) not in (1, 2):
        raise InputError(f"{owner} {name} must be a number or a (lo, hi) range, got {value!r}")
    value = values if len(values) == 2 else values[0]
    for v in values:
        if not (math.isfinite(v) and (v > low if open_low else v >= low) and v <= high):
            raise InputError(f"{owner} {name} must be {rule}{unit}, got {_repr_param(value, scale)}")
    if len(values) == 2 and values[0] > values[1]:
        raise InputError(f"{owner} {name} range must be (lo, hi) with lo <= hi, got {_repr_param(value, scale)}")
    return value


def _format_param(value: Param, scale: float = 1.0) -> str:
    """A parameter as spec strings write it: ``25`` or ``0-50``."""
    if isinstance(value, tuple):
        return "-".join(f"{v * scale:.10g}" for v in value)
    return f"{value * scale:.10g}"


def _repr_param(value: Param, scale: float = 1.0) -> str:
    """A parameter as Python code: ``25/255`` or ``(0/255, 50/255)`` when ``scale`` is 255."""
    suffix = f"/{scale:g}" if scale != 1.0 else ""
    if isinstance(value, tuple):
        return "(" + ", ".join(f"{v * scale:.10g}{suffix}" for v in value) + ")"
    return f"{value * scale:.10g}{suffix}"


class Noise:
    """Base class: ``noise(x, generator=None) -> noisy``. Subclasses implement ``_apply``."""

    kind: str = ""

    def __init__(self, *, clip: bool = False):
        self.clip = bool(clip)

    def __call__(self, x: torch.Tensor, generator: GeneratorLike = None) -> torch.Tensor:
        """The noisy version of ``x`` (N, C, H, W)."""
        return self.sample(x, generator)[0]

    def sample(self, x: torch.Tensor, generator: GeneratorLike = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(noisy, sigma)``: sigma is the Gaussian standard deviation used for each image
        (shape (N,), 0-1 scale) for :class:`Gaussian`, None for the other models."""
        check_image(x)
        noisy, sigma = self._apply(x, make_generator(generator))
        return self._clipped(noisy), sigma

    def _clipped(self, noisy: torch.Tensor) -> torch.Tensor:
        return noisy.clamp(0.0, 1.0) if self.clip else noisy

    def _apply(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def _spec_params(self) -> str:
        raise NotImplementedError

    def _repr_params(self) -> str:
        raise NotImplementedError

    @property
    def spec(self) -> str:
        """The spec string that :func:`parse_noise` turns back into this model."""
        return f"{self.kind}:{self._spec_params()}" + (":clip" if self.clip else "")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._repr_params()}, clip={self.clip})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.spec == other.spec

    def __hash__(self) -> int:
        return hash(self.spec)


class Gaussian(Noise):
    """Additive white Gaussian noise ``x + sigma * N(0, 1)``; sigma on the 0-1 scale.

    ``sigma`` may be a range (lo, hi): each image then gets its own sigma, drawn
    uniformly; :meth:`sample` returns the sigmas used.
    """

    kind = "gaussian"

    def __init__(self, sigma: Param, *, clip: bool = False):
        super().__init__(clip=clip)
        self.sigma = _check_param("Gaussian", "sigma", sigma, 0.0, unit=" (0-1 scale: sigma/255)", scale=255.0)

    def _apply(self, x, gen):
        sigma = _per_image(self.sigma, gen, x)
        return x + sigma * _normal(x.shape, gen, x), sigma.flatten()

    def _spec_params(self):
        return _format_param(self.sigma, 255.0)

    def _repr_params(self):
        return f"sigma={_repr_param(self.sigma, 255.0)}"


class Poisson(Noise):
    """Shot noise: ``Poisson(lam * x) / lam``, ``lam`` being the photon count at white."""

    kind = "poisson"

    def __init__(self, lam: Param, *, clip: bool = False):
        super().__init__(clip=clip)
        self.lam = _check_param("Poisson", "lam", lam, 0.0, open_low=True, unit=" (photons at white)")

    def _shot(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if (x < 0).any():
            raise InputError("Poisson noise needs intensities >= 0; clip the image to [0, 1] first")
        lam = _per_image(self.lam, gen, x)
        return _poisson(lam * x, gen) / lam

    def _apply(self, x, gen):
        return self._shot(x, gen), None

    def _spec_params(self):
        return _format_param(self.lam)

    def _repr_params(self):
        return f"lam={_repr_param(self.lam)}"


class PoissonGaussian(Poisson):
    """Shot noise plus read noise: ``Poisson(lam * x) / lam + sigma * N(0, 1)``."""

    kind = "poissongaussian"

    def __init__(self, lam: Param, sigma: Param, *, clip: bool = False):
        super().__init__(lam, clip=clip)
        self.sigma = _check_param("PoissonGaussian", "sigma", sigma, 0.0, unit=" (0-1 scale: sigma/255)",
                                  scale=255.0)

    def _apply(self, x, gen):
        shot = self._shot(x, gen)
        return shot + _per_image(self.sigma, gen, x) * _normal(x.shape, gen, x), None

    def _spec_params(self):
        return f"{_format_param(self.lam)},{_format_param(self.sigma, 255.0)}"

    def _repr_params(self):
        return f"lam={_repr_param(self.lam)}, sigma={_repr_param(self.sigma, 255.0)}"


class _FractionNoise(Noise):
    """A noise with one parameter ``p``, a probability or fraction of pixels."""

    p_max = 1.0

    def __init__(self, p: Param, *, clip: bool = False):
        super().__init__(clip=clip)
        self.p = _check_param(type(self).__name__, "p", p, 0.0, self.p_max)

    def _spec_params(self):
        return _format_param(self.p)

    def _repr_params(self):
        return f"p={_repr_param(self.p)}"


class Bernoulli(_FractionNoise):
    """Multiplicative Bernoulli noise: each pixel is kept with probability ``p``, else 0.

    The mask is drawn per pixel and shared by the channels.
    """

    kind = "bernoulli"

    def with_mask(self, x: torch.Tensor, generator: GeneratorLike = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(noisy, mask)``; mask is a float (N, 1, H, W) tensor, 1 where the pixel was kept."""
        check_image(x)
        noisy, mask = self._masked(x, make_generator(generator))
        return self._clipped(noisy), mask

    def _masked(self, x, gen):
        n, _, h, w = x.shape
        mask = (_uniform((n, 1, h, w), gen, x) < _per_image(self.p, gen, x)).to(x.dtype)
        return x * mask, mask

    def _apply(self, x, gen):
        return self._masked(x, gen)[0], None


class _ReplacementNoise(_FractionNoise):
    """Replaces a fraction ``p`` of the pixels (all their channels, or each channel on its
    own when ``per_channel``) by values from :meth:`_values`."""

    def __init__(self, p: Param, *, per_channel: bool = False, clip: bool = False):
        super().__init__(p, clip=clip)
        self.per_channel = bool(per_channel)

    def _apply(self, x, gen):
        n, c, h, w = x.shape
        p = _per_image(self.p, gen, x)
        hit = _uniform((n, c if self.per_channel else 1, h, w), gen, x) < p
        return torch.where(hit, self._values(x, gen), x), None

    def _values(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def _repr_params(self):
        return super()._repr_params() + (", per_channel=True" if self.per_channel else "")

    @property
    def spec(self) -> str:
        return super().spec + (":per_channel" if self.per_channel else "")


class Impulse(_ReplacementNoise):
    """Random-valued impulse noise (Noise2Noise): a fraction ``p`` of the pixels get a
    colour drawn uniformly from [0, 1]^C; the others keep theirs."""

    kind = "impulse"

    def _values(self, x, gen):
        return _uniform(x.shape, gen, x)


class SaltPepper(_ReplacementNoise):
    """Salt-and-pepper noise: a fraction ``p`` of the pixels set to 0 or 1 with even odds."""

    kind = "saltpepper"

    def _values(self, x, gen):
        n, c, h, w = x.shape
        salt = _uniform((n, c if self.per_channel else 1, h, w), gen, x) < 0.5
        return salt.to(x.dtype).expand(x.shape)


class Text(_FractionNoise):
    """Overlaid random text (Noise2Noise): random strings of random sizes, positions and
    colours are drawn until they cover a fraction ``p`` of the pixels (``p <= 0.95``).

    Text is drawn without anti-aliasing, so a pixel is either covered (it takes the
    string's colour) or untouched. Font sizes are drawn uniformly from ``size`` = (lo, hi)
    pixels; by default (``size=None``) they scale with the image: from ``min(H, W) / 20``
    to ``min(H, W) / 5`` pixels, at least 8. Give fixed sizes when a model is trained on
    crops and applied to whole images, so that it sees text of the same size in both.
    """

    kind = "text"
    p_max = 0.95

    def __init__(self, p: Param, size: tuple[float, float] | None = None, *, clip: bool = False):
        super().__init__(p, clip=clip)
        if size is not None:
            size = _check_param("Text", "size", size, 1.0, unit=" (font size in pixels)")
            if not isinstance(size, tuple):
                size = (size, size)
            size = (int(round(size[0])), int(round(size[1])))
        self.size: tuple[int, int] | None = size

    def _spec_params(self):
        sizes = "" if self.size is None else f",{self.size[0]}-{self.size[1]}"
        return super()._spec_params() + sizes

    def _repr_params(self):
        return super()._repr_params() + ("" if self.size is None else f", size={self.size}")

    def _apply(self, x, gen):
        n, c, h, w = x.shape
        fractions = _per_image(self.p, gen, x).flatten().tolist()
        noisy = x.clone()
        for i, fraction in enumerate(fractions):
            seed = int(torch.randint(0, 2 ** 62, (1,), generator=gen, device=gen.device))
            mask, colour = _text_layer(h, w, c, fraction, np.random.default_rng(seed), self.size)
            mask = torch.from_numpy(mask).to(x.device)
            colour = torch.from_numpy(colour).to(x.device, x.dtype)
            noisy[i] = torch.where(mask, colour, x[i])
        return noisy, None


_TEXT_CHARACTERS = np.array(list(string.ascii_letters + string.digits + string.punctuation + " "))


@functools.lru_cache(maxsize=128)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _text_layer(h: int, w: int, c: int, fraction: float, rng: np.random.Generator,
                sizes: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw random strings until they cover ``fraction`` of an h x w image, with font
    sizes in ``sizes`` (pixels, inclusive), or scaled to the image when None.

    Returns the coverage mask (H, W) bool and the text colours (C, H, W) float32 in [0, 1].
    """
    covered = np.zeros((h, w), bool)
    colours = np.zeros((h, w, c), np.uint8)
    if sizes is None:
        smallest = max(8, min(h, w) // 20)
        largest = max(smallest + 1, min(h, w) // 5)
    else:
        smallest, largest = sizes
    target = fraction * h * w
    while covered.sum() < target:
        size = int(rng.integers(smallest, largest + 1))
        text = "".join(rng.choice(_TEXT_CHARACTERS, int(rng.integers(3, 21))))
        x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-size // 2, h))
        fill = rng.integers(0, 256, c).astype(np.uint8)
        glyphs, (left, top) = _render(text, _font(size))
        rows, cols = _overlap(y0 + top, glyphs.shape[0], h), _overlap(x0 + left, glyphs.shape[1], w)
        if rows is None or cols is None:
            continue
        (image_rows, glyph_rows), (image_cols, glyph_cols) = rows, cols
        ink = glyphs[glyph_rows, glyph_cols]
        covered[image_rows, image_cols] |= ink
        colours[image_rows, image_cols][ink] = fill
    return covered, np.ascontiguousarray(colours.transpose(2, 0, 1), dtype=np.float32) / 255.0


def _render(text: str, font) -> tuple[np.ndarray, tuple[int, int]]:
    """The pixels a string covers (bool array, no anti-aliasing) and their offset from the
    drawing position."""
    left, top, right, bottom = ImageDraw.Draw(Image.new("1", (1, 1))).textbbox((0, 0), text, font=font)
    canvas = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    draw = ImageDraw.Draw(canvas)
    draw.fontmode = "1"  # no anti-aliasing: a pixel is covered or not
    draw.text((-left, -top), text, fill=255, font=font)
    return np.asarray(canvas) > 0, (left, top)


def _overlap(start: int, length: int, size: int) -> tuple[slice, slice] | None:
    """Slices of the image and of a glyph block placed at ``start`` where they overlap."""
    lo, hi = max(start, 0), min(start + length, size)
    if hi <= lo:
        return None
    return slice(lo, hi), slice(lo - start, hi - start)


#: Spec names and the classes they build.
NOISE_KINDS: dict[str, type[Noise]] = {cls.kind: cls for cls in
                                       (Gaussian, Poisson, PoissonGaussian, Bernoulli, Impulse, SaltPepper, Text)}

_USAGE = ("gaussian:SIGMA (0-255 scale, or LO-HI), poisson:LAM, poissongaussian:LAM,SIGMA, "
          "bernoulli:P, impulse:P, saltpepper:P, text:P (or text:P,LO-HI with font sizes in "
          "pixels); append :clip to clip to [0, 1]")


def parse_noise(spec: str | Noise) -> Noise:
    """Build a noise model from a spec string such as ``"gaussian:25"`` or ``"text:0.25"``.

    Gaussian sigmas are given on the 0-255 scale; any value may be a range ``LO-HI``
    drawn per image (``"gaussian:0-50"``). Options follow after colons: ``clip`` (clip
    the result to [0, 1]) and, for impulse and saltpepper, ``per_channel``. A Noise
    object is returned as it is.
    """
    if isinstance(spec, Noise):
        return spec
    if not isinstance(spec, str):
        raise InputError(f"a noise spec must be a string like 'gaussian:25', got {type(spec).__name__}")
    kind, _, rest = spec.strip().lower().partition(":")
    kind = re.sub(r"[\s_&-]", "", kind)
    if kind not in NOISE_KINDS:
        raise InputError(f"unknown noise {spec!r}; use one of: {_USAGE}")
    values, *options = rest.split(":") if rest else [""]
    unknown = set(options) - {"clip", "per_channel"}
    if unknown or ("per_channel" in options and kind not in ("impulse", "saltpepper")):
        raise InputError(f"unknown option in noise spec {spec!r}; use one of: {_USAGE}")
    params = [_parse_value(v, spec) for v in values.split(",")] if values.strip() else []
    kwargs = {"clip": "clip" in options}
    if "per_channel" in options:
        kwargs["per_channel"] = True
    return _build(kind, params, kwargs, spec)


def _parse_value(text: str, spec: str) -> Param:
    """A number, or a range ``LO-HI``."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        lo, hi = text.split("-")
        return float(lo), float(hi)
    except ValueError:
        raise InputError(f"bad number {text.strip()!r} in noise spec {spec!r}; use one of: {_USAGE}") from None


#: How many comma-separated values each spec takes (one unless listed): Poisson-Gaussian
#: its lambda and sigma, text its coverage and optionally its font sizes.
_VALUE_COUNTS = {"poissongaussian": (2,), "text": (1, 2)}


def _build(kind: str, params: list[Param], kwargs: dict, spec: str) -> Noise:
    counts = _VALUE_COUNTS.get(kind, (1,))
    if len(params) not in counts:
        needed = " or ".join(map(str, counts))
        raise InputError(f"noise spec {spec!r} needs {needed} value{'s' if max(counts) > 1 else ''}; "
                         f"use one of: {_USAGE}")
    if kind == "gaussian":
        return Gaussian(_scale(params[0], 1 / 255), **kwargs)
    if kind == "poissongaussian":
        return PoissonGaussian(params[0], _scale(params[1], 1 / 255), **kwargs)
    return NOISE_KINDS[kind](*params, **kwargs)


def _scale(value: Param, factor: float) -> Param:
    if isinstance(value, tuple):
        return tuple(v * factor for v in value)
    return value * factor


def sigma_of(noise: Noise | str) -> float | None:
    """The noise standard deviation (0-1 scale) to give a non-blind denoiser, or None.

    Defined for Gaussian noise with a fixed sigma; None for a sigma range (use
    :meth:`Noise.sample` to get the sigma of each image) and for the other models, whose
    noise is not additive white Gaussian.
    """
    noise = parse_noise(noise)
    if isinstance(noise, Gaussian) and not isinstance(noise.sigma, tuple):
        return noise.sigma
    return None
