"""Checking uploads by their content, and the PNG previews the page shows.

An upload is accepted when Pillow recognises it, by its bytes and never by its name, as
PNG, JPEG or TIFF, its header declares at most ``max_pixels`` pixels (checked before any
decoding: a small file cannot expand into gigabytes), Pillow's ``verify()`` passes, and
:func:`denoise.io.read_image` (the reader of ``denoise run``) decodes it whole.
Each refusal is an :class:`~denoise.web.config.HTTPProblem` with its status and a
message naming the upload by the client's file name, never by a server path.
"""
from __future__ import annotations

import io
import re
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DenoiseError
from .config import FORMATS, MB, HTTPProblem, Settings

#: Uploads decoded at once (each decode holds a few copies of the image in memory).
DECODERS = threading.BoundedSemaphore(2)

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def clean_name(name: str | None, default: str = "image") -> str:
    """A client's file name reduced to a safe display name: its last path component,
    characters outside ``A-Za-z0-9._ -`` replaced, at most 80 characters."""
    text = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    text = _UNSAFE.sub("_", text).strip(" .")[:80]
    return text or default


def stem(name: str) -> str:
    """A clean name without its extension."""
    base = name.rsplit(".", 1)[0] if "." in name else name
    return base or "image"


def inspect(path: Path, name: str, settings: Settings) -> tuple[str, int, int]:
    """``(format, width, height)`` of the uploaded file at ``path``, checked by content
    from its header (format, pixel count) and Pillow's ``verify()``; HTTPProblem else."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                fmt, (width, height) = im.format, im.size
                if fmt not in FORMATS:
                    raise HTTPProblem(415, f"{name}: {fmt} images are not supported; upload a PNG, "
                                           "JPEG or TIFF file")
                _check_pixels(width, height, name, settings)
                im.verify()
    except HTTPProblem:
        raise
    except UnidentifiedImageError:
        raise HTTPProblem(415, f"{name} is not an image: its content is not PNG, JPEG or TIFF "
                               "(whatever its name says)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise HTTPProblem(413, f"{name} declares too many pixels for this server (limit "
                               f"{settings.max_pixels / 1e6:g} megapixels)") from None
    except Exception as exc:  # noqa: BLE001 - damaged files raise anything
        raise HTTPProblem(422, f"{name} is damaged or truncated ({_reason(exc, path, name)}); "
                               "upload the complete file") from None
    return fmt, width, height


def _check_pixels(width: int, height: int, name: str, settings: Settings) -> None:
    if width * height > settings.max_pixels:
        raise HTTPProblem(413, f"{name} is {width}x{height} pixels ({width * height / 1e6:.1f} "
                               f"megapixels); this server takes at most "
                               f"{settings.max_pixels / 1e6:g} megapixels")


def _reason(exc: BaseException, path: Path, name: str) -> str:
    """A one-line reason without the server's path in it."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.replace(str(path), name).replace(str(path.parent), "")


def decode(path: Path, name: str):
    """``(x, info)`` by :func:`denoise.io.read_image`; 422 naming the upload when it fails."""
    from ..io import read_image

    try:
        return read_image(path)
    except DenoiseError as exc:
        message = _reason(exc, path, name).replace(f"cannot read {name}: ", "")
        raise HTTPProblem(422, f"{name} cannot be read: {message}") from None
    except MemoryError:
        raise HTTPProblem(413, f"{name} is too large to decode in this server's memory") from None


def estimate_sigma_255(x: torch.Tensor) -> float | None:
    """The estimated noise level on the 0-255 scale (None for images too small)."""
    from ..estimate import estimate_sigma

    try:
        return round(float(estimate_sigma(x).flatten()[0]) * 255, 2)
    except (DenoiseError, RuntimeError, ValueError):
        return None


def to_8bit(x: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) in [0, 1] -> (H, W) or (H, W, 3) uint8."""
    pixels = torch.round(x[0].clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def write_preview(x: torch.Tensor, target: Path) -> None:
    """An 8-bit PNG of the colour channels (fast compression), written whole or not at all."""
    buffer = io.BytesIO()
    Image.fromarray(to_8bit(x)).save(buffer, format="PNG", compress_level=1)
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(target)


def release_memory() -> None:
    """Hand freed memory back to the system after a large image (glibc only; a no-op
    elsewhere), so that an idle server does not keep its peak."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def limit_text(settings: Settings) -> str:
    """The upload limits in words."""
    return (f"at most {settings.max_upload_bytes / MB:g} MB and "
            f"{settings.max_pixels / 1e6:g} megapixels")
