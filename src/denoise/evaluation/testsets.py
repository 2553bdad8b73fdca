"""Where the real test images live, and loading a whole set of them.

The images (Set12, BSD68, CBSD68, Kodak24, Train400, ...) are never part of the
repository. They are found in the folder named by the environment variable
``DENOISE_DATA``, else in ``../shared/data`` next to the repository checkout.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import InputError
from ..io import list_images, read_image, rgb_to_gray

__all__ = ["ENV_VAR", "repo_root", "data_root", "available_sets", "load_set", "photo_pairs"]

#: Environment variable naming the data folder.
ENV_VAR = "DENOISE_DATA"


def repo_root() -> Path | None:
    """The repository checkout this package runs from (``src/denoise/../..``), or None
    when the package is installed elsewhere (not an editable install)."""
    candidate = Path(__file__).resolve().parents[3]
    if (candidate / "pyproject.toml").is_file() and (candidate / "src" / "denoise").is_dir():
        return candidate
    return None


def data_root() -> Path | None:
    """The data folder: ``$DENOISE_DATA`` if set, else ``<repo>/../shared/data`` if it
    exists, else None. Raises :class:`InputError` when ``DENOISE_DATA`` names no folder."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_dir():
            raise InputError(f"{ENV_VAR}={configured} is not a folder; point it at the image "
                             "data folder or unset it")
        return path
    repo = repo_root()
    if repo is not None and (repo.parent / "shared" / "data").is_dir():
        return repo.parent / "shared" / "data"
    return None


def available_sets() -> list[str]:
    """Names of the folders in :func:`data_root` that hold images themselves (a folder of
    class sub-folders, such as CIFAR10, or of other folders, is not a test set)."""
    root = data_root()
    if root is None:
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and list_images(p))


def _set_folder(name) -> Path:
    path = Path(name)
    if path.is_dir():
        return path
    root = data_root()
    if root is None:
        raise InputError(f"no image data folder found for set {name!r}: set {ENV_VAR} to the "
                         "folder holding Set12, BSD68, ...")
    folder = root / str(name)
    if not folder.is_dir():
        raise InputError(f"unknown image set {name!r} in {root}; available: "
                         f"{', '.join(available_sets()) or 'none'}")
    return folder


def load_set(name, gray: bool | None = None) -> list[tuple[str, torch.Tensor]]:
    """Read every image of a set, sorted by file name, as ``[(stem, x), ...]``.

    ``name`` is a folder of :func:`data_root` (``"Set12"``) or a path to a folder. Each
    ``x`` is (1, C, H, W) float32 in [0, 1]. ``gray=True`` converts colour images to
    gray (ITU-R BT.601 luma, the weights of Pillow's ``convert("L")``, unquantised);
    ``gray=False`` repeats gray images over three channels; None keeps them as stored.
    Alpha channels are dropped.
    """
    folder = _set_folder(name)
    files = list_images(folder)
    if not files:
        raise InputError(f"no images in {folder}")
    return [(path.stem, _convert(read_image(path)[0], gray)) for path in files]


def _convert(x: torch.Tensor, gray: bool | None) -> torch.Tensor:
    if gray is None:
        return x
    if gray:
        return rgb_to_gray(x)
    return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x


def photo_pairs(folder: Path) -> list[tuple[str, Path, Path]]:
    """``(camera, clean, noisy)`` for every image of ``folder/clean`` with its namesake in
    ``folder/noisy`` (a real-noise set such as PolyU), sorted by name; the camera is the
    file name up to its first underscore."""
    folder = Path(folder)
    clean_dir, noisy_dir = folder / "clean", folder / "noisy"
    if not clean_dir.is_dir() or not noisy_dir.is_dir():
        raise InputError(f"{folder} needs the sub-folders clean/ and noisy/")
    found = [(p.name.split("_")[0], p, noisy_dir / p.name) for p in list_images(clean_dir)
             if (noisy_dir / p.name).is_file()]
    if not found:
        raise InputError(f"no clean/noisy pairs in {folder}")
    return found
