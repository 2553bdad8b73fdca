"""Overlaid random text (the Noise2Noise paper's text removal task)."""
from __future__ import annotations

import functools
import string

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .models import Param, _check_param, _FractionNoise, _per_image


class Text(_FractionNoise):
    """Overlaid random text (Noise2Noise): random strings of random sizes, positions and
    colours are drawn until they cover a fraction ``p`` of the pixels (``p <= 0.95``).

    Text is drawn without anti-aliasing, so a pixel is either covered (it takes the
    string's colour) or untouched. Font sizes are drawn uniformly from ``size`` = (lo, hi)
    pixels; by default (``size=None``) they scale with the image: from ``min(H, W) / 20``
    to ``min(H, W) / 5`` pixels, at least 8. Give fixed sizes when a model is trained on
    crops and applied to whole images, so that it sees text of the same size in both.
    """

    kind = "text"
    p_max = 0.95

    def __init__(self, p: Param, size: tuple[float, float] | None = None, *, clip: bool = False):
        super().__init__(p, clip=clip)
        if size is not None:
            size = _check_param("Text", "size", size, 1.0, unit=" (font size in pixels)")
            if not isinstance(size, tuple):
                size = (size, size)
            size = (int(round(size[0])), int(round(size[1])))
        self.size: tuple[int, int] | None = size

    def _spec_params(self):
        sizes = "" if self.size is None else f",{self.size[0]}-{self.size[1]}"
        return super()._spec_params() + sizes

    def _repr_params(self):
        return super()._repr_params() + ("" if self.size is None else f", size={self.size}")

    def _apply(self, x, gen):
        n, c, h, w = x.shape
        fractions = _per_image(self.p, gen, x).flatten().tolist()
        noisy = x.clone()
        for i, fraction in enumerate(fractions):
            seed = int(torch.randint(0, 2 ** 62, (1,), generator=gen, device=gen.device))
            mask, colour = _text_layer(h, w, c, fraction, np.random.default_rng(seed), self.size)
            mask = torch.from_numpy(mask).to(x.device)
            colour = torch.from_numpy(colour).to(x.device, x.dtype)
            noisy[i] = torch.where(mask, colour, x[i])
        return noisy, None


_TEXT_CHARACTERS = np.array(list(string.ascii_letters + string.digits + string.punctuation + " "))


@functools.lru_cache(maxsize=128)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _text_layer(h: int, w: int, c: int, fraction: float, rng: np.random.Generator,
                sizes: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw random strings until they cover ``fraction`` of an h x w image, with font
    sizes in ``sizes`` (pixels, inclusive), or scaled to the image when None.

    Returns the coverage mask (H, W) bool and the text colours (C, H, W) float32 in [0, 1].
    """
    covered = np.zeros((h, w), bool)
    colours = np.zeros((h, w, c), np.uint8)
    if sizes is None:
        smallest = max(8, min(h, w) // 20)
        largest = max(smallest + 1, min(h, w) // 5)
    else:
        smallest, largest = sizes
    target = fraction * h * w
    while covered.sum() < target:
        size = int(rng.integers(smallest, largest + 1))
        text = "".join(rng.choice(_TEXT_CHARACTERS, int(rng.integers(3, 21))))
        x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-size // 2, h))
        fill = rng.integers(0, 256, c).astype(np.uint8)
        glyphs, (left, top) = _render(text, _font(size))
        rows, cols = _overlap(y0 + top, glyphs.shape[0], h), _overlap(x0 + left, glyphs.shape[1], w)
        if rows is None or cols is None:
            continue
        (image_rows, glyph_rows), (image_cols, glyph_cols) = rows, cols
        ink = glyphs[glyph_rows, glyph_cols]
        covered[image_rows, image_cols] |= ink
        colours[image_rows, image_cols][ink] = fill
    return covered, np.ascontiguousarray(colours.transpose(2, 0, 1), dtype=np.float32) / 255.0


def _render(text: str, font) -> tuple[np.ndarray, tuple[int, int]]:
    """The pixels a string covers (bool array, no anti-aliasing) and their offset from the
    drawing position."""
    left, top, right, bottom = ImageDraw.Draw(Image.new("1", (1, 1))).textbbox((0, 0), text, font=font)
    canvas = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    draw = ImageDraw.Draw(canvas)
    draw.fontmode = "1"  # no anti-aliasing: a pixel is covered or not
    draw.text((-left, -top), text, fill=255, font=font)
    return np.asarray(canvas) > 0, (left, top)


def _overlap(start: int, length: int, size: int) -> tuple[slice, slice] | None:
    """Slices of the image and of a glyph block placed at ``start`` where they overlap."""
    lo, hi = max(start, 0), min(start + length, size)
    if hi <= lo:
        return None
    return slice(lo, hi), slice(lo - start, hi - start)


#: Spec names and the classes they build.
