"""Super-resolution out of its training conditions (issue 16, item 4).

Every SR model given (default: bicubic plus every shipped SR model whose weights exist) upscales
Set5 and Set14 HR images (``<data>/SR_LR/<set>/HR/xS``, already cropped to a multiple of S)
degraded three ways with our degradations (:mod:`denoise.degrade`), the LR rounded to 8 bits as a
stored image would be:

* ``bicubic`` -- ``bicubic_down(HR, S, uint8=True)``, MATLAB's imresize: the condition the SR
  literature (and our SR training) uses, and the one the published LR inputs were made with;
* ``decimation`` -- ``decimate(HR, S)``: the top-left pixel of each S x S block, no filter;
* ``blur σ=W + decimation`` -- ``blur_decimate(HR, S, W)``: Gaussian blur of W HR pixels, then
  the same decimation;
* at odd S, a diagnostic: decimation keeping the centre pixel of each block (no shift against
  the bicubic convention), which tells the aliasing's cost from the shift's.

Each output is scored by the papers' protocol (:func:`denoise.degrade.sr_psnr`: 8-bit output,
Y of BT.601, S pixels shaved per border), mean over the set; the drop is the PSNR on that
degradation minus the PSNR on bicubic. The figure shows crops of one image: HR, the LR enlarged
by pixel repetition (nearest), and per model its output and its error on Y (output - HR, x2,
mid-gray = 0) for each degradation. Every model runs through ``denoise.upscale``
(:func:`denoise.evaluation.sr_bench.sr_upscale`).

    python benchmarks/sr_mismatch.py --out benchmarks/results/sr_mismatch
    python benchmarks/sr_mismatch.py --models bicubic,MODEL[,...] --scales 2,4 --out ...
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from denoise.degrade import bicubic_down, blur_decimate, decimate, rgb_to_y, sr_psnr
from denoise.evaluation.report import detail_crop, markdown_table
from denoise.evaluation.sr_bench import load_sr_set, resolve_sr_model, sr_upscale
from denoise.models.registry import list_models
from denoise.upscale import DEFAULT_SR, entry_scales
from denoise.utils import output_file, write_text

BICUBIC = "bicubic"
#: The figure's image and crop: Barbara's face and scarf (edges, and stripes that alias).
DEFAULT_FIGURE, DEFAULT_AT = "Set14/img_002", (130, 400)
CENTRED = "decimation, centre pixel (diagnostic)"


def default_models() -> list[str]:
    """bicubic and every shipped SR model whose weights are here."""
    return [DEFAULT_SR] + [e.name for e in list_models(available_only=True, user=False)
                           if e.pretrained and entry_scales(e)]


def degradations(blurs: list[float]) -> dict:
    """Label -> function (HR, scale) -> LR rounded to 8 bits; bicubic first (the reference).
    The diagnostic keeps the centre pixel of each S x S block (odd S only, see
    :func:`applies`), the position a bicubic-convention upscaler assumes: decimation without
    the (S - 1)/2 pixel shift, aliasing only."""
    def q(x: torch.Tensor) -> torch.Tensor:
        return torch.floor(x.clamp(0, 1) * 255 + 0.5) / 255

    out = {BICUBIC: lambda hr, s: bicubic_down(hr, s, uint8=True),
           "decimation": lambda hr, s: q(decimate(hr, s))}
    for w in blurs:
        out[f"blur σ={w:g} + decimation"] = lambda hr, s, w=w: q(blur_decimate(hr, s, w))
    out[CENTRED] = lambda hr, s: hr[..., (s - 1) // 2::s, (s - 1) // 2::s].clone()
    return out


def applies(label: str, scale: int) -> bool:
    """Whether a degradation is run at a scale (the centred diagnostic: odd scales only)."""
    return label != CENTRED or scale % 2 == 1


def csv(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", type=csv, default=None,
                   help="SR models, comma-separated: names, user models or paths "
                        "(default: bicubic plus every shipped SR model with weights)")
    p.add_argument("--sets", type=csv, default=["Set5", "Set14"])
    p.add_argument("--scales", type=lambda t: [int(v) for v in csv(t)], default=[2])
    p.add_argument("--blur", type=lambda t: [float(v) for v in csv(t)], default=[1.0, 1.6],
                   help="Gaussian widths (HR pixels) of the blur + decimation degradations")
    p.add_argument("--figure", default=DEFAULT_FIGURE, metavar="SET/IMAGE",
                   help=f"image of the figure (default {DEFAULT_FIGURE}, Barbara), at the first scale")
    p.add_argument("--crop", type=int, default=128, help="side of the figure's crops in HR pixels")
    p.add_argument("--at", type=lambda t: tuple(int(v) for v in csv(t)), default=None, metavar="TOP,LEFT",
                   help=f"top-left corner of the crop (default {DEFAULT_AT} on the default image, "
                        "else the window with the most detail)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", default=None, metavar="PREFIX",
                   help="write PREFIX.md and PREFIX.png (e.g. benchmarks/results/sr_mismatch)")
    return p.parse_args(argv)


def evaluate(sets, scales, models, degs) -> tuple[list[dict], list[str]]:
    """Mean PSNR (Y) per (set, scale, degradation, model); notes on scales a model lacks."""
    rows, notes = [], []
    for m in models:
        lacking = [s for s in scales if s not in m.scales]
        if lacking:
            notes.append(f"{m.label}: upscales by {', '.join(f'x{s}' for s in m.scales)} only; "
                         f"{', '.join(f'x{s}' for s in lacking)} skipped")
    loaded = [(name, s, load_sr_set(name, s)[1]) for name in sets for s in scales]
    total = sum(len(images) for _, s, images in loaded for d in degs if applies(d, s))
    with tqdm(total=total, desc="sr_mismatch", unit="img") as bar:
        for name, s, images in loaded:
            for label, degrade in degs.items():
                scores = {m.label: [] for m in models if s in m.scales and applies(label, s)}
                for _, _, hr in images if scores else ():
                    lr = degrade(hr, s)
                    for m in models:
                        if s in m.scales:
                            scores[m.label].append(float(sr_psnr(sr_upscale(lr, s, m), hr, s)[0]))
                    bar.update()
                rows += [{"set": name, "scale": s, "degradation": label, "model": k,
                          "n": len(v), "psnr": float(np.mean(v))} for k, v in scores.items()]
    return rows, notes


def table(rows: list[dict], models: list[str]) -> str:
    ref = {(r["set"], r["scale"], r["model"]): r["psnr"] for r in rows if r["degradation"] == BICUBIC}
    found = {(r["set"], r["scale"], r["degradation"], r["model"]): r for r in rows}
    keys = list(dict.fromkeys((r["set"], r["scale"], r["degradation"]) for r in rows))
    body = []
    for name, s, deg in keys:
        n = next(r["n"] for r in rows if (r["set"], r["scale"], r["degradation"]) == (name, s, deg))
        cells = []
        for m in models:
            r = found.get((name, s, deg, m))
            cells += ([f"{r['psnr']:.2f}", "–" if deg == BICUBIC else f"{r['psnr'] - ref[(name, s, m)]:+.2f}"]
                      if r else ["–", "–"])
        body.append([name, f"x{s}", n, deg, *cells])
    header = ["set", "scale", "n", "LR made by", *(h for m in models for h in (f"{m} PSNR", f"{m} Δ"))]
    return markdown_table(header, body, align="lrrl" + "r" * 2 * len(models))


def summary(rows: list[dict], models: list[str], degs: list[str]) -> list[str]:
    """One line per model and scale: the drop per degradation, averaged over the sets."""
    ref = {(r["set"], r["scale"], r["model"]): r["psnr"] for r in rows if r["degradation"] == BICUBIC}
    lines = []
    for m in models:
        for s in dict.fromkeys(r["scale"] for r in rows):
            drops = {d: [r["psnr"] - ref[(r["set"], s, m)] for r in rows
                         if (r["model"], r["scale"], r["degradation"]) == (m, s, d)] for d in degs[1:]}
            parts = [f"{d} {np.mean(v):+.2f} dB" for d, v in drops.items() if v]
            if parts:
                lines.append(f"- {m} x{s}, mean over the sets of Δ: " + "; ".join(parts))
    return lines


def figure(path: Path, spec: str, scale: int, models, degs, side: int, at) -> str:
    """The crops sheet (PNG, atomic); returns a one-line caption."""
    from matplotlib.figure import Figure

    name, stem = spec.split("/", 1)
    images = load_sr_set(name, scale)[1]
    hr = next((hr for n, _, hr in images if n.startswith(stem)), None)
    if hr is None:
        raise SystemExit(f"--figure: no image {stem!r} in {name} x{scale}")
    top, left, side = (at[0], at[1], side) if at else detail_crop(hr, side)
    crop = (slice(None), slice(None), slice(top, top + side), slice(left, left + side))
    runs = [m for m in models if scale in m.scales]
    ncol = 2 + 2 * len(runs)
    y_hr = rgb_to_y(hr)

    def show(ax, x, title, error=False):
        img = x[0].permute(1, 2, 0).clamp(0, 1).numpy()
        ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])

    degs = {k: f for k, f in degs.items() if applies(k, scale)}
    fig = Figure(figsize=(2.1 * ncol, 2.35 * len(degs) + 0.4))
    axes = fig.subplots(len(degs), ncol, squeeze=False)
    for i, (label, degrade) in enumerate(degs.items()):
        lr = degrade(hr, scale)
        near = lr.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
        show(axes[i, 0], hr[crop], "HR")
        show(axes[i, 1], near[crop], f"LR ({label}), nearest x{scale}")
        for j, m in enumerate(runs):
            sr = sr_upscale(lr, scale, m)
            p = float(sr_psnr(sr, hr, scale)[0])
            show(axes[i, 2 + 2 * j], sr[crop], f"{m.label}: {p:.2f} dB")
            err = 0.5 + 2 * (rgb_to_y(torch.floor(sr * 255 + 0.5) / 255) - y_hr)
            show(axes[i, 3 + 2 * j], err[crop], f"{m.label}: error on Y x2")
    fig.suptitle(f"{spec} x{scale}, HR crop {side}x{side} at ({top}, {left}); rows: how the LR was made",
                 fontsize=10)
    fig.tight_layout()
    with output_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    return f"{spec} at x{scale}, crop {side}x{side} at (top {top}, left {left})"


def report(rows, notes, models, degs, scales, caption, png_name, seconds, command) -> str:
    out = ["# Super-resolution out of its training conditions (Set5, Set14)", "",
           "Reproduce (every model with weights here; add `--models` for others):", "",
           f"    {command}", "",
           ("LR images made from the HR images of SR_LR (`HR/xS`) with our degradations, rounded to 8 bits: "
            "`bicubic` = `bicubic_down(HR, S, uint8=True)` (MATLAB's imresize, the training condition of "
            "bicubic-trained SR models); `decimation` = `decimate(HR, S)` (top-left pixel of each S x S "
            "block, no filter: fine detail aliases); `blur σ=W + decimation` = `blur_decimate(HR, S, W)` "
            "(Gaussian blur of W HR pixels, then decimation); at odd S, the diagnostic "
            f"`{CENTRED}` keeps the centre pixel of each S x S block instead of the top-left one "
            "(not one of our degradations: the same aliasing without the shift explained below). "
            "Every model upscales through "
            "`denoise.upscale`; PSNR on Y (BT.601, output rounded to 8 bits, S pixels shaved per border), "
            "mean over the set. Δ = PSNR on that LR minus PSNR on the bicubic LR (dB)."), "",
           table(rows, [m.label for m in models]), "", *summary(rows, [m.label for m in models], list(degs)), ""]
    if notes:
        out += ["Notes:", "", *(f"- {n}" for n in notes), ""]
    out += [("How to read it: `decimate` keeps HR pixel (S i, S j) while a bicubic-convention "
            "upscaler (MATLAB's imresize, and models trained on its LR) places LR pixel i at HR "
            "position S i + (S - 1)/2, so on top of the aliasing the outputs are shifted by "
            "(S - 1)/2 HR pixels (half a pixel at x2): edges leave a relief in the error maps. "
            "The blurred LRs have that shift too, and lack the detail the blur removed, which an "
            "upscaler made for bicubic LR does not restore (over-smoothed output). At odd scales "
            f"the `{CENTRED}` row separates the two costs of decimation: its Δ is the aliasing, "
            "the rest of the decimation row's Δ the shift."), "",
            f"![crops]({png_name})", "",
            (f"Figure: {caption}. Columns: HR; the LR enlarged by pixel repetition; per model its "
            "output (PSNR of the whole image) and its error on Y (output - HR, x2, mid-gray = 0). "
            "Rows: how the LR was made."), "",
            (f"Scales: {', '.join(f'x{s}' for s in scales)}; {torch.get_num_threads()} torch thread(s); "
            f"{seconds:.0f} s in all.")]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    models = [resolve_sr_model(n) for n in (args.models or default_models())]
    ready = [m for m in models if not m.missing]
    notes = [f"{m.label}: not run: {m.missing}" for m in models if m.missing]
    if not ready:
        print("no model can run: " + "; ".join(notes), file=sys.stderr)
        return 1
    degs = degradations(args.blur)
    rows, lacking = evaluate(args.sets, args.scales, ready, degs)
    notes += lacking
    png = Path(f"{args.out}.png") if args.out else Path("sr_mismatch.png")
    at = args.at or (DEFAULT_AT if args.figure == DEFAULT_FIGURE else None)
    caption = figure(png, args.figure, args.scales[0], ready, degs, args.crop, at)
    given = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python benchmarks/sr_mismatch.py", *map(shlex.quote, given)])
    text = report(rows, notes, ready, degs, args.scales, caption, png.name,
                  time.perf_counter() - start, command)
    print(text)
    if args.out:
        write_text(f"{args.out}.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
