"""Rebuild the EE-559 Noise2Noise course data from real photos.

The course (EPFL EE-559 Deep Learning, 2022) shipped two files that are not available here:

* ``train_data.pkl``: a tuple of two uint8 tensors (50000, 3, 32, 32), two independently
  noisy views of the same 32x32 crops;
* ``val_data.pkl``: a tuple (noisy, clean) of uint8 tensors (1000, 3, 32, 32).

This module rebuilds files of that form. The recipe, deterministic from ``seed`` and the
sorted list of source images:

1. Sources. Validation crops come from ``val_source`` when given (a folder disjoint from
   the training one; a shared file is an error), otherwise from a held-out tail of the
   training folder: the last ``val_fraction`` (10 %) of its images sorted by name (44 of
   CBSD432's 432), so training and validation never share an image. Gray images are
   repeated on three channels; images smaller than 64x64 are skipped.
2. Crops. Every crop comes from a uniformly chosen image at a uniformly random position,
   has side ``2 * size`` (64 px), is flipped left-right and up-down each with probability
   1/2, then downsampled by 2 with 2x2 area averaging to ``size`` (32 px) and quantised to
   uint8. Downsampling makes the crops look like small photos (as the course's did) and
   averages the sources' JPEG artefacts away. One ``torch.Generator`` seeded with ``seed``
   draws the validation crops first, then the training crops, then the training noise.
3. Noise. Additive Gaussian noise, an independent draw for each view, added to the uint8
   levels, rounded and clipped to [0, 255]. The validation noise comes from a generator
   seeded with ``seed + 1``.
4. Level. ``sigma`` is found by bisection so that the mean per-image PSNR of the noisy
   validation input against its clean version is ``target_psnr`` (20.7 dB, the figure of
   the course's data) within 0.02 dB; the training views use the same sigma (24.16/255
   for CBSD432 with seed 0). As everywhere in the library, sigma is on the 0-1 scale in
   this module's functions; the recipe file records it on the 0-255 scale (``sigma_255``).

The files are written with ``torch.save`` as a tuple of two tensors, so the course's
plain ``torch.load(path)`` reads them (and so does ``torch.load(path, weights_only=True)``).
A ``recipe.json`` beside them records the sources, the seed, sigma and the measured PSNR.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import InputError, OutputError
from ..io import list_images, read_image
from ..metrics import psnr
from ..training.data import load_uint8_pair
from ..utils import atomic_path, check_sigma, write_json

__all__ = ["EE559Data", "split_sources", "random_crops", "noisy_uint8", "course_psnr",
           "calibrate_sigma", "build_ee559_data", "write_ee559_data", "load_course_pair",
           "save_torch", "TRAIN_FILE", "VAL_FILE", "RECIPE_FILE"]

TRAIN_FILE = "train_data.pkl"
VAL_FILE = "val_data.pkl"
RECIPE_FILE = "recipe.json"

#: Crops drawn (and noise added) per chunk: bounds the memory used for 50,000 crops.
CHUNK = 4096


@dataclass
class EE559Data:
    """The rebuilt course data: uint8 tensors (N, 3, size, size) and the recipe's figures."""

    train_input: torch.Tensor   # first noisy view of each training crop
    train_target: torch.Tensor  # second, independent noisy view
    val_input: torch.Tensor     # noisy validation crops
    val_target: torch.Tensor    # their clean versions
    sigma: float                # noise standard deviation on the 0-1 scale
    train_images: list[str]     # names of the source images of each split
    val_images: list[str]
    seed: int
    sources: str                # where the two splits come from, in words

    def recipe(self) -> dict:
        """What :func:`write_ee559_data` records in ``recipe.json``."""
        return {
            "seed": self.seed,
            "sources": self.sources,
            # the file's scale is 8-bit levels; 12 digits first drop the last-bit noise of
            # the change of scale, so that ties round as they do for the levels themselves
            "sigma_255": round(float(f"{255 * self.sigma:.12g}"), 4),
            "noisy_val_psnr_db": round(course_psnr(self.val_input, self.val_target), 4),
            "n_train": int(self.train_input.shape[0]),
            "n_val": int(self.val_input.shape[0]),
            "size": int(self.val_input.shape[-1]),
            "train_images": self.train_images,
            "val_images": self.val_images,
            "recipe": "denoise.ee559.data (module docstring)",
        }


