"""16-bit image encoders Pillow lacks: 16-bit colour PNG and TIFF (used by :mod:`denoise.io`)."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import ImageWriteError, MissingDependencyError


def _save_tiff16(pixels: np.ndarray, target: Path) -> None:
    if pixels.shape[-1] == 2:
        raise ImageWriteError("16-bit gray with alpha cannot be written as TIFF here; "
                              "write .png, or pass bit_depth=8")
    try:
        import tifffile
    except ImportError:
        raise MissingDependencyError("writing 16-bit colour TIFF needs tifffile: "
                                     "pip install tifffile") from None
    extra = {"extrasamples": ["unassalpha"]} if pixels.shape[-1] == 4 else {}
    tifffile.imwrite(target, pixels, photometric="rgb", **extra)


def _encode_png16(pixels: np.ndarray) -> bytes:
    """A 16-bit PNG (gray, gray + alpha, RGB or RGBA) from a uint16 array (H, W[, C])."""
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = pixels.astype(">u2").reshape(height, width * channels).view(np.uint8)
    filtered = _paeth_filter(rows, bytes_per_pixel=2 * channels)
    scanlines = np.concatenate([np.full((height, 1), 4, np.uint8), filtered], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
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


# ----------------------------------------------------------------------------- folders, colour
