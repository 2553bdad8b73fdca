"""Noise spec strings (``gaussian:25``, ``poisson:30:clip``, ...) and their parser."""
from __future__ import annotations

import re

from ..errors import InputError
from .camera import Camera
from .compose import Compose
from .models import (
    Bernoulli,
    Gaussian,
    Impulse,
    Noise,
    Param,
    Poisson,
    PoissonGaussian,
    SaltPepper,
)
from .text import Text

NOISE_KINDS: dict[str, type[Noise]] = {cls.kind: cls for cls in
                                       (Gaussian, Poisson, PoissonGaussian, Bernoulli, Impulse, SaltPepper, Text,
                                        Camera)}

_USAGE = ("gaussian:SIGMA (0-255 scale, or LO-HI), poisson:LAM, poissongaussian:LAM,SIGMA, "
          "bernoulli:P, impulse:P, saltpepper:P, text:P (or text:P,LO-HI with font sizes in "
          "pixels), camera (or camera:KEY=VALUE,... with shot, read, q, corr, chroma, cblur, sharp, tone; camera:jpeg, camera:mosaic); append :clip to clip to [0, 1]; "
          "join specs with + to apply them in order (gaussian:25+saltpepper:0.05)")


def parse_noise(spec: str | Noise) -> Noise:
    """Build a noise model from a spec string such as ``"gaussian:25"`` or ``"text:0.25"``.

    Gaussian sigmas are given on the 0-255 scale; any value may be a range ``LO-HI``
    drawn per image (``"gaussian:0-50"``). Options follow after colons: ``clip`` (clip
    the result to [0, 1]) and, for impulse and saltpepper, ``per_channel``. Specs joined
    by ``+`` build a :class:`Compose` that applies them in order
    (``"gaussian:25+saltpepper:0.05"``). ``camera`` specs are parsed by
    :meth:`Camera.from_spec`. A Noise object is returned as it is.
    """
    if isinstance(spec, Noise):
        return spec
    if not isinstance(spec, str):
        raise InputError(f"a noise spec must be a string like 'gaussian:25', got {type(spec).__name__}")
    if "+" in spec:
        parts = spec.split("+")
        if any(not p.strip() for p in parts):
            raise InputError(f"empty part in noise spec {spec!r}; join whole specs with +, "
                             f"e.g. gaussian:25+saltpepper:0.05")
        return Compose([parse_noise(p) for p in parts])
    kind, _, rest = spec.strip().lower().partition(":")
    kind = re.sub(r"[\s_&-]", "", kind)
    if kind not in NOISE_KINDS:
        raise InputError(f"unknown noise {spec!r}; use one of: {_USAGE}")
    if kind == "camera":
        return Camera.from_spec(rest, spec, _USAGE)
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
