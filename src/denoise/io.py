"""Reading and writing images at the edges of the library.

Inside the library an image is a float32 tensor ``(1, C, H, W)`` with ``C`` in {1, 3} and
values in [0, 1]. This module converts files to and from that form:

* formats: PNG, JPEG and TIFF (any other raster format Pillow opens is read as well);
* depths: 8 and 16 bits per sample, kept in :class:`ImageInfo` so that a 16-bit input
  gives a 16-bit output by default (JPEG stores 8 bits only);
* colours: gray and RGB; palette, CMYK, YCbCr and 1-bit images are converted to RGB or
  gray; an alpha channel is split off into ``info.alpha`` and written back untouched;
* EXIF orientation is applied on reading (as :func:`PIL.ImageOps.exif_transpose` does),
  so pixels come out the way a viewer shows them;
* metadata: the EXIF (camera, dates, GPS...) and the ICC profile go from :class:`ImageInfo`
  into JPEG, PNG and TIFF outputs of either depth, unless ``strip_metadata``; the EXIF
  Orientation becomes 1 (pixels are upright). Not kept: EXIF thumbnails, XMP, IPTC, a
  profile that does not fit the output (CMYK or Lab turned RGB, RGB on gray), an EXIF
  over 64 KiB in a JPEG (with a warning).

Pillow reads 16-bit colour PNG and TIFF files as 8-bit images. Here they are decoded
twice by Pillow's own decoder, unpacking the high and then the low byte of every sample,
which keeps all 16 bits. Pillow cannot write them either: 16-bit colour PNGs and TIFFs are
encoded by :mod:`denoise.encoders` (uncompressed TIFF, its directory written by Pillow).

Limits: images smaller than 2x2 pixels are refused; colour profiles (ICC) are carried, not
applied; 16-bit colour TIFFs with separate colour planes and 16-bit gray-with-alpha TIFFs
are not supported (each raises a one-line error saying so).
"""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .encoders import _metadata_in, _metadata_out, _save
from .errors import (
    DenoiseError,
    ImageReadError,
    ImageWriteError,
    InputError,
)
from .utils import atomic_path, check_image

__all__ = ["IMAGE_EXTENSIONS", "MIN_SIZE", "ImageInfo", "read_image", "write_image",
           "list_images", "quantize", "rgb_to_gray"]

#: Suffixes that :func:`list_images` lists and :func:`write_image` writes (lower case).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

#: Smallest accepted height and width, in pixels.
MIN_SIZE = 2

_WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}

# Pillow modes converted on reading: to gray, gray + alpha, RGB or RGB + alpha.
_CONVERT = {"1": "L", "P": "RGB", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB",
            "HSV": "RGB", "RGBX": "RGB", "RGBa": "RGBA", "La": "LA"}
_SIXTEEN_BIT_GRAY = ("I;16", "I;16L", "I;16B", "I;16N", "I")

# ITU-R BT.601 luma weights, the ones Pillow uses for convert("L").
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True, eq=False)
class ImageInfo:
    """What :func:`read_image` learnt about a file and :func:`write_image` needs back.

    Attributes:
        bit_depth: 8 or 16 bits per sample.
        mode: ``"L"`` (gray) or ``"RGB"``: the colour channels, alpha excluded.
        alpha: the alpha channel as a float32 tensor ``(1, 1, H, W)`` in [0, 1], or None.
        format: the file format as Pillow names it (``"PNG"``, ``"JPEG"``, ``"TIFF"``), or None.
        exif: the EXIF block as Pillow's ``exif=`` takes it, Orientation 1; or None.
        icc_profile: the ICC colour profile of the pixels, or None.
    """

    bit_depth: int = 8
    mode: str = "RGB"
    alpha: torch.Tensor | None = None
    format: str | None = None
    exif: bytes | None = None
    icc_profile: bytes | None = None

    def __repr__(self) -> str:
        alpha = None if self.alpha is None else f"<{tuple(self.alpha.shape)} tensor>"
        meta = "".join(f", {k}=<{len(v)} bytes>" for k, v in
                       (("exif", self.exif), ("icc_profile", self.icc_profile)) if v)
        return (f"ImageInfo(bit_depth={self.bit_depth}, mode={self.mode!r}, alpha={alpha}, "
                f"format={self.format!r}{meta})")


# ----------------------------------------------------------------------------- reading

