"""Training losses matched to the noise (Noise2Noise, Lehtinen et al. 2018).

With noisy targets the loss decides which statistic of the target distribution the
network learns: the mean for L2 (zero-mean noise: Gaussian, Poisson), the median for L1
(overlaid text, salt-and-pepper: more than half of the samples are clean), the mode for
the annealed L0 (random-valued impulses), and a masked L2 that ignores target pixels
known to be missing (multiplicative Bernoulli noise).

Every loss is ``loss(pred, target, *, mask=None, progress=0.0, noisy=None) -> scalar tensor``
where ``progress`` in [0, 1] is the fraction of training done (only the annealed L0 uses
it) and ``noisy`` the network's input (only the relative L2 uses it).
"""
from __future__ import annotations

from typing import Callable, Protocol

import torch

from ..errors import InputError


class Loss(Protocol):
    def __call__(self, pred: torch.Tensor, target: torch.Tensor, *, mask: torch.Tensor | None = None,
                 progress: float = 0.0, noisy: torch.Tensor | None = None) -> torch.Tensor: ...


def l2_loss(pred, target, *, mask=None, progress=0.0, noisy=None) -> torch.Tensor:
    """Mean squared error (the mean of the targets: Gaussian, Poisson noise)."""
    return torch.mean((pred - target) ** 2)


def l1_loss(pred, target, *, mask=None, progress=0.0, noisy=None) -> torch.Tensor:
    """Mean absolute error (the median of the targets: text, salt-and-pepper noise)."""
    return torch.mean(torch.abs(pred - target))


def masked_l2_loss(pred, target, *, mask=None, progress=0.0, noisy=None) -> torch.Tensor:
    """Mean squared error over the target pixels where ``mask`` is 1 (Bernoulli noise).

    ``mask`` broadcasts to ``pred``; without a mask this is :func:`l2_loss`.
    """
    if mask is None:
        return l2_loss(pred, target)
    mask = mask.to(pred.dtype).expand_as(pred)
    return torch.sum(mask * (pred - target) ** 2) / mask.sum().clamp_min(1.0)


def relative_l2_loss(pred, target, *, mask=None, progress=0.0, noisy=None) -> torch.Tensor:
    """Each sample's squared error divided by its input's (``noisy``) squared error, averaged.

    With clean targets and noise levels spread over decades (camera noise from a bright
    daylight photo to a dark high-ISO one) the plain L2 loss is dominated by the strongest
    noise, and the network learns little about weak noise. Dividing by the input error
    weights every sample by its noise level: the loss is the mean remaining fraction of the
    noise energy, and its logarithm the PSNR gain, whatever the level.
    """
    if noisy is None:
        raise InputError("the relative L2 loss needs the noisy input (it is made for clean targets)")
    dims = tuple(range(1, pred.dim()))
    err = torch.mean((pred - target) ** 2, dim=dims)
    ref = torch.mean((noisy.to(pred.dtype) - target) ** 2, dim=dims)
    return torch.mean(err / ref.clamp_min(1e-6))


class AnnealedL0Loss:
    """``(|f(x) - y| + eps) ** gamma`` with gamma annealed linearly from ``start`` to ``floor``.

    The Noise2Noise paper anneals gamma from 2 to 0 over training; gamma = 0 makes the
    loss constant and its gradient zero, so the schedule stops at a small positive
    ``floor``. ``gamma(progress)`` gives the exponent at a fraction of training.
    """

    def __init__(self, start: float = 2.0, floor: float = 0.1, eps: float = 1e-8):
        if not 0 < floor <= start:
            raise InputError(f"annealed L0 needs 0 < floor <= start, got floor={floor}, start={start}")
        self.start, self.floor, self.eps = float(start), float(floor), float(eps)

    def gamma(self, progress: float) -> float:
        progress = min(max(float(progress), 0.0), 1.0)
        return self.floor + (self.start - self.floor) * (1.0 - progress)

    def __call__(self, pred, target, *, mask=None, progress=0.0, noisy=None) -> torch.Tensor:
        return torch.mean((torch.abs(pred - target) + self.eps) ** self.gamma(progress))

    def __repr__(self) -> str:
        return f"AnnealedL0Loss(start={self.start}, floor={self.floor}, eps={self.eps})"


LOSSES: dict[str, Callable[[], Loss]] = {
    "l2": lambda: l2_loss,
    "l1": lambda: l1_loss,
    "l0": AnnealedL0Loss,
    "masked_l2": lambda: masked_l2_loss,
    "l2_rel": lambda: relative_l2_loss,
}

# The loss matched to each noise kind (the ``kind`` of the denoise.noise models).
LOSS_FOR_NOISE = {
    "gaussian": "l2",
    "poisson": "l2",
    "poissongaussian": "l2",
    "text": "l1",
    "saltpepper": "l1",
    "impulse": "l0",
    "bernoulli": "masked_l2",
    # Camera noise (denoise.noise.camera) is near zero-mean in linear space; the tone curve
    # and JPEG make it slightly biased in sRGB, but the mean is still the closest statistic.
    "camera": "l2",
}

# For composed noises (kind ``a+b``, e.g. ``gaussian+saltpepper``): the loss of the most
# outlier-robust part, in this order. Annealed L0 (mode) when a part is random-valued
# impulse noise; L1 (median) when a part is salt-and-pepper or text (the median stays
# unbiased for Gaussian plus salt-and-pepper with even odds); L2 when every part is
# zero-mean. Bernoulli in a composition has no default: the mask its masked L2 needs is
# lost in the composition.
_ROBUSTNESS = ("l0", "l1", "l2")


def get_loss(name: str, *, l0_floor: float = 0.1) -> Loss:
    """The loss called ``name`` (one of :data:`LOSSES`); ``l0_floor`` is the final gamma
    of the annealed L0 loss."""
    if name not in LOSSES:
        raise InputError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return AnnealedL0Loss(floor=l0_floor) if name == "l0" else LOSSES[name]()


def loss_for_noise(noise_kind: str) -> str:
    """The name of the loss matched to a noise kind (``gaussian`` -> ``l2``, ...); for a
    composed kind ``a+b`` the most robust of the parts' losses (see :data:`_ROBUSTNESS`):
    ``gaussian+impulse`` -> ``l0``, ``gaussian+saltpepper`` -> ``l1``."""
    if "+" in noise_kind:
        losses = {loss_for_noise(part) for part in noise_kind.split("+")}
        if "masked_l2" in losses:
            raise InputError(f"no default loss for the composed noise {noise_kind!r} (a Bernoulli mask is "
                             f"lost in a composition); pass the loss explicitly ({', '.join(LOSSES)})")
        return next(name for name in _ROBUSTNESS if name in losses)
    key = noise_kind.lower().replace("-", "").replace("_", "")
    if key not in LOSS_FOR_NOISE:
        raise InputError(f"no default loss for noise {noise_kind!r}; pass the loss explicitly "
                         f"({', '.join(LOSSES)})")
    return LOSS_FOR_NOISE[key]
