"""``denoise demo`` and ``denoise bench``."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import OutputError
from ..evaluation.bench import PROTOCOL
from ..inference import DEFAULT
from .args import comma_list, paragraphs, positive_int, sigma_value


def register(sub) -> None:
    _add_demo(sub)
    _add_bench(sub)


def _add_demo(sub) -> None:
    from ..evaluation.demo import DEMO_IMAGES

    p = sub.add_parser(
        "demo", help="compare every available model on bundled photos",
        description="Add Gaussian noise to photos bundled with scikit-image (scaled down), run "
                    "every available model, print PSNR/SSIM/seconds, and write a comparison sheet "
                    "per photo, results.md and results.json into --out (its files are replaced).")
    p.add_argument("--out", default="demo_out", metavar="DIR",
                   help="output folder, created if missing (default demo_out)")
    p.add_argument("--models", type=comma_list(), default=None, metavar="A,B,...",
                   help="models to compare (default: every available one, see 'denoise models')")
    p.add_argument("--sigma", type=sigma_value, default=25.0,
                   help="Gaussian noise level on the 0-255 scale (default 25)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    p.add_argument("--images", type=comma_list(), default=list(DEMO_IMAGES), metavar="A,B,...",
                   help=f"scikit-image photos (default {','.join(DEMO_IMAGES)})")
    p.add_argument("--size", type=positive_int, default=256, metavar="N",
                   help="scale photos down so the longer side is at most N pixels (default 256)")
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda|mps",
                   help="where the models run (default auto: CUDA, else MPS, else the CPU)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """``denoise demo``: run the demo, print its table and where the files went."""
    from ..evaluation.demo import run_demo

    start = time.perf_counter()
    from ..inference import resolve_device

    device = resolve_device(args.device)
    result = run_demo(args.out, models=args.models, sigma=args.sigma, seed=args.seed,
                      images=args.images, size=args.size, progress=not args.quiet, device=str(device))
    print(f"Gaussian noise sigma={args.sigma:g} (0-255 scale), seed {args.seed}, device {device}; "
          f"PSNR in dB (higher is better)\n")
    print(result.table())
    print(f"\nwrote {len(result.files)} files to {args.out} (comparison sheets: "
          f"{', '.join(f'{n}.png' for n in result.images)}; results.md; results.json) "
          f"in {time.perf_counter() - start:.0f} s")
    return 0



def _add_bench(sub) -> None:
    from ..evaluation.sr_report import SR_PROTOCOL

    p = sub.add_parser(
        "bench", help="mean PSNR/SSIM on test sets, beside the published figures",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=paragraphs("Benchmark denoisers (--task denoise, the default) on folders of clean "
                               "images, or super-resolution models (--task sr) on the SR literature's "
                               "test inputs, with the protocol of the published tables."),
        epilog="Protocol (the one of the published tables):\n" + PROTOCOL
               + "\nProtocol of --task sr (the SR papers'):\n" + SR_PROTOCOL)
    p.add_argument("--task", choices=("denoise", "sr"), default="denoise",
                   help="denoise (default) or sr: super-resolution on SR_LR (Set5, Set14)")
    p.add_argument("--data", type=comma_list(), required=True, metavar="SET[,SET...]",
                   help="test sets: folders, or names of folders under the data root "
                        "($DENOISE_DATA or ../shared/data), e.g. Set12,BSD68,CBSD68,Kodak24; with "
                        "--task sr: Set5,Set14 (under SR_LR) or folders holding HR/xS and LR/xS")
    p.add_argument("--scale", type=comma_list(), default=None, metavar="S[,S...]",
                   help="--task sr only: upscaling factors, 2, 3 and/or 4 (default 2,3,4)")
    p.add_argument("--sigma", type=comma_list(sigma_value), default=None,
                   metavar="S[,S...]", help="noise levels on the 0-255 scale (default 15,25,50)")
    p.add_argument("--noise", action="append", default=None, metavar="SPEC",
                   help="a noise spec instead of Gaussian sigmas, e.g. gaussian:25+saltpepper:0.05 or "
                        "camera:jpeg (repeat for several; the published figures are then not shown)")
    p.add_argument("--model", type=comma_list(), default=[DEFAULT], metavar="NAME[,NAME...]",
                   help="models to compare (default: 'default'; with --task sr: bicubic); a name "
                        "ending in '+x8' is the model's mean over the 8 flips and rotations")
    p.add_argument("--max-images", type=positive_int, default=None, metavar="N",
                   help="only the first N images of each set (the published figures are then "
                        "not shown)")
    p.add_argument("--seed", type=int, default=None, help="noise seed (default 0)")
    p.add_argument("--gray", action="store_true", help="convert color images to gray first")
    p.add_argument("--json", metavar="FILE", help="also write all results, per image, as JSON")
    p.add_argument("--md", metavar="FILE", help="also write the tables as markdown")
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda|mps",
                   help="where the models run (default auto: CUDA, else MPS, else the CPU)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_bench)


def _check_task_options(args: argparse.Namespace) -> None:
    """One-line errors for options of the other task; fill in the defaults of this one."""
    from ..errors import InputError
    from ..upscale import check_scale

    if args.task == "sr":
        given = [o for o, v in (("--sigma", args.sigma), ("--noise", args.noise), ("--seed", args.seed),
                                ("--gray", args.gray or None)) if v is not None]
        if given:
            raise InputError(f"{', '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} "
                             "to --task denoise, not --task sr")
        args.scale = [check_scale(int(s) if s.lstrip("-").isdigit() else s)
                      for s in args.scale or ["2", "3", "4"]]
    else:
        if args.scale is not None:
            raise InputError("--scale only applies to --task sr (denoise bench --task sr --scale 2,3,4)")
        args.sigma = args.sigma or [15.0, 25.0, 50.0]
        args.seed = 0 if args.seed is None else args.seed


def cmd_bench(args: argparse.Namespace) -> int:
    """``denoise bench``: run, print the markdown tables, write the requested files."""
    from ..evaluation.bench import bench
    from ..utils import write_json, write_text

    for path in (args.json, args.md):
        if path and not Path(path).parent.is_dir():
            raise OutputError(f"the folder of {path} does not exist; create it first")
    from ..inference import resolve_device

    _check_task_options(args)
    device = resolve_device(args.device)
    if not args.quiet:
        print(f"device {device}", file=sys.stderr)
    if args.task == "sr":
        from ..evaluation.sr_bench import sr_bench

        report = sr_bench(args.data, args.scale, args.model, max_images=args.max_images,
                          progress=not args.quiet, device=str(device))
    else:
        report = bench(args.data, args.noise or args.sigma, args.model, seed=args.seed, gray=args.gray,
                       max_images=args.max_images, progress=not args.quiet, device=str(device))
    text = report.to_markdown()
    print(text)
    if args.json:
        write_json(args.json, report.to_dict())
    if args.md:
        write_text(args.md, text + "\n")
    return 0