def read_image(path) -> tuple[torch.Tensor, ImageInfo]:
    """Read an image file into a float32 tensor ``(1, C, H, W)`` in [0, 1], ``C`` in {1, 3}.

    Returns ``(x, info)``; ``info`` keeps the bit depth, the colour mode, the alpha channel,
    the format and the metadata (see :class:`ImageInfo`). Raises :class:`ImageReadError`
    with one line naming the file when it is missing, empty, truncated, not an image, or
    too small.
    """
    path = Path(path)
    _check_readable(path)
    try:
        with Image.open(path) as im:
            fmt = im.format
            _check_size(im.size, path)
            pixels, depth = _decode(im, path)
            colours = 1 if pixels.ndim == 2 or pixels.shape[2] == 2 else 3
            exif, icc = _metadata_in(im, pixels.shape[1::-1], colours, path)
    except DenoiseError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoders of damaged files raise all kinds of errors
        raise ImageReadError(f"cannot read {path}: {_reason(exc)}") from None
    x, alpha = _to_tensors(pixels, depth)
    mode = "L" if x.shape[1] == 1 else "RGB"
    return x, ImageInfo(bit_depth=depth, mode=mode, alpha=alpha, format=fmt, exif=exif,
                        icc_profile=icc)


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(f"no such file: {path}")
    if path.is_dir():
        raise ImageReadError(f"{path} is a folder, not an image file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"cannot read {path}: the file is empty")


def _check_size(size: tuple[int, int], path: Path) -> None:
    width, height = size
    if width < MIN_SIZE or height < MIN_SIZE:
        raise ImageReadError(f"cannot read {path}: image too small ({width}x{height} pixels; "
                             f"at least {MIN_SIZE}x{MIN_SIZE} needed)")


def _reason(exc: Exception) -> str:
    """A one-line reason for a decoding failure."""
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "not an image, or a format Pillow cannot read"
    if isinstance(exc, OSError) and exc.errno is not None:  # e.g. permission denied
        return exc.strerror or str(exc)
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if "truncated" in text else f"damaged or unsupported file ({text})"


def _decode(im: Image.Image, path: Path) -> tuple[np.ndarray, int]:
    """Pixels as an array (H, W[, C]) of uint8 or uint16, C in {2, 3, 4}, and the bit depth."""
    wide = _wide_rawmode(im)
    if wide is not None:
        return _decode_wide(path, wide), 16
    _refuse_unsupported_depth(im, path)
    im.load()
    im = _normalise_mode(ImageOps.exif_transpose(im))
    if im.mode in _SIXTEEN_BIT_GRAY:
        return _sixteen_bit_gray(im, path), 16
    return np.asarray(im), 8


def _tile_rawmode(tile) -> str | None:
    args = tile[3]
    if isinstance(args, str):
        return args
    return args[0] if args and isinstance(args[0], str) else None


def _wide_rawmode(im: Image.Image) -> str | None:
    """The rawmode of a 16-bit colour image (which Pillow would cut to 8 bits), else None."""
    rawmodes = {_tile_rawmode(t) for t in im.tile}
    if len(rawmodes) != 1:
        return None
    rawmode = rawmodes.pop()
    if rawmode == "LA;16B" or _byte_rawmodes(rawmode) is not None:
        return rawmode
    return None


def _byte_rawmodes(rawmode: str | None) -> tuple[str, str] | None:
    """For a 16-bit RGB(A) rawmode, the rawmodes unpacking the high and the low bytes.

    Pillow's "X;16B" unpacker keeps the first byte of each sample and "X;16L" the second,
    so on big-endian data the first gives the high byte and the second the low byte.
    """
    base, sep, order = (rawmode or "").rpartition(";16")
    if not sep or base not in ("RGB", "RGBA") or order not in ("B", "L", "N"):
        return None
    if order == "N":
        order = "L" if sys.byteorder == "little" else "B"
    return f"{base};16{order}", f"{base};16{'L' if order == 'B' else 'B'}"


def _load_with_rawmode(path: Path, rawmode: str) -> np.ndarray:
    """Decode ``path`` again with another unpacker; orientation applied."""
    with Image.open(path) as im:
        im.tile = [_with_rawmode(t, rawmode) for t in im.tile]
        im.load()
        return np.asarray(ImageOps.exif_transpose(im))


def _with_rawmode(tile, rawmode: str):
    args = tile[3]
    args = rawmode if isinstance(args, str) else (rawmode, *args[1:])
    return tile._replace(args=args) if hasattr(tile, "_replace") else (*tile[:3], args)


def _decode_wide(path: Path, rawmode: str) -> np.ndarray:
    """All 16 bits of a 16-bit colour (or PNG gray + alpha) image, as uint16 (H, W, C)."""
    if rawmode == "LA;16B":  # Pillow opens it as RGBA: unpack the 4 bytes of a pixel as they are
        raw = np.ascontiguousarray(_load_with_rawmode(path, "RGBA"))
        return raw.view(">u2").astype(np.uint16)
    high_mode, low_mode = _byte_rawmodes(rawmode)
    high = _load_with_rawmode(path, high_mode).astype(np.uint16)
    low = _load_with_rawmode(path, low_mode).astype(np.uint16)
    return (high << 8) | low


def _refuse_unsupported_depth(im: Image.Image, path: Path) -> None:
    """Refuse high-depth colour TIFF layouts that Pillow would silently cut to 8 bits."""
    bits = getattr(im, "tag_v2", {}).get(258) if im.format == "TIFF" else None
    if bits is None or im.mode in _SIXTEEN_BIT_GRAY or im.mode == "F":
        return
    bits = bits if isinstance(bits, tuple) else (bits,)
    if max(bits) > 8:
        raise ImageReadError(f"cannot read {path}: {max(bits)}-bit colour TIFF with separate colour "
                             "planes or extra channels is not supported; save it with interleaved "
                             "(contiguous) RGB samples or as 16-bit PNG")


def _normalise_mode(im: Image.Image) -> Image.Image:
    """Convert to L, LA, RGB, RGBA or a 16-bit gray mode."""
    if "transparency" in im.info and im.mode in ("L", "RGB", "P"):
        return im.convert("LA" if im.mode == "L" else "RGBA")
    if im.mode in _CONVERT:
        return im.convert(_CONVERT[im.mode])
    if im.mode in ("L", "LA", "RGB", "RGBA") or im.mode in _SIXTEEN_BIT_GRAY:
        return im
    raise ImageReadError(f"unsupported pixel mode {im.mode!r}; convert the file to 8- or "
                         "16-bit gray or RGB")


def _sixteen_bit_gray(im: Image.Image, path: Path) -> np.ndarray:
    pixels = np.asarray(im)
    if im.mode == "I" and (pixels.min() < 0 or pixels.max() > 65535):
        raise ImageReadError(f"cannot read {path}: 32-bit integer pixels outside 0..65535 "
                             "are not supported")
    return pixels.astype(np.uint16)


def _to_tensors(pixels: np.ndarray, depth: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split an (H, W[, C]) integer array into the colour tensor and the alpha tensor."""
    scale = float(2 ** depth - 1)
    values = torch.from_numpy(pixels.astype(np.float32) / scale)
    values = values.unsqueeze(-1) if values.dim() == 2 else values
    values = values.permute(2, 0, 1).unsqueeze(0).contiguous()  # (1, C, H, W)
    if values.shape[1] in (2, 4):
        return values[:, :-1].contiguous(), values[:, -1:].contiguous()
    return values, None


# ----------------------------------------------------------------------------- writing

def write_image(path, x: torch.Tensor, info: ImageInfo | None = None, *, bit_depth: int | None = None,
                overwrite: bool = False, quality: int = 95, strip_metadata: bool = False) -> Path:
    """Write an image ``(1, C, H, W)`` or ``(C, H, W)`` in [0, 1] to ``path``; return the path.

    The format comes from the suffix (.png .jpg .jpeg .tif .tiff). Values are clipped to
    [0, 1] and rounded to the nearest level. ``info`` (from :func:`read_image`) gives the
    default bit depth and an alpha channel to attach back; ``bit_depth`` (8 or 16)
    overrides it. JPEG stores 8 bits and no alpha: a 16-bit default becomes 8 bits and an
    alpha channel is dropped with a warning. ``quality`` is the JPEG quality (1-95).
    The EXIF and ICC profile of ``info`` are written too, unless ``strip_metadata``.

    The file appears atomically (a temporary file renamed on success, removed on
    failure) and an existing file is replaced only when ``overwrite`` is true. Raises
    :class:`ImageWriteError` when the folder is missing or not writable or the file exists.
    """
    path = Path(path)
    fmt = _format_of(path)
    x = _single_image(x)
    depth = _output_depth(fmt, bit_depth, info)
    alpha = _output_alpha(fmt, x, info)
    pixels = _to_array(x if alpha is None else torch.cat([x, alpha]), depth)
    meta = (None, None) if strip_metadata or info is None else _metadata_out(
        info.exif, info.icc_profile, fmt, (x.shape[-1], x.shape[-2]), x.shape[0])
    try:
        with atomic_path(path, overwrite=overwrite, error=ImageWriteError) as tmp:
            _save(pixels, tmp, fmt, depth, quality, *meta)
    except DenoiseError:
        raise
    except OSError as exc:
        raise ImageWriteError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _format_of(path: Path) -> str:
    fmt = _WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageWriteError(f"cannot write {path}: unknown image suffix {path.suffix!r}; "
                              f"use one of {' '.join(IMAGE_EXTENSIONS)}")
    return fmt


def _single_image(x) -> torch.Tensor:
    """(C, H, W) from (1, C, H, W) or (C, H, W), validated, on the CPU."""
    if isinstance(x, torch.Tensor) and x.dim() == 3:
        x = x.unsqueeze(0)
    check_image(x, "image")
    if x.shape[0] != 1:
        raise InputError(f"write_image writes one image, got a batch of {x.shape[0]}; "
                         "write x[i:i+1] for each i")
    return x[0].detach().to("cpu", torch.float32)


def _output_depth(fmt: str, bit_depth: int | None, info: ImageInfo | None) -> int:
    if bit_depth not in (None, 8, 16):
        raise InputError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    if fmt == "JPEG":
        if bit_depth == 16:
            raise ImageWriteError("JPEG stores 8 bits per sample; write .png or .tif for 16 bits")
        return 8
    if bit_depth is not None:
        return bit_depth
    return info.bit_depth if info is not None else 8


def _output_alpha(fmt: str, x: torch.Tensor, info: ImageInfo | None) -> torch.Tensor | None:
    """The alpha channel (1, H, W) to write, or None."""
    alpha = info.alpha if info is not None else None
    if alpha is None:
        return None
    if fmt == "JPEG":
        warnings.warn("JPEG cannot store an alpha channel; it is dropped (write .png to keep it)",
                      stacklevel=3)
        return None
    alpha = alpha.detach().to("cpu", torch.float32).reshape(1, 1, *alpha.shape[-2:])
    if alpha.shape[-2:] != x.shape[-2:]:
        raise InputError(f"the alpha channel is {tuple(alpha.shape[-2:])} but the image is "
                         f"{tuple(x.shape[-2:])}; pass info=None or an ImageInfo with a "
                         "resized alpha")
    return alpha[0]


def quantize(x: torch.Tensor, bit_depth: int = 8) -> torch.Tensor:
    """Clip to [0, 1] and round to the nearest of the ``2**bit_depth`` levels (same dtype).

    This is what writing to an integer file does to an image, so a metric on
    ``quantize(y)`` is the metric of the saved file.
    """
    return _levels(x, bit_depth) / float(2 ** bit_depth - 1)


def _levels(x: torch.Tensor, bit_depth: int) -> torch.Tensor:
    return torch.round(x.clamp(0.0, 1.0) * float(2 ** bit_depth - 1))


def _to_array(x: torch.Tensor, depth: int) -> np.ndarray:
    """(C, H, W) floats -> (H, W) or (H, W, C) uint8 / uint16 array."""
    dtype = np.uint8 if depth == 8 else np.uint16
    pixels = _levels(x, depth).to(torch.int32).permute(1, 2, 0).numpy().astype(dtype)
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def list_images(folder) -> list[Path]:
    """The image files (suffixes in :data:`IMAGE_EXTENSIONS`, any case) of ``folder``, sorted by name.

    Hidden files (names starting with a dot, such as unfinished atomic writes) are skipped;
    sub-folders are not searched.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"no such folder: {folder}")
    files = (p for p in folder.iterdir()
             if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file())
    return sorted(files, key=lambda p: p.name)


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma (Pillow's ``convert("L")`` weights) of (N, 3, H, W) -> (N, 1, H, W).

    A gray input (N, 1, H, W) is returned unchanged.
    """
    check_image(x)
    if x.shape[1] == 1:
        return x
    weights = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)
