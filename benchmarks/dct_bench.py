"""The sliding-window DCT denoiser against BM3D: PSNR on the standard sets and speed.

Two runs under the protocol of ``denoise bench`` (:data:`denoise.evaluation.bench.PROTOCOL`: unclipped
AWGN seeded per image, true sigma given, outputs clipped, mean per-image PSNR):

1. ``dct`` and ``bm3d`` on the same images (the first ``--bm3d-max-images`` of each set,
   BM3D being slow): PSNR side by side, seconds per megapixel of each, and their ratio.
2. ``dct`` alone on the whole sets (or the first ``--max-images``), and on the color sets
   of ``--per-channel-sets`` also without the color transform (RGB channels one by one).

    python benchmarks/dct_bench.py --sets Set12 BSD68 CBSD68 --sigmas 15 25 50 \\
        --bm3d-max-images 3 --out dct_bench.md

Times are wall-clock seconds of the forward passes on this machine; only their ratio,
measured in the same run, is meaningful across machines.
"""
from __future__ import annotations

import argparse
import platform
import sys

import torch

from denoise.evaluation.bench import (
    BenchReport,
    SetResult,
    add_noise,
    bench,
    load_test_set,
    run_model,
    score_image,
)
from denoise.models import create_model
from denoise.utils import write_text


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sets", nargs="+", default=["Set12", "BSD68", "CBSD68"],
                   help="test sets: folder names under the data root, or folders")
    p.add_argument("--sigmas", nargs="+", type=float, default=[15, 25, 50], help="0-255 scale")
    p.add_argument("--max-images", type=int, default=None,
                   help="dct-only run: first N images of each set (default: all)")
    p.add_argument("--bm3d-max-images", type=int, default=3,
                   help="side-by-side run: first N images of each set (0 skips BM3D)")
    p.add_argument("--per-channel-sets", nargs="*", default=["CBSD68"],
                   help="color sets on which dct also runs without its color transform")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", default=None, help="also write the markdown report to this file")
    return p.parse_args(argv)


def speed_ratio(report: BenchReport, model: str = "dct", reference: str = "bm3d") -> str:
    """How many times faster ``model`` ran than ``reference``, in seconds per megapixel
    over all the images both ran."""
    def per_mp(name: str) -> float:
        runs = [r for r in report.results if r.model == name]
        return sum(r.seconds for r in runs) / sum(r.megapixels for r in runs)

    ours, ref = per_mp(model), per_mp(reference)
    return (f"**{model} is {ref / ours:.1f}x faster than {reference}**: {ours:.3f} vs {ref:.3f} "
            "s/MP on the same images in the same run.")


def per_channel_results(sets, sigmas, *, seed: int, max_images: int | None) -> list[SetResult]:
    """dct with ``color_transform=False``, labelled "dct per channel", same protocol and noise."""
    model = create_model("dct", color_transform=False)
    results = []
    for spec in sets:
        label, images = load_test_set(spec, max_images=max_images)
        for sigma in sigmas:
            result = SetResult(label, sigma, "dct per channel")
            for i, (name, clean) in enumerate(images):
                noisy, level = add_noise(clean, sigma, seed, i)
                out, seconds = run_model(model, noisy, level)
                result.images.append(score_image(name, out, clean, seconds))
            results.append(result)
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sections = [f"# DCT vs BM3D\n\nMachine: {platform.processor() or platform.machine()}, "
                f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, seed {args.seed}."]
    if args.bm3d_max_images > 0:
        both = bench(args.sets, args.sigmas, ["dct", "bm3d"], seed=args.seed,
                     max_images=args.bm3d_max_images)
        sections += [f"## dct and bm3d on the first {args.bm3d_max_images} images of each set",
                     both.to_markdown(), speed_ratio(both)]
    alone = bench(args.sets, args.sigmas, ["dct"], seed=args.seed, max_images=args.max_images)
    alone.results += per_channel_results(args.per_channel_sets, args.sigmas, seed=args.seed,
                                         max_images=args.max_images)
    sections += ["## dct on the sets" + (f" (first {args.max_images} images)" if args.max_images else ""),
                 alone.to_markdown()]
    text = "\n\n".join(sections) + "\n"
    sys.stdout.write(text)
    if args.out:
        write_text(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
