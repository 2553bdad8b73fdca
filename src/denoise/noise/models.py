"""The noise models (see :mod:`denoise.noise`); overlaid text is in :mod:`.text`."""
from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np
import torch

from ..errors import InputError
from ..utils import check_image

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
