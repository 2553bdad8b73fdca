"""Overlap-tiled inference: denoise images of any size in bounded memory.

The image is cut into a grid of overlapping tiles, the model runs on one tile at a time,
and each result is added into the output tensor in place, so at most one tile and its
result exist besides the input and the output.

Along each axis, a tile's output is first cropped by ``overlap`` pixels on every side that
is not an image edge: when ``overlap`` is at least the model's receptive field, what is
left equals the untiled output exactly, since the model saw everything that affects it.
Neighbouring cropped outputs still overlap by ``blend`` pixels, where linear ramps cross-
fade them, hiding seams for models whose influence reaches further than their stated
receptive field. The weights are separable and normalised per axis, so they sum to one
at every pixel and no weight map of the image is kept.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .errors import InputError, ModelError

#: Width of the cross-fade between neighbouring tiles, when the overlap allows it.
DEFAULT_BLEND = 16


@dataclass(frozen=True)
class Span:
    """One tile along one axis: the input [start, stop), the kept output [keep_start,
    keep_stop) and the blending weight of each kept pixel."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int
    weight: torch.Tensor


def _starts(length: int, tile: int, step: int) -> list[int]:
    """Tile starts from 0 to ``length - tile``, evenly spread, no gap larger than ``step``."""
    if length <= tile:
        return [0]
    count = math.ceil((length - tile) / step) + 1
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def axis_spans(length: int, tile: int, overlap: int, blend: int, align: int = 1) -> list[Span]:
    """Plan the tiles along one axis of ``length`` pixels.

    With ``align`` > 1 every tile starts at a multiple of it (models that pool or
    pixel-unshuffle by that factor see the same pixel grid as on the whole image), and the
    last tile reaches the end of the axis (up to ``align - 1`` pixels longer than ``tile``).
    Raises InputError when ``tile`` leaves no room between two crops of ``overlap``
    pixels, the ``blend`` ramp and the alignment.
    """
    step = tile - 2 * overlap - blend - (align - 1)
    if length > tile and step < 1:
        raise InputError(f"tile={tile} is too small for overlap={overlap}, blend={blend} and "
                         f"alignment {align}; use tile > {2 * overlap + blend + align - 1}")
    spans = []
    starts = _starts(length, tile, step)
    for i, start in enumerate(starts):
        start -= start % align
        stop = length if i == len(starts) - 1 else min(start + tile, length)
        keep_start = start + overlap if start > 0 else 0
        keep_stop = stop - overlap if stop < length else length
        spans.append(Span(start, stop, keep_start, keep_stop,
                          _ramp(keep_stop - keep_start, blend, start > 0, stop < length)))
    total = torch.zeros(length, dtype=torch.float64)
    for s in spans:
        total[s.keep_start:s.keep_stop] += s.weight
    return [Span(s.start, s.stop, s.keep_start, s.keep_stop, s.weight / total[s.keep_start:s.keep_stop])
            for s in spans]


def _ramp(size: int, blend: int, rise: bool, fall: bool) -> torch.Tensor:
    """Weights of ``size`` kept pixels: linear ramps of ``blend`` pixels on the inner sides.

    The values (k + 1/2) / blend never reach zero, and a rising and a falling ramp over
    the same pixels sum to one.
    """
    w = torch.ones(size, dtype=torch.float64)
    if blend > 0:
        ramp = ((torch.arange(size, dtype=torch.float64) + 0.5) / blend).clamp(max=1.0)
        if rise:
            w = torch.minimum(w, ramp)
        if fall:
            w = torch.minimum(w, ramp.flip(0))
    return w


def tiled(model: nn.Module, x: torch.Tensor, sigma: float | torch.Tensor | None = None, *,
          tile: int = 512, overlap: int | None = None, blend: int | None = None, scale: int | None = None,
          align: int | None = None,
          progress: bool = False, callback=None) -> torch.Tensor:
    """Run ``model(x, sigma)`` tile by tile and blend the results.

    Args:
        model: a model with the contract of :class:`denoise.models.base.Restorer`.
        x: images (N, C, H, W).
        sigma: noise level, passed to every tile as given (a noise map (N, C, H, W) is
            cropped with the tile). Choosing or estimating it is the caller's job
            (:func:`denoise.inference.restore` does it once per image).
        tile: side of the region of the image each tile contributes (pixels); the model
            sees that region plus ``overlap`` and ``blend`` pixels around it (clipped to
            the image), so any tile size works with any receptive field.
        overlap: pixels cropped from each tile output on the sides inside the image;
            defaults to the model's ``receptive_field``, which makes the result equal to
            the untiled one for models whose receptive field is exact.
        blend: width of the linear cross-fade between neighbours; defaults to
            ``min(overlap, DEFAULT_BLEND)``.
        scale: output pixels per input pixel along each side (default: the model's).
        align: tiles start at multiples of this (default: the model's ``alignment``).
        progress: show a progress bar over the tiles.
        callback: called as ``callback(done, total)`` after each tile (a front-end's
            progress bar); an exception it raises stops the run (a cancel).

    Returns:
        A new tensor (N, C, scale * H, scale * W). Runs without autograd.
    """
    from .models.base import contract

    c = contract(model) if overlap is None or scale is None or align is None else None
    overlap = c.receptive_field if overlap is None else overlap
    scale = c.scale if scale is None else scale
    align = c.alignment if align is None else align
    blend = min(overlap, DEFAULT_BLEND) if blend is None else blend
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1 or overlap < 0 or blend < 0:
        raise InputError(f"tile must be a positive integer and overlap, blend >= 0; "
                         f"got tile={tile!r}, overlap={overlap!r}, blend={blend!r}")
    n, ch, h, w = x.shape
    window = tile + 2 * overlap + blend + align - 1
    rows = axis_spans(h, window, overlap, blend, align)
    cols = axis_spans(w, window, overlap, blend, align)
    with torch.inference_mode():
        out = x.new_zeros(n, ch, h * scale, w * scale)
        total, done = len(rows) * len(cols), 0
        with _progress(total, progress) as bar:
            for r in rows:
                for c in cols:
                    _add_tile(out, model, x, sigma, r, c, scale)
                    bar.update(1)
                    done += 1
                    if callback is not None:
                        callback(done, total)
    return out


def _add_tile(out: torch.Tensor, model: nn.Module, x: torch.Tensor, sigma, r: Span, c: Span,
              scale: int) -> None:
    """Run the model on one tile and add its kept part, weighted, into ``out``."""
    if isinstance(sigma, torch.Tensor) and sigma.dim() == 4:
        sigma = sigma[:, :, r.start:r.stop, c.start:c.stop]
    result = model(x[:, :, r.start:r.stop, c.start:c.stop].contiguous(), sigma)
    expected = (x.shape[0], out.shape[1], scale * (r.stop - r.start), scale * (c.stop - c.start))
    if tuple(result.shape) != expected:
        raise ModelError(f"{type(model).__name__} returned shape {tuple(result.shape)} for a tile "
                         f"of shape {tuple(x.shape[:2])} x {r.stop - r.start} x {c.stop - c.start}; "
                         f"expected {expected} (scale {scale})")
    s = scale
    kept = result[:, :, s * (r.keep_start - r.start):s * (r.keep_stop - r.start),
                  s * (c.keep_start - c.start):s * (c.keep_stop - c.start)]
    weight = torch.outer(r.weight.repeat_interleave(s), c.weight.repeat_interleave(s)).to(out)
    out[:, :, s * r.keep_start:s * r.keep_stop, s * c.keep_start:s * c.keep_stop] += kept * weight


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc="tiles", unit="tile", leave=False)
