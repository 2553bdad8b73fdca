"""What :mod:`denoise.io` writes without Pillow's help: 16-bit colour PNG and TIFF, and
the photo metadata (EXIF, ICC colour profile) carried from an input to its outputs."""
from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import ImageWriteError

_EXIF_PREFIX = b"Exif\x00\x00"


def _save(pixels: np.ndarray, target: Path, fmt: str, depth: int, quality: int,
          exif: bytes | None, icc: bytes | None) -> None:
    """Write an (H, W[, C]) uint8 or uint16 array as a ``fmt`` file, with the metadata."""
    channels = 1 if pixels.ndim == 2 else pixels.shape[-1]
    meta = {key: value for key, value in (("exif", exif), ("icc_profile", icc)) if value}
    if depth == 16 and fmt == "PNG":
        target.write_bytes(_encode_png16(pixels, exif, icc))
    elif depth == 16 and fmt == "TIFF" and channels > 1:
        _save_tiff16(pixels, target, exif, icc)
    elif fmt == "JPEG":
        Image.fromarray(pixels).save(target, format="JPEG", quality=quality, subsampling=0, **meta)
    else:
        Image.fromarray(pixels).save(target, format=fmt, **meta)


def _save_tiff16(pixels: np.ndarray, target: Path, exif: bytes | None = None,
                 icc: bytes | None = None) -> None:
    """An uncompressed 16-bit RGB(A) TIFF in one strip, whose directory holds the EXIF tags
    (Exif and GPS sub-directories included) and the ICC profile: Pillow writes EXIF blocks
    as TIFF directories, so the layout tags are added to the EXIF and the pixels appended."""
    if pixels.shape[-1] == 2:
        raise ImageWriteError("16-bit gray with alpha cannot be written as TIFF here; "
                              "write .png, or pass bit_depth=8")
    height, width, channels = pixels.shape
    tags = Image.Exif()
    if exif:
        tags.load(exif)
    layout = {256: width, 257: height, 258: (16,) * channels, 259: 1, 262: 2, 273: 0,
              277: channels, 278: height, 279: pixels.size * 2, 284: 1}
    layout.update({338: 2} if channels == 4 else {})  # unassociated alpha
    layout.update({34675: icc} if icc else {})
    for tag, value in layout.items():
        tags[tag] = value
    directory = tags.tobytes(8).removeprefix(_EXIF_PREFIX)  # StripOffsets moved to its end
    if len(directory) + pixels.size * 2 >= 2 ** 32:
        raise ImageWriteError("the image is too large for a TIFF file (4 GiB); write .png")
    order = ">" if directory.startswith(b"MM") else "<"
    target.write_bytes(directory + pixels.astype(f"{order}u2").tobytes())


def _encode_png16(pixels: np.ndarray, exif: bytes | None = None, icc: bytes | None = None) -> bytes:
    """A 16-bit PNG (gray, gray + alpha, RGB or RGBA) from a uint16 array (H, W[, C]), with
    an ``eXIf`` chunk for ``exif`` and an ``iCCP`` chunk for the ICC profile ``icc``."""
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = pixels.astype(">u2").reshape(height, width * channels).view(np.uint8)
    filtered = _paeth_filter(rows, bytes_per_pixel=2 * channels)
    scanlines = np.concatenate([np.full((height, 1), 4, np.uint8), filtered], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    meta = (_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)) if icc else b"") + (
        _png_chunk(b"eXIf", exif.removeprefix(_EXIF_PREFIX)) if exif else b"")
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + meta
            + _png_chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 6)) + _png_chunk(b"IEND", b""))


