"""The noise level function estimate against the real noise of PolyU, per camera and brightness.

PolyU (real noisy photos of 5 cameras, each with a clean reference: the mean of many
shots of the static scene; pairs share a file name under ``clean/`` and ``noisy/``) is a
test set: nothing is fitted on it. For every pair, per brightness bin of the clean pixels
(the 12 bins of :mod:`denoise.noise_level`, all channels pooled) and per camera:

* **true**: the standard deviation of the residual noisy - clean;
* **true < 8 px**: the same for the residual minus its 8x8 block means, the part of the
  noise finer than the estimator's blocks (what is left out is correlated over more than 8
  pixels: the estimator extrapolates it, it cannot measure it);
* **ours**: the root mean square over those pixels of
  :func:`denoise.noise_level.estimate_noise_level`'s per-pixel map (``to_map``) of the
  noisy photo alone;
* **estimate_sigma**: the wavelet MAD estimate of :func:`denoise.estimate.estimate_sigma`,
  one number per photo.

Writes a markdown report and a figure (the NLF curves per camera), both atomically:

    python benchmarks/noise_level_polyu.py            # all 100 pairs
    python benchmarks/noise_level_polyu.py --every 10 --out /tmp/nl   # a quick look
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

from denoise.errors import DenoiseError, InputError
from denoise.estimate import estimate_sigma
from denoise.evaluation.testsets import data_root, photo_pairs, repo_root
from denoise.io import read_image
from denoise.noise_level import BINS, BLOCK, estimate_noise_level
from denoise.utils import output_file, write_text

#: What each pooled statistic sums, per camera and bin.
FIELDS = ("count", "res", "res2", "fine2", "ours2", "mad2")


def fine_residual(res: torch.Tensor) -> torch.Tensor:
    """The residual minus the mean of its 8x8 block (the image cropped to whole blocks)."""
    h, w = (s // BLOCK * BLOCK for s in res.shape[-2:])
    res = res[..., :h, :w]
    means = F.avg_pool2d(res, BLOCK)
    return res - F.interpolate(means, scale_factor=BLOCK, mode="nearest")


def measure(clean: torch.Tensor, noisy: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-bin sums (BINS,) of the fields of :data:`FIELDS` for one pair (1, C, H, W), plus
    ``image`` (true, ours, estimate_sigma) for the whole photo (0-1 scale)."""
    level = estimate_noise_level(noisy)
    ours = level.to_map(noisy).double()
    mad = float(estimate_sigma(noisy))
    res = (noisy - clean).double()
    fine = fine_residual(res)
    h, w = fine.shape[-2:]
    bins = (clean.double() * BINS).long().clamp(0, BINS - 1)
    sums = {"count": torch.ones_like(res), "res": res, "res2": res ** 2, "ours2": ours ** 2,
            "mad2": torch.full_like(res, mad ** 2)}
    out = {k: torch.zeros(BINS, dtype=torch.float64).index_add_(0, bins.flatten(), v.flatten())
           for k, v in sums.items()}
    out["fine2"] = torch.zeros(BINS, dtype=torch.float64).index_add_(
        0, bins[..., :h, :w].flatten(), (fine ** 2).flatten())
    # the fine residual covers whole blocks only: scale its sum to the bin's full count
    cropped = torch.zeros(BINS, dtype=torch.float64).index_add_(
        0, bins[..., :h, :w].flatten(), torch.ones(fine.numel(), dtype=torch.float64))
    out["fine2"] = out["fine2"] * out["count"] / cropped.clamp_min(1)
    out["image"] = torch.tensor([float(res.std()), float(ours.pow(2).mean().sqrt()), mad])
    return out


