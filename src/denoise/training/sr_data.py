"""Super-resolution training data: clean images -> (low-resolution, high-resolution) patches.

The low-resolution side is made the way the SR literature makes its test inputs
(:func:`denoise.degrade.bicubic_down` with ``uint8=True``: MATLAB's antialiased bicubic
``imresize`` on 8-bit images), once per image at load time: each image is cropped to a
multiple of the scale, downscaled whole (so patch borders see the same pixels as a whole
test image does), and patches are then cut at aligned positions, ``patch`` low-resolution
pixels and ``patch * scale`` high-resolution ones, with the same random flip/rotation
(one of the eight symmetries of the square) on both sides.

Validation: the last ``val_count`` images (sorted by name) are held out; each is
centre-cropped to ``val_crop`` high-resolution pixels (rounded down to a multiple of the
scale) and downscaled the same way.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..degrade import bicubic_down
from ..errors import InputError
from ..symmetries import transform
from .data import Batch, center_crop


def _aligned(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(C, H, W) cropped (top-left kept) to a multiple of ``scale`` each way."""
    h, w = x.shape[-2:]
    return x[..., : h - h % scale, : w - w % scale]


def degrade_pair(hr: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR, HR) of one (C, H, W) image: HR aligned to the scale, LR by 8-bit MATLAB bicubic."""
    hr = _aligned(hr, scale)
    return bicubic_down(hr[None], scale, uint8=True)[0], hr


class SRData:
    """Clean images -> aligned (LR, HR) training patches for a ``scale``-times upscaler."""

    def __init__(self, images: Sequence[torch.Tensor], scale: int, *, patch: int = 48,
                 val_images: Sequence[torch.Tensor] = (), val_crop: int | None = None):
        if scale not in (2, 3, 4):
            raise InputError(f"scale must be 2, 3 or 4, got {scale!r}")
        if not images:
            raise InputError("no training images")
        if patch is None or patch < 4:
            raise InputError("--crop (the low-resolution patch size) must be at least 4 pixels for SR")
        self.scale, self.patch = scale, patch
        self.pairs = []
        for x in images:
            if min(x.shape[-2:]) < max(patch * scale, 4 * scale):
                raise InputError(f"a training image ({x.shape[-2]}x{x.shape[-1]}) is smaller than one "
                                 f"high-resolution patch ({patch * scale}); pass a smaller --crop")
            self.pairs.append(degrade_pair(x, scale))
        self.channels = int(images[0].shape[0])
        self.val_images = list(val_images)
        self._val = []
        for v in val_images:
            if val_crop is not None:
                v = center_crop(v, val_crop - val_crop % scale)
            self._val.append(tuple(t[None] for t in degrade_pair(v, scale)))

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        idx = torch.randint(len(self.pairs), (batch_size,), generator=generator)
        pos = torch.rand(batch_size, 2, generator=generator)
        sym = torch.randint(8, (batch_size,), generator=generator)
        p, s = self.patch, self.scale
        lows, highs = [], []
        for k in range(batch_size):
            lr, hr = self.pairs[int(idx[k])]
            h, w = lr.shape[-2:]
            top, left = int(pos[k, 0] * (h - p + 1)), int(pos[k, 1] * (w - p + 1))
            t = int(sym[k])
            lows.append(transform(lr[:, top:top + p, left:left + p], t))
            highs.append(transform(hr[:, top * s:(top + p) * s, left * s:(left + p) * s], t))
        return Batch(torch.stack(lows), torch.stack(highs))

    def validation(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Held-out (LR, HR) pairs, (1, C, h, w) and (1, C, h*scale, w*scale)."""
        return list(self._val)

    validation_note = ("Validation PSNR (log.csv, val_psnr): the mean RGB PSNR in dB (no border shave, "
                       "outputs clipped to [0, 1]) of the upscaled held-out images against their "
                       "originals; the low-resolution inputs are made by MATLAB-convention 8-bit bicubic "
                       "downscaling. The SR literature's figure (Y channel, border shave) comes from "
                       "'denoise bench --task sr'.")
