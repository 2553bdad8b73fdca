"""Several noises applied one after the other (``gaussian:25+saltpepper:0.05``)."""
from __future__ import annotations

from typing import Sequence

from ..errors import InputError
from .models import Gaussian, Noise


class Compose(Noise):
    """The noises ``parts`` applied in order: the second corrupts the output of the first,
    and so on; all draw, in turn, from the one generator given.

    ``Compose([Gaussian(25 / 255), SaltPepper(0.05)])`` (spec ``gaussian:25+saltpepper:0.05``)
    adds Gaussian noise and then sets 5 % of the pixels to 0 or 1. Each part keeps its own
    ``clip`` (``gaussian:25:clip+saltpepper:0.05`` clips after the Gaussian step); a Compose
    has no clip of its own. Put Poisson parts first, or clip before them: Poisson noise
    needs intensities >= 0.

    :meth:`sample` returns the per-image sigma of the first :class:`Gaussian` part (the
    level of a composed Gaussian noise, for models that take one), None when there is none.
    ``kind`` is the parts' kinds joined by ``+`` (``gaussian+saltpepper``), which
    :func:`denoise.training.losses.loss_for_noise` reads to choose a training loss.
    """

    kind = "compose"

    def __init__(self, parts: Sequence[Noise]):
        super().__init__(clip=False)
        flat: list[Noise] = []
        for part in parts:
            if not isinstance(part, Noise):
                raise InputError(f"Compose parts must be noise models, got {type(part).__name__}")
            flat.extend(part.parts if isinstance(part, Compose) else [part])
        if not flat:
            raise InputError("Compose needs at least one noise")
        self.parts: tuple[Noise, ...] = tuple(flat)
        self.kind = "+".join(p.kind for p in self.parts)

    def _apply(self, x, gen):
        sigma = None
        for part in self.parts:
            x, s = part.sample(x, gen)
            if sigma is None and isinstance(part, Gaussian):
                sigma = s
        return x, sigma

    @property
    def spec(self) -> str:
        return "+".join(p.spec for p in self.parts)

    def __repr__(self) -> str:
        return f"Compose([{', '.join(map(repr, self.parts))}])"