def _paeth_filter(rows: np.ndarray, bytes_per_pixel: int) -> np.ndarray:
    """PNG filter type 4 (Paeth) applied to every scanline of a (H, row bytes) uint8 array."""
    x = rows.astype(np.int16)
    left = np.zeros_like(x)
    left[:, bytes_per_pixel:] = x[:, :-bytes_per_pixel]
    up = np.zeros_like(x)
    up[1:] = x[:-1]
    up_left = np.zeros_like(x)
    up_left[1:, bytes_per_pixel:] = x[:-1, :-bytes_per_pixel]
    estimate = left + up - up_left
    d_left, d_up, d_up_left = np.abs(estimate - left), np.abs(estimate - up), np.abs(estimate - up_left)
    predictor = np.where((d_left <= d_up) & (d_left <= d_up_left), left,
                         np.where(d_up <= d_up_left, up, up_left))
    return ((x - predictor) & 0xFF).astype(np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# ----------------------------------------------------------------------------- metadata

#: TIFF tags that say how pixels are stored rather than what the photo is: a TIFF input's
#: ``getexif()`` lists them, and written into another TIFF they would describe the wrong
#: pixels. Also dropped: thumbnail pointers, the ICC profile (kept apart), XMP, IPTC and
#: Photoshop blocks (which may hold an orientation or layers that no longer match).
_LAYOUT_TAGS = frozenset({
    254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 273, 277, 278, 279, 280, 281, 284,
    288, 289, 290, 291, 292, 293, 317, 320, 322, 323, 324, 325, 330, 338, 339, 340, 341, 347,
    *range(512, 522), 529, 530, 532, 700, 33723, 34377, 34675, 37724})
_ORIENTATION, _EXIF_IFD, _PIXEL_X, _PIXEL_Y = 0x0112, 0x8769, 0xA002, 0xA003
_MAX_JPEG_EXIF = 65533  # one APP1 marker


def _exif_block(exif, size: tuple[int, int]) -> bytes | None:
    """``exif`` (a Pillow ``Image.Exif`` or EXIF bytes) as the block to write with upright
    pixels of ``size`` (width, height): layout tags dropped, Orientation set to 1 and the
    Exif pixel dimensions to ``size``; None when no tag is left."""
    if isinstance(exif, (bytes, bytearray)):
        exif, data = Image.Exif(), exif
        exif.load(bytes(data))
    for tag in _LAYOUT_TAGS.intersection(exif):
        del exif[tag]
    if not len(exif):
        return None
    exif[_ORIENTATION] = 1  # the pixels were turned upright on reading
    if _EXIF_IFD in exif:
        sub = exif.get_ifd(_EXIF_IFD)
        sub.update({tag: n for tag, n in ((_PIXEL_X, size[0]), (_PIXEL_Y, size[1])) if tag in sub})
    return exif.tobytes()


def _icc_fits(icc: bytes | None, channels: int) -> bool:
    """Whether the ICC profile describes gray (``channels`` 1) or RGB (3) pixels: the
    profile of a CMYK or Lab input no longer fits once its pixels are converted to RGB."""
    return bool(icc) and icc[16:20] == (b"GRAY" if channels == 1 else b"RGB ")


def _metadata_in(im, size: tuple[int, int], channels: int, path) -> tuple[bytes | None, bytes | None]:
    """The EXIF block and ICC profile of an open image whose pixels were read upright as
    ``size`` (width, height) with ``channels`` colour channels. Metadata Pillow cannot
    parse or serialise is dropped with a warning rather than failing the read."""
    icc = im.info.get("icc_profile")
    try:
        exif = _exif_block(im.getexif(), size)
    except Exception as exc:  # noqa: BLE001 - damaged metadata, not a damaged image
        warnings.warn(f"{path}: its EXIF metadata cannot be kept ({exc})", stacklevel=3)
        exif = None
    return exif, (bytes(icc) if _icc_fits(icc, channels) else None)


def _metadata_out(exif: bytes | None, icc: bytes | None, fmt: str, size: tuple[int, int],
                  channels: int) -> tuple[bytes | None, bytes | None]:
    """The EXIF block and ICC profile to write into a ``fmt`` file of upright pixels."""
    if exif:
        try:
            exif = _exif_block(exif, size)
        except Exception as exc:  # noqa: BLE001 - bytes given by the caller
            warnings.warn(f"the EXIF metadata cannot be written ({exc}); it is dropped",
                          stacklevel=3)
            exif = None
    if fmt == "JPEG" and exif and len(exif) > _MAX_JPEG_EXIF:
        warnings.warn(f"the EXIF metadata ({len(exif)} bytes) is too large for JPEG "
                      f"({_MAX_JPEG_EXIF}); it is dropped (write .png or .tif to keep it)", stacklevel=3)
        exif = None
    return exif or None, (icc if _icc_fits(icc, channels) else None)


# ----------------------------------------------------------------------------- folders, colour
