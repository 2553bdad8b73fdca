"""The eight symmetries of the square (four rotations, each with or without a mirror).

One place for the flips and 90-degree rotations used by the geometric self-ensemble
(:mod:`denoise.models.ensemble`), the training augmentation (:mod:`denoise.training.data`)
and the EE-559 course loop. They permute pixels exactly: nothing is resampled.

Symmetry ``s`` in 0..7 rotates by ``s % 4`` quarter turns, then mirrors left-right when
``s >= 4``.
"""
from __future__ import annotations

import torch

#: The indices of the eight symmetries; 0 is the identity.
SYMMETRIES = range(8)


def transform(x: torch.Tensor, s: int) -> torch.Tensor:
    """Apply symmetry ``s`` to the last two dimensions of ``x`` (always a new tensor)."""
    y = torch.rot90(x, s % 4, dims=(-2, -1))
    return y.flip(-1) if s >= 4 else y


def inverse(y: torch.Tensor, s: int) -> torch.Tensor:
    """Undo :func:`transform` with the same ``s``."""
    if s >= 4:
        y = y.flip(-1)
    return torch.rot90(y, -(s % 4), dims=(-2, -1))


def per_image(x: torch.Tensor, transpose: torch.Tensor, flip_h: torch.Tensor,
              flip_w: torch.Tensor) -> torch.Tensor:
    """A symmetry per image of a batch of squares, as boolean masks of shape (N, 1, 1, 1):
    transpose, then mirror top-bottom, then left-right (every symmetry is one such triple)."""
    if transpose.any():
        x = torch.where(transpose, x.transpose(-1, -2), x)
    x = torch.where(flip_h, x.flip(-2), x)
    return torch.where(flip_w, x.flip(-1), x)