# --------------------------------------------------------------------------- sources


def split_sources(source: str | Path, val_source: str | Path | None = None,
                  val_fraction: float = 0.1) -> tuple[list[Path], list[Path]]:
    """The (training, validation) image files: two disjoint folders, or one folder whose
    last ``val_fraction`` of images (sorted by name) is held out for validation."""
    train = list_images(source)
    if val_source is not None:
        val = list_images(val_source)
        shared = {p.resolve() for p in train} & {p.resolve() for p in val}
        if shared:
            raise InputError(f"the validation source shares {len(shared)} image(s) with the training "
                             f"source (e.g. {sorted(shared)[0].name}); pass disjoint folders")
    else:
        if not 0 < val_fraction < 1:
            raise InputError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if len(train) < 2:
            raise InputError(f"{source} holds {len(train)} image(s); holding some out for "
                             "validation needs at least 2 (or pass a validation source)")
        n_hold = max(1, math.ceil(len(train) * val_fraction))
        train, val = train[:-n_hold], train[-n_hold:]
    for name, paths, folder in (("training", train, source), ("validation", val, val_source or source)):
        if not paths:
            raise InputError(f"no {name} images in {folder}; pass a folder of photos (png, jpg, ...)")
    return train, val


def _load_rgb(paths: list[Path], min_side: int, desc: str) -> tuple[list[str], list[torch.Tensor]]:
    """Names and (3, H, W) float tensors of the images with both sides >= ``min_side``."""
    names, images = [], []
    for path in tqdm(paths, desc=desc, unit="img", leave=False, disable=None):
        x, _ = read_image(path)
        if min(x.shape[-2:]) < min_side:
            continue
        names.append(path.name)
        images.append(x[0].expand(3, -1, -1))
    if not images:
        raise InputError(f"none of the {len(paths)} {desc} is at least {min_side}x{min_side} pixels")
    return names, images


# --------------------------------------------------------------------------- crops and noise


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """0-255 levels (float) to uint8: rounded and clipped, in place where possible."""
    return x.round_().clamp_(0, 255).to(torch.uint8)


