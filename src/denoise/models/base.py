"""The model contract: what every restoration model declares, learned or classical.

A restoration model is a :class:`Restorer`, an ``nn.Module`` with

* ``forward(x, sigma=None)``: ``x`` float32 (N, C, H, W) in [0, 1]; ``sigma`` the noise
  standard deviation on the 0-1 scale (a number, one value per image (N,), or a map for
  models that take one), or None; returns (N, C, scale * H, scale * W);
* ``receptive_field``: the radius in input pixels of what can affect one output pixel
  (an upper bound), so that overlapping tiles of that margin reproduce the untiled output;
* ``uses_sigma``: whether ``forward`` reads ``sigma`` (blind models ignore it; a model
  that uses it and gets None estimates it or raises);
* ``scale``: 1 for denoisers; 2, 3 or 4 for super-resolution (the output is ``scale``
  times larger than the input along each side);
* ``alignment``: the pixel grid the model works on (its total pooling or pixel-unshuffle
  factor, 1 for most): tiles start at multiples of it, so they see the whole image's grid.

Wrappers (the geometric self-ensemble, and any later one) are :class:`Wrapper`\\ s: they
pass the whole contract of the model they wrap through.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ModelError


class Restorer(nn.Module):
    """Base class of every restoration model (see the module docstring)."""

    #: Radius (input pixels) of the region that can affect one output pixel.
    receptive_field: int = 0
    #: Whether ``forward`` reads ``sigma``.
    uses_sigma: bool = False
    #: Output size / input size along each side (1 for denoisers).
    scale: int = 1
    #: Tiles start at multiples of this (the total downsampling factor of the model).
    alignment: int = 1
    #: Whether ``denoise export`` can write it as ONNX / TorchScript (a plain torch network).
    exportable: bool = True

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class Wrapper(Restorer):
    """A model around another one, with the inner model's contract."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        c = contract(model)
        self.receptive_field, self.uses_sigma, self.scale = c.receptive_field, c.uses_sigma, c.scale
        self.alignment = c.alignment

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        return self.model(x, sigma)


@dataclass(frozen=True)
class Contract:
    """The declared contract of one model, checked."""

    receptive_field: int
    uses_sigma: bool
    scale: int
    alignment: int = 1


def contract(model: nn.Module) -> Contract:
    """The contract ``model`` declares; ModelError naming what is wrong when it declares
    none or a malformed one (every registered model is a :class:`Restorer`)."""
    name = type(model).__name__
    if not isinstance(model, Restorer):
        raise ModelError(f"{name} is not a denoise.models.Restorer: subclass it and declare "
                         "receptive_field, uses_sigma and scale")
    rf, uses, scale, align = model.receptive_field, model.uses_sigma, model.scale, model.alignment
    if isinstance(rf, bool) or not isinstance(rf, int) or rf < 0:
        raise ModelError(f"{name}.receptive_field must be an integer >= 0, got {rf!r}")
    if not isinstance(uses, bool):
        raise ModelError(f"{name}.uses_sigma must be True or False, got {uses!r}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ModelError(f"{name}.scale must be an integer >= 1, got {scale!r}")
    if isinstance(align, bool) or not isinstance(align, int) or align < 1:
        raise ModelError(f"{name}.alignment must be an integer >= 1, got {align!r}")
    return Contract(rf, uses, scale, align)
