"""Rebuild the EE-559 Noise2Noise course data from real photos.

The course shipped two files that are not available here:

* ``train_data.pkl``: a tuple of two uint8 tensors (50000, 3, 32, 32), two independently
  noisy views of the same 32x32 crops;
* ``val_data.pkl``: a tuple (noisy, clean) of uint8 tensors (1000, 3, 32, 32).

This module rebuilds files of that form. Recipe (deterministic from ``seed``):

1. every crop is taken from a uniformly chosen image of the source folder, at a uniformly
   random position, with side ``2 * size`` (64 px), randomly flipped, then downsampled by 2
   with area averaging to ``size`` (32 px), so crops look like small photos and the JPEG
   noise of the source is averaged away;
2. noise is additive Gaussian, one independent draw per view, rounded and clipped to
   uint8 (as the course data is uint8);
3. sigma is calibrated on the validation crops so that the mean per-image PSNR of the noisy
   validation input equals ``target_psnr`` (20.7 dB, the course's figure) to 0.05 dB; the
   same sigma is used for training.

Validation crops come from ``val_source`` when given (a folder disjoint from the training
one), otherwise from a held-out tail of the source folder (the last ``val_fraction`` of its
sorted images), so training and validation never share an image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import InputError
from ..io import list_images, read_image
from ..utils import atomic_path


@dataclass
class EE559Data:
    train_input: torch.Tensor   # (n_train, 3, 32, 32) uint8, first noisy view
    train_target: torch.Tensor  # second, independent noisy view
    val_input: torch.Tensor     # (n_val, 3, 32, 32) uint8, noisy
    val_target: torch.Tensor    # clean
    sigma: float                # noise std on the 0-255 scale


def _load_rgb(paths: list[Path], min_side: int, desc: str) -> list[torch.Tensor]:
    images = []
    for path in tqdm(paths, desc=desc, unit="img", leave=False):
        x, _ = read_image(path)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if min(x.shape[-2:]) < min_side:
            continue
        images.append(x[0])
    if not images:
        raise InputError(f"no RGB image of at least {min_side}x{min_side} pixels among {len(paths)} files")
    return images


def random_crops(images: list[torch.Tensor], n: int, size: int, generator: torch.Generator,
                 chunk: int = 4096) -> torch.Tensor:
    """``n`` crops of side 2*size from random images, flipped at random, area-downsampled to
    ``size``; float32 in [0, 1], shape (n, 3, size, size)."""
    big = 2 * size
    idx = torch.randint(len(images), (n,), generator=generator)
    u = torch.rand(n, 2, generator=generator)
    flips = torch.rand(n, 2, generator=generator) < 0.5
    out = torch.empty(n, 3, size, size)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        crops = []
        for k in range(start, stop):
            img = images[int(idx[k])]
            h, w = img.shape[-2:]
            top = int(u[k, 0] * (h - big + 1))
            left = int(u[k, 1] * (w - big + 1))
            c = img[:, top:top + big, left:left + big]
            if flips[k, 0]:
                c = c.flip(-1)
            if flips[k, 1]:
                c = c.flip(-2)
            crops.append(c)
        out[start:stop] = F.avg_pool2d(torch.stack(crops), 2)
    return out


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round_().clamp_(0, 255).to(torch.uint8)


def noisy_uint8(clean_u8: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Add Gaussian noise of std ``sigma`` (0-255 scale) to a uint8 batch; round, clip."""
    noise = torch.randn(clean_u8.shape, generator=generator) * sigma
    return (clean_u8.float() + noise).round_().clamp_(0, 255).to(torch.uint8)


def course_psnr(x_u8: torch.Tensor, y_u8: torch.Tensor) -> float:
    """Mean per-image PSNR of two uint8 batches, as the course harness computes it."""
    x = x_u8.float() / 255
    y = y_u8.float() / 255
    mse = ((x - y) ** 2).mean((1, 2, 3))
    return float(-10 * torch.log10(mse).mean())


def calibrate_sigma(clean_u8: torch.Tensor, target_psnr: float, seed: int, tol: float = 0.02) -> float:
    """Bisection on sigma (0-255 scale) so that the noisy batch scores ``target_psnr`` dB.

    Each trial uses the same noise seed, so the PSNR is monotone in sigma and the search
    converges to a reproducible value."""
    lo, hi = 1.0, 100.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        g = torch.Generator().manual_seed(seed)
        p = course_psnr(noisy_uint8(clean_u8, mid, g), clean_u8)
        if abs(p - target_psnr) < tol:
            return mid
        lo, hi = (mid, hi) if p > target_psnr else (lo, mid)
    return 0.5 * (lo + hi)


def build_ee559_data(source: str | Path, *, val_source: str | Path | None = None,
                     n_train: int = 50_000, n_val: int = 1_000, size: int = 32,
                     target_psnr: float = 20.7, val_fraction: float = 0.1,
                     seed: int = 0) -> EE559Data:
    """Build the course's training pairs and validation set (see the module docstring)."""
    if n_train < 1 or n_val < 1 or size < 4:
        raise InputError(f"need n_train >= 1, n_val >= 1 and size >= 4, got {n_train}, {n_val}, {size}")
    if not 10 <= target_psnr <= 50:
        raise InputError(f"target_psnr must be between 10 and 50 dB, got {target_psnr}")
    src = sorted(list_images(source))
    if val_source is not None:
        train_paths, val_paths = src, sorted(list_images(val_source))
        if {p.resolve() for p in train_paths} & {p.resolve() for p in val_paths}:
            raise InputError("the validation source shares images with the training source")
    else:
        if not 0 < val_fraction < 1:
            raise InputError(f"val_fraction must be in (0, 1), got {val_fraction}")
        n_hold = max(1, math.ceil(len(src) * val_fraction))
        if len(src) < 2:
            raise InputError(f"{source}: need at least 2 images to hold one out for validation")
        train_paths, val_paths = src[:-n_hold], src[-n_hold:]
    train_imgs = _load_rgb(train_paths, 2 * size, "training images")
    val_imgs = _load_rgb(val_paths, 2 * size, "validation images")

    g = torch.Generator().manual_seed(seed)
    val_clean = _to_uint8(random_crops(val_imgs, n_val, size, g))
    sigma = calibrate_sigma(val_clean, target_psnr, seed + 1)
    val_noisy = noisy_uint8(val_clean, sigma, torch.Generator().manual_seed(seed + 1))
    train_clean = _to_uint8(random_crops(train_imgs, n_train, size, g))
    train_in = noisy_uint8(train_clean, sigma, g)
    train_tg = noisy_uint8(train_clean, sigma, g)
    return EE559Data(train_in, train_tg, val_noisy, val_clean, sigma)


def save_pair(path: str | Path, a: torch.Tensor, b: torch.Tensor, *, overwrite: bool = False) -> None:
    """Write a tuple of two tensors as the course's .pkl files are written (torch.save), atomically."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        torch.save((a, b), tmp)


def write_ee559_data(out: str | Path, data: EE559Data, *, overwrite: bool = False) -> tuple[Path, Path]:
    out = Path(out)
    train, val = out / "train_data.pkl", out / "val_data.pkl"
    save_pair(train, data.train_input, data.train_target, overwrite=overwrite)
    save_pair(val, data.val_input, data.val_target, overwrite=overwrite)
    return train, val
