"""Bicubic super-resolution baseline on the SR literature's own test inputs (SR_LR).

Two tables, on Set5 and Set14 at x2, x3 and x4 (``<data>/SR_LR/<set>/{HR,LR}/xS``):

1. Bicubic upscaling of the published low-resolution inputs, ``imresize(LR, s)`` (MATLAB
   convention, :func:`denoise.degrade.imresize`), scored by the papers' protocol
   (:func:`denoise.degrade.sr_psnr` / :func:`~denoise.degrade.sr_ssim`: 8-bit output, Y of
   BT.601, ``s`` pixels shaved per border), mean over the images, beside the figures the
   papers print for bicubic.
2. How well our downscaler reproduces the published inputs: ``bicubic_down(HR, s)`` rounded to
   8 bits against ``LR``, share of the samples (pixels x channels) equal, within one grey level,
   and the largest deviation; in float (rounded once) and with ``uint8=True`` (MATLAB's uint8
   path, rounded after each pass), and Pillow's bicubic (:func:`~denoise.degrade.pil_bicubic`)
   for comparison.

    python benchmarks/sr_baseline.py --out benchmarks/results/sr_baseline.md
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from denoise.degrade import bicubic_down, imresize, pil_bicubic, sr_psnr, sr_ssim
from denoise.evaluation.testsets import data_root
from denoise.io import read_image
from denoise.utils import write_text

#: Bicubic PSNR (dB) / SSIM on Y as the SR papers print them (e.g. Kim et al., VDSR, 2016).
LITERATURE = {("Set5", 2): (33.66, 0.9299), ("Set5", 3): (30.39, 0.8682), ("Set5", 4): (28.42, 0.8104),
              ("Set14", 2): (30.24, 0.8688), ("Set14", 3): (27.55, 0.7742), ("Set14", 4): (26.00, 0.7027)}


KINDS = {"float": "float", "uint8": "uint8", "pil": "Pillow"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sets", nargs="+", default=["Set5", "Set14"])
    p.add_argument("--scales", nargs="+", type=int, default=[2, 3, 4])
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", default=None, help="also write the markdown report to this file")
    return p.parse_args(argv)


def _levels(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x.clamp(0, 1) * 255 + 0.5)


def evaluate(root, name: str, s: int) -> dict:
    folder = root / name
    hr_files = sorted((folder / "HR" / f"x{s}").glob("*.png"))
    if not hr_files:
        raise SystemExit(f"no images in {folder}/HR/x{s}")
    psnrs, ssims = [], []
    stats = {k: [0, 0, 0.0] for k in KINDS}                  # equal, within 1, max
    total = 0
    for f in hr_files:
        hr = read_image(f)[0].double()
        lr = read_image(folder / "LR" / f"x{s}" / f.name.replace("_HR", "_LR"))[0].double()
        sr = imresize(lr, s)
        psnrs.append(sr_psnr(sr, hr, s).item())
        ssims.append(sr_ssim(sr, hr, s).item())
        target = _levels(lr)
        total += target.numel()
        for key, down in (("float", bicubic_down(hr, s)), ("uint8", bicubic_down(hr, s, uint8=True)),
                          ("pil", pil_bicubic(hr, s))):
            diff = (_levels(down) - target).abs()
            stats[key][0] += int((diff == 0).sum())
            stats[key][1] += int((diff <= 1).sum())
            stats[key][2] = max(stats[key][2], diff.max().item())
    return {"set": name, "scale": s, "images": len(hr_files), "psnr": float(np.mean(psnrs)),
            "ssim": float(np.mean(ssims)), "total": total,
            **{f"{k}_{m}": (v[i] / total if i < 2 else v[i])
               for k, v in stats.items() for i, m in enumerate(("equal", "within1", "max"))}}


def report(rows: list[dict]) -> str:
    out = ["# Bicubic SR baseline on SR_LR (Set5, Set14)", "",
           ("Bicubic upscaling `imresize(LR, s)` (MATLAB convention) of the literature's own LR "
            "inputs; PSNR/SSIM on Y (BT.601, as `rgb2ycbcr`), output rounded to 8 bits, `s` pixels "
            "shaved per border; mean over the images. Literature: the bicubic rows of the SR papers "
            "(e.g. VDSR, Kim et al. 2016)."), "",
           "| set | scale | images | PSNR (dB) | literature | diff | SSIM | literature |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lit = LITERATURE.get((r["set"], r["scale"]), (float("nan"), float("nan")))
        out.append(f"| {r['set']} | x{r['scale']} | {r['images']} | {r['psnr']:.3f} | {lit[0]:.2f} | "
                   f"{r['psnr'] - lit[0]:+.3f} | {r['ssim']:.4f} | {lit[1]:.4f} |")
    out += ["", "## Reproducing the published LR inputs from HR", "",
            ("`bicubic_down(HR/xS, s)` rounded to 8 bits against `LR/xS`: share of all samples "
             "(pixels x channels) equal / within one grey level, and the largest deviation. "
             "float: computed in float64, rounded once; uint8: `uint8=True`, MATLAB's path for "
             "uint8 images (8-bit levels after each pass); Pillow: `pil_bicubic`."), "",
            "| set | scale | samples | " + " | ".join(f"{KINDS[k]}: {m}" for k in KINDS
                                                      for m in ("equal", "within 1", "max")) + " |",
            "|---|---|---" + "|---" * 3 * len(KINDS) + "|"]
    for r in rows:
        cells = [f"{r[f'{k}_equal']:.2%} | {r[f'{k}_within1']:.3%} | {r[f'{k}_max']:.0f}" for k in KINDS]
        out.append(f"| {r['set']} | x{r['scale']} | {r['total']} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    root = data_root()
    if root is None or not (root / "SR_LR").is_dir():
        print("SR_LR not found in the data folder (set DENOISE_DATA)", file=sys.stderr)
        return 1
    rows = [evaluate(root / "SR_LR", name, s) for name in args.sets for s in args.scales]
    text = report(rows)
    print(text)
    if args.out:
        write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