def std_table(s: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-bin standard deviations (0-255 scale) of pooled sums."""
    n = s["count"].clamp_min(1)
    mean = s["res"] / n
    return {"true": (s["res2"] / n - mean ** 2).clamp_min(0).sqrt() * 255,
            "fine": (s["fine2"] / n).sqrt() * 255, "ours": (s["ours2"] / n).sqrt() * 255,
            "mad": (s["mad2"] / n).sqrt() * 255, "share": s["count"] / s["count"].sum()}


def overall(s: dict[str, torch.Tensor]) -> dict[str, float]:
    """The same over all bins (0-255 scale)."""
    total = {k: v.sum(0, keepdim=True) for k, v in s.items() if k in FIELDS}
    return {k: float(v[0]) for k, v in std_table(total).items() if k != "share"}


def report(cameras: dict[str, dict], images: dict[str, list], command: str, seconds: float) -> str:
    lines = ["# Noise level function vs the real noise of PolyU", "",
             f"`{command}` ({seconds:.0f} s). PolyU is a test set: nothing was fitted on it. "
             "Levels on the 0-255 scale. *true*: std of noisy - clean per brightness bin of the "
             "clean pixels (all channels pooled); *true < 8 px*: std of that residual minus its "
             "8x8 block means; *ours*: RMS of `estimate_noise_level(noisy).to_map(noisy)` over "
             "the same pixels; *estimate_sigma*: the wavelet MAD estimate (one per photo). "
             "See the script's docstring.", "",
             "## Whole photos", "",
             "| camera | photos | true | true < 8 px | ours | ours / true | estimate_sigma | "
             "estimate_sigma / true | per-photo ours / true (median, min-max) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, sums in list(cameras.items()):
        o = overall(sums)
        ratio = torch.tensor([ours / true for true, ours, _ in images[name]])
        lines.append(f"| {name} | {len(images[name])} | {o['true']:.2f} | {o['fine']:.2f} | {o['ours']:.2f} | "
                     f"{o['ours'] / o['true']:.2f} | {o['mad']:.2f} | {o['mad'] / o['true']:.2f} | "
                     f"{ratio.median():.2f} ({ratio.min():.2f}-{ratio.max():.2f}) |")
    for name, sums in cameras.items():
        t = std_table(sums)
        lines += ["", f"## {name}", "", "| brightness | pixels | true | true < 8 px | ours | ours / true | "
                  "estimate_sigma |", "|---|---|---|---|---|---|---|"]
        for b in range(BINS):
            if t["share"][b] < 0.002:
                continue
            lines.append(f"| {b / BINS:.2f}-{(b + 1) / BINS:.2f} | {100 * t['share'][b]:.1f} % | "
                         f"{t['true'][b]:.2f} | {t['fine'][b]:.2f} | {t['ours'][b]:.2f} | "
                         f"{t['ours'][b] / t['true'][b]:.2f} | {t['mad'][b]:.2f} |")
    return "\n".join(lines + [""])


def plot(path: Path, cameras: dict[str, dict]) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.2 * len(cameras), 3.2))
    axes = fig.subplots(1, len(cameras), squeeze=False)[0]
    centers = (torch.arange(BINS) + 0.5) / BINS
    for ax, (name, sums) in zip(axes, cameras.items()):
        t = std_table(sums)
        keep = t["share"] >= 0.002
        for key, label, style in (("true", "true (noisy - clean)", dict(color="black", lw=2)),
                                  ("fine", "true, finer than 8 px", dict(color="gray", ls=":")),
                                  ("ours", "estimate_noise_level", dict(color="C0", ls="--", marker="o", ms=3)),
                                  ("mad", "estimate_sigma", dict(color="C3", ls="-."))):
            ax.plot(centers[keep], t[key][keep], label=label, **style)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("brightness (clean)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("noise std (0-255)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    with output_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, help="the PolyU folder (default: PolyU in the data folder)")
    p.add_argument("--every", type=int, default=1, help="use every N-th pair (default: all)")
    p.add_argument("--out", type=Path, help="report folder (default: benchmarks/results)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        root = data_root()
        folder = args.data or (root / "PolyU" if root is not None else None)
        if folder is None or not folder.is_dir():
            raise InputError("PolyU not found: pass --data or set DENOISE_DATA to the image data folder")
        found = photo_pairs(folder)[::max(1, args.every)]
        cameras: dict[str, dict] = {}
        images: dict[str, list] = defaultdict(list)
        for i, (camera, clean_path, noisy_path) in enumerate(found, 1):
            clean, noisy = read_image(clean_path)[0], read_image(noisy_path)[0]
            if clean.shape != noisy.shape:
                raise InputError(f"{clean_path.name}: clean and noisy sizes differ")
            sums = measure(clean, noisy)
            images[camera].append(sums.pop("image").mul(255).tolist())
            into = cameras.setdefault(camera, {k: torch.zeros(BINS, dtype=torch.float64) for k in FIELDS})
            for k in FIELDS:
                into[k] += sums[k]
            true, ours, mad = images[camera][-1]
            print(f"[{i}/{len(found)}] {clean_path.name}: true {true:.2f}, ours {ours:.2f}, "
                  f"estimate_sigma {mad:.2f}", flush=True)
        cameras = dict(sorted(cameras.items()))
        out = args.out or (repo_root() or Path.cwd()) / "benchmarks" / "results"
        out.mkdir(parents=True, exist_ok=True)
        command = "python benchmarks/noise_level_polyu.py" + "".join(
            f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv))
        plot(out / "noise_level_polyu.png", cameras)
        text = report(cameras, images, command, time.perf_counter() - start)
        write_text(out / "noise_level_polyu.md", text + "\n![NLF per camera](noise_level_polyu.png)\n")
    except DenoiseError as exc:
        print(f"noise_level_polyu: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out / 'noise_level_polyu.md'} and {out / 'noise_level_polyu.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
