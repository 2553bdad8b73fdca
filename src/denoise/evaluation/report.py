"""Reports: markdown tables, comparison sheets (figures) and result files.

The figures are drawn on a bare :class:`matplotlib.figure.Figure` (no pyplot, so no global
backend state and no display needed); files are written atomically.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..utils import output_file


def mean(values) -> float:
    """The mean of some numbers (NaN for none)."""
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


class ImageTotals:
    """Totals over ``self.images`` (scores with psnr, ssim, seconds and pixels), shared by
    the denoising and the super-resolution benchmark results."""

    images: list

    @property
    def psnr(self) -> float:
        return mean(s.psnr for s in self.images)

    @property
    def ssim(self) -> float:
        return mean(s.ssim for s in self.images)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.images)

    @property
    def megapixels(self) -> float:
        return sum(s.pixels for s in self.images) / 1e6


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]],
                   align: str | None = None) -> str:
    """A GitHub-flavoured markdown table whose columns line up in a terminal.

    Args:
        header: column titles.
        rows: the cells, converted with ``str``; every row has ``len(header)`` cells.
        align: one letter per column, "l" or "r" (default: first column left, others right).
    """
    ncol = len(header)
    if any(len(r) != ncol for r in rows):
        raise ValueError("every row needs one cell per header column")
    align = align or "l" + "r" * (ncol - 1)
    cells = [[_cell(h) for h in header]] + [[_cell(c) for c in r] for r in rows]
    widths = [max(3, *(len(r[j]) for r in cells)) for j in range(ncol)]

    def line(row: Sequence[str]) -> str:
        padded = (c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2))
                          for w, a in zip(widths, align)) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _cell(value: object) -> str:
    """A table cell: one line, with "|" escaped so it cannot split the cell."""
    return " ".join(str(value).split()).replace("|", "\\|")


@dataclass
class Panel:
    """One image of a comparison sheet: a title, the image (1, C, H, W) and a caption."""

    title: str
    image: torch.Tensor
    caption: str = ""


def to_display(x: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) or (C, H, W) tensor -> (H, W) or (H, W, 3) float array clipped to [0, 1]."""
    x = x.detach().float().cpu()
    if x.dim() == 4:
        x = x[0]
    a = x.clamp(0, 1).permute(1, 2, 0).numpy()
    return a[:, :, 0] if a.shape[2] == 1 else a


def detail_crop(x: torch.Tensor, size: int) -> tuple[int, int, int]:
    """The ``size`` x ``size`` window of ``x`` (1, C, H, W) with the most gradient energy.

    Returns ``(top, left, side)``; ``side`` is ``size`` capped by the image size. The
    zoomed row of a comparison sheet shows this window, where denoisers differ most.
    """
    h, w = x.shape[-2:]
    side = max(1, min(size, h, w))
    g = x.detach().float().mean(dim=1, keepdim=True)
    energy = torch.zeros_like(g)
    energy[..., :, 1:] += (g[..., :, 1:] - g[..., :, :-1]).abs()
    energy[..., 1:, :] += (g[..., 1:, :] - g[..., :-1, :]).abs()
    # Sum over every side x side window at once, then take the best one.
    stride = max(1, side // 8)
    window_sums = F.avg_pool2d(energy, side, stride=stride)
    idx = int(window_sums.flatten().argmax())
    top, left = divmod(idx, window_sums.shape[-1])
    return top * stride, left * stride, side


def comparison_sheet(path: str | Path, panels: Sequence[Panel], *, title: str = "",
                     crop: tuple[int, int, int] | None = None, dpi: int = 100,
                     max_columns: int = 4) -> Path:
    """Write a PNG with the panels side by side and, when ``crop`` is given, a zoomed row.

    Args:
        path: output PNG file (replaced if it exists).
        panels: the images to compare, e.g. noisy input, each method's output, clean.
        title: a line above the sheet.
        crop: ``(top, left, side)`` of the square region shown enlarged in a second row and
            outlined in the first; see :func:`detail_crop`.
        dpi: resolution; panels are at least 320 pixels wide, titles 12 points.
        max_columns: panels per row; more panels wrap onto further rows.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    if not panels:
        raise ValueError("a comparison sheet needs at least one panel")
    h, w = panels[0].image.shape[-2:]
    ncol = min(len(panels), max_columns)
    groups = [panels[i:i + ncol] for i in range(0, len(panels), ncol)]
    per_group = 2 if crop else 1
    col_w = max(3.2, min(w, 512) / dpi)  # readable at a glance: at least 320 px per panel
    row_h = col_w * h / w
    height = sum(row_h + 0.7 + (col_w + 0.2 if crop else 0) for _ in groups) + (0.6 if title else 0)
    fig = Figure(figsize=(col_w * ncol, height))
    ratios = [row_h, col_w] * len(groups) if crop else [row_h] * len(groups)
    axes = fig.subplots(per_group * len(groups), ncol, squeeze=False,
                        gridspec_kw={"height_ratios": ratios})
    for g, group in enumerate(groups):
        for j in range(ncol):
            ax = axes[per_group * g, j]
            if j >= len(group):
                ax.axis("off")
                if crop:
                    axes[per_group * g + 1, j].axis("off")
                continue
            panel = group[j]
            img = to_display(panel.image)
            gray = dict(cmap="gray", vmin=0, vmax=1) if img.ndim == 2 else {}
            ax.imshow(img, interpolation="nearest", **gray)
            ax.set_title(panel.title + (f"\n{panel.caption}" if panel.caption else ""), fontsize=12)
            if crop:
                top, left, side = crop
                ax.add_patch(Rectangle((left - 0.5, top - 0.5), side, side, fill=False,
                                       edgecolor="yellow", linewidth=1.5))
                zoom = axes[per_group * g + 1, j]
                zoom.imshow(img[top:top + side, left:left + side], interpolation="nearest", **gray)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=14)
    fig.tight_layout()
    return _save_figure(fig, Path(path), dpi)


def _save_figure(fig, path: Path, dpi: int) -> Path:
    """Save a matplotlib figure atomically as PNG."""
    with output_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path
