"""Geometric self-ensemble: a denoiser averaged over the eight flips and rotations.

A denoiser's errors on an image and on its mirrored or rotated copy are not the same,
so mapping the eight outputs back and averaging them removes part of the error, at eight
times the cost. The images are transformed, never resampled: a 90-degree rotation and a
flip are exact permutations of the pixels. Noise statistics (and so ``sigma``) are
unchanged by them.

Any model name takes the suffix :data:`SUFFIX` (``n2n-unet-gray+x8``, ``dct+x8``,
``default+x8``) in the API, ``denoise run``, ``demo`` and ``bench``.
"""
from __future__ import annotations

import torch
from torch import nn

#: The name suffix that asks for the self-ensemble of a model.
SUFFIX = "+x8"


def split_name(name: str) -> tuple[str, bool]:
    """``(base name, whether the self-ensemble is asked for)``."""
    if isinstance(name, str) and name.endswith(SUFFIX):
        return name[: -len(SUFFIX)], True
    return name, False


def _forward(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """Rotate by ``k`` quarter turns, then mirror left-right when ``flip``."""
    y = torch.rot90(x, k, dims=(-2, -1))
    return y.flip(-1) if flip else y


def _inverse(y: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """Undo :func:`_forward`."""
    if flip:
        y = y.flip(-1)
    return torch.rot90(y, -k, dims=(-2, -1))


class SelfEnsemble(nn.Module):
    """The mean of ``model`` over the eight symmetries of the square (x8 time)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.uses_sigma = getattr(model, "uses_sigma", False)

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        total = None
        for flip in (False, True):
            for k in range(4):
                # rot90 always returns a new tensor (a copy even for k = 0), so the first
                # output can be the accumulator
                y = _inverse(self.model(_forward(x, k, flip), sigma), k, flip)
                total = y if total is None else total.add_(y)
        return total.div_(8)
