"""Training batches drawn on the training device (``device_data=True``).

On a GPU a small denoiser's step takes milliseconds, and drawing its batch on the CPU
(a Python loop of crops, then a few million normal draws from a CPU generator) takes
tens: the GPU waits. :class:`DeviceBatches` keeps the training images on the device as
one padded stack and draws a whole batch with a handful of kernels:

- the crop positions and symmetries come from the run's CPU generator, drawn exactly as
  :func:`denoise.training.data.random_patches` (and :class:`SRData`) draw them, so the
  patches are the very ones the CPU path would give;
- the noise comes from a device generator reseeded at every step from the CPU generator,
  so a run is still a pure function of its seed and resumes exactly (its checkpoint
  holds the CPU generator); its draws differ from the CPU path's, not its distribution.

Super-resolution data has no noise: its batches equal the CPU path's exactly.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import InputError
from ..symmetries import transform
from .data import Batch, CleanFolderData, _noisy
from .sr_data import SRData

_SEED_HIGH = 2 ** 62


def _stack(images: Sequence[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, Hmax, Wmax) zero-padded stack on ``device`` and the (N, 2) true sizes."""
    h = max(int(x.shape[-2]) for x in images)
    w = max(int(x.shape[-1]) for x in images)
    stack = torch.zeros(len(images), int(images[0].shape[0]), h, w, dtype=images[0].dtype, device=device)
    for k, x in enumerate(images):
        stack[k, :, :x.shape[-2], :x.shape[-1]] = x.to(device)
    sizes = torch.tensor([[int(x.shape[-2]), int(x.shape[-1])] for x in images], dtype=torch.int64)
    return stack, sizes


def _gather(stack: torch.Tensor, idx: torch.Tensor, top: torch.Tensor, left: torch.Tensor,
            size: int) -> torch.Tensor:
    """(B, C, size, size) crops of ``stack`` at the given images and corners."""
    dev = stack.device
    ar = torch.arange(size, device=dev)
    rows = (top.to(dev)[:, None] + ar)[:, None, :, None]
    cols = (left.to(dev)[:, None] + ar)[:, None, None, :]
    ch = torch.arange(stack.shape[1], device=dev)[None, :, None, None]
    return stack[idx.to(dev)[:, None, None, None], ch, rows, cols]


def _symmetries(x: torch.Tensor, sym: torch.Tensor) -> torch.Tensor:
    """Symmetry ``sym[k]`` (:func:`denoise.symmetries.transform`) applied to each patch."""
    out = x.clone()
    sym = sym.to(x.device)
    for s in range(1, 8):
        hit = (sym == s).nonzero().flatten()
        if hit.numel():
            out[hit] = transform(x[hit], s)
    return out


class DeviceBatches:
    """A training-data object whose :meth:`sample` runs on ``device``; everything else
    (validation, the held-out images, channels) is the wrapped data's own."""

    def __init__(self, data, device: torch.device | str):
        self.device = torch.device(device)
        self._data = data
        if isinstance(data, SRData):
            self._kind = "sr"
            self._lr, self._lr_sizes = _stack([lr for lr, _ in data.pairs], self.device)
            self._hr, _ = _stack([hr for _, hr in data.pairs], self.device)
        elif isinstance(data, CleanFolderData):
            if data.crop is None:
                raise InputError("--device-data needs --crop (patches of one size)")
            if data.zoom is not None:
                raise InputError("--device-data does not draw zoomed crops; leave --zoom or --device-data off")
            if data.target not in ("clean", "noisy") or getattr(data.noise, "with_mask", None) is not None:
                raise InputError("--device-data draws clean or independently noisy targets; "
                                 f"target={data.target!r} with {data.noise!r} is not supported: "
                                 "leave --device-data off")
            self._kind = "folder"
            self._images, self._sizes = _stack(data.images, self.device)
            if data.crop > int(self._sizes.min()):
                raise InputError(f"crop {data.crop} is larger than a training image "
                                 f"({int(self._sizes.min())} pixels on a side); pass a smaller crop")
            self._gen = torch.Generator(device=self.device)
        else:
            raise InputError(f"--device-data supports folder and SR data, not {type(data).__name__}: "
                             "leave --device-data off")

    def __getattr__(self, name):  # validation, val_images, channels, notes...
        if name.startswith("__") or name == "_data":
            raise AttributeError(name)
        return getattr(self._data, name)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        if self._kind == "sr":
            return self._sample_sr(batch_size, generator)
        return self._sample_folder(batch_size, generator)

    def _sample_folder(self, batch_size: int, generator: torch.Generator) -> Batch:
        # The draws of random_patches, in its order.
        n = self._sizes.shape[0]
        idx = torch.randint(n, (batch_size,), generator=generator)
        pos = torch.rand(batch_size, 2, generator=generator)
        sym = torch.randint(8, (batch_size,), generator=generator)
        crop = self._data.crop
        hw = self._sizes[idx]
        top = (pos[:, 0] * (hw[:, 0] - crop + 1)).long()
        left = (pos[:, 1] * (hw[:, 1] - crop + 1)).long()
        clean = _symmetries(_gather(self._images, idx, top, left, crop), sym)
        self._gen.manual_seed(int(torch.randint(_SEED_HIGH, (1,), generator=generator)))
        inp, sigma = _noisy(self._data.noise, clean, self._gen)
        if self._data.target == "clean":
            return Batch(inp, clean, sigma=sigma)
        return Batch(inp, self._data.noise(clean, generator=self._gen), sigma=sigma)

    def _sample_sr(self, batch_size: int, generator: torch.Generator) -> Batch:
        # The draws of SRData.sample, in its order.
        n = self._lr_sizes.shape[0]
        idx = torch.randint(n, (batch_size,), generator=generator)
        pos = torch.rand(batch_size, 2, generator=generator)
        sym = torch.randint(8, (batch_size,), generator=generator)
        p, s = self._data.patch, self._data.scale
        hw = self._lr_sizes[idx]
        top = (pos[:, 0] * (hw[:, 0] - p + 1)).long()
        left = (pos[:, 1] * (hw[:, 1] - p + 1)).long()
        low = _symmetries(_gather(self._lr, idx, top, left, p), sym)
        high = _symmetries(_gather(self._hr, idx, top * s, left * s, p * s), sym)
        return Batch(low, high)