def random_crops(images: list[torch.Tensor], n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` uint8 crops (n, 3, size, size): side ``2 * size`` from random images at random
    positions, flipped at random, area-downsampled by 2 (step 2 of the recipe)."""
    big = 2 * size
    idx = torch.randint(len(images), (n,), generator=generator)
    pos = torch.rand(n, 2, generator=generator)
    flips = torch.rand(n, 2, generator=generator) < 0.5
    out = torch.empty(n, 3, size, size, dtype=torch.uint8)
    for start in range(0, n, CHUNK):
        crops = []
        for k in range(start, min(start + CHUNK, n)):
            img = images[int(idx[k])]
            h, w = img.shape[-2:]
            top, left = int(pos[k, 0] * (h - big + 1)), int(pos[k, 1] * (w - big + 1))
            crop = img[:, top:top + big, left:left + big]
            dims = [d for d, flip in zip((-1, -2), flips[k].tolist()) if flip]
            crops.append(crop.flip(dims) if dims else crop)
        out[start:start + len(crops)] = _to_uint8(F.avg_pool2d(torch.stack(crops), 2) * 255)
    return out


def noisy_uint8(clean: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """A noisy view of a uint8 batch: Gaussian noise of std ``sigma`` (0-1 scale, so
    ``255 * sigma`` levels) added to the levels, rounded and clipped (step 3 of the
    recipe); drawn in chunks of :data:`CHUNK`."""
    levels = 255 * check_sigma(sigma, allow_none=False)
    out = torch.empty_like(clean)
    for start in range(0, clean.shape[0], CHUNK):
        part = clean[start:start + CHUNK]
        noise = torch.randn(part.shape, generator=generator).mul_(levels)
        out[start:start + part.shape[0]] = _to_uint8(noise.add_(part))
    return out


def course_psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean per-image PSNR (dB) of two batches of 0-255 levels, as the course scores them:
    the mean over images of ``-10 log10(mse)`` on the data divided by 255."""
    return float(psnr(x.float() / 255, y.float() / 255, data_range=1.0).mean())


def calibrate_sigma(clean: torch.Tensor, target_psnr: float, seed: int, tol: float = 0.02) -> float:
    """Bisection on sigma (0-1 scale) so that ``noisy_uint8(clean, sigma)`` with noise
    seed ``seed`` scores ``target_psnr`` dB against ``clean`` within ``tol``.

    Every trial draws the same standard normal values, so the PSNR decreases monotonically
    with sigma and the search ends on a reproducible value.
    """
    lo, hi = 0.5 / 255, 128.0 / 255
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        value = course_psnr(noisy_uint8(clean, mid, torch.Generator().manual_seed(seed)), clean)
        if abs(value - target_psnr) < tol:
            return mid
        lo, hi = (mid, hi) if value > target_psnr else (lo, mid)
    raise InputError(f"no noise level gives {target_psnr} dB on these crops (closest sigma "
                     f"{255 * mid:.2f}/255); pick another target PSNR")


# --------------------------------------------------------------------------- the data set


def build_ee559_data(source: str | Path, *, val_source: str | Path | None = None,
                     n_train: int = 50_000, n_val: int = 1_000, size: int = 32,
                     target_psnr: float = 20.7, val_fraction: float = 0.1,
                     seed: int = 0) -> EE559Data:
    """Build the course's training pairs and validation set (recipe: the module docstring)."""
    for name, value, low in (("n_train", n_train, 1), ("n_val", n_val, 1), ("size", size, 4)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"{name} must be an int >= {low}, got {value!r}")
    if not 10 <= target_psnr <= 50:
        raise InputError(f"target_psnr must be between 10 and 50 dB, got {target_psnr}")
    train_paths, val_paths = split_sources(source, val_source, val_fraction)
    train_names, train_imgs = _load_rgb(train_paths, 2 * size, "training images")
    val_names, val_imgs = _load_rgb(val_paths, 2 * size, "validation images")

    g = torch.Generator().manual_seed(seed)
    val_clean = random_crops(val_imgs, n_val, size, g)
    sigma = calibrate_sigma(val_clean, target_psnr, seed + 1)
    val_noisy = noisy_uint8(val_clean, sigma, torch.Generator().manual_seed(seed + 1))
    train_clean = random_crops(train_imgs, n_train, size, g)
    train_input = noisy_uint8(train_clean, sigma, g)
    train_target = noisy_uint8(train_clean, sigma, g)
    sources = (f"training: {Path(source).name} ({len(train_names)} images); validation: "
               + (f"{Path(val_source).name} ({len(val_names)} images)" if val_source is not None else
                  f"the last {len(val_paths)} images of {Path(source).name} by name ({len(val_names)} used)"))
    return EE559Data(train_input, train_target, val_noisy, val_clean, sigma,
                     train_names, val_names, seed, sources)


def save_torch(obj, path: str | Path, *, overwrite: bool = False) -> None:
    """``torch.save`` to ``path`` atomically, byte for byte reproducible (the archive is
    written through a file object, so its inner name does not depend on a temporary name)."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)


def save_pair(path: str | Path, a: torch.Tensor, b: torch.Tensor, *, overwrite: bool = False) -> None:
    """Write a tuple of two tensors as the course's ``.pkl`` files are written (``torch.save``)."""
    save_torch((a.contiguous(), b.contiguous()), path, overwrite=overwrite)


def load_course_pair(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The two uint8 tensors (N, 3, H, W) of a course ``.pkl`` file, read without running
    code from it (``weights_only=True``); InputError / ImageReadError for anything else."""
    return load_uint8_pair(path, missing_hint="; build it with 'denoise data ee559'")


def write_ee559_data(out: str | Path, data: EE559Data, *, overwrite: bool = False,
                     command: str | None = None) -> tuple[Path, Path]:
    """Write ``train_data.pkl``, ``val_data.pkl`` and ``recipe.json`` (with ``command``, the
    command line that built the data, when given) into the folder ``out``, created if
    missing. Existing files are replaced only with ``overwrite``; the check is done for
    all three before anything is written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is not a folder")
    paths = [out / TRAIN_FILE, out / VAL_FILE, out / RECIPE_FILE]
    existing = [p.name for p in paths if p.exists()]
    if existing and not overwrite:
        raise OutputError(f"{out} already holds {', '.join(existing)}; pass --force to replace")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out}: {exc.strerror or exc}") from None
    save_pair(paths[0], data.train_input, data.train_target, overwrite=True)
    save_pair(paths[1], data.val_input, data.val_target, overwrite=True)
    write_json(paths[2], {**data.recipe(), "command": command})
    return paths[0], paths[1]
