"""Geometric self-ensemble: a denoiser averaged over the eight flips and rotations.

A denoiser's errors on an image and on its mirrored or rotated copy are not the same,
so mapping the eight outputs back and averaging them removes part of the error, at eight
times the cost. The images are transformed, never resampled: a 90-degree rotation and a
flip are exact permutations of the pixels. Noise statistics (and so ``sigma``) are
unchanged by them.

Any model name takes the suffix ``+x8`` (``n2n-unet-gray+x8``, ``dct+x8``, ``default+x8``)
wherever a model is named; :func:`denoise.inference.parse_model_name` reads it.
"""
from __future__ import annotations

import torch

from ..symmetries import SYMMETRIES, inverse, transform
from .base import Wrapper


class SelfEnsemble(Wrapper):
    """The mean of ``model`` over the eight symmetries of the square (x8 time); the
    model's contract (receptive field, sigma, scale) passes through."""

    def forward(self, x: torch.Tensor, sigma=None, *, run=None) -> torch.Tensor:
        """The mean over the eight symmetries; ``run(x, sigma)`` runs the inner model on
        each transformed image (default: the model itself; the tiler passes its own, so
        that each whole transformed image is tiled on its own pixel grid)."""
        run = run or self.model
        total = None
        for s in SYMMETRIES:
            # rot90 always returns a new tensor (a copy even for s = 0), so the first
            # output can be the accumulator
            # a noise map (N, C, H, W) turns with the image; a level per image does not
            sig = transform(sigma, s) if isinstance(sigma, torch.Tensor) and sigma.dim() == 4 else sigma
            y = inverse(run(transform(x, s), sig), s)
            total = y if total is None else total.add_(y)
        return total.div_(8)
