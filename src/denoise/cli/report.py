"""``denoise report``: regenerate RESULTS.md (every shipped model and the classical
baselines on the field's test sets, beside the published figures, with CPU costs and the
published architectures' costs measured in the same run; the shipped super-resolution
models and bicubic on the SR test sets), and optionally the ranking that ``default`` follows."""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ..errors import InputError
from .args import comma_list, paragraphs, positive_int, sigma_value

_DEFAULT_OUT = "benchmarks/results"
_NO_SR = "none"
_CELLS = "cells"


def sr_sets(text: str) -> list[str]:
    """``--sr-sets``: comma-separated SR test sets, or "none" (no SR part)."""
    return [] if text.strip().lower() == _NO_SR else comma_list()(text)


def sr_scale(text: str) -> int:
    """An SR scale: 2, 3 or 4."""
    from ..models.sr import SCALES

    if text.strip() not in {str(s) for s in SCALES}:
        raise argparse.ArgumentTypeError(f"expected a scale among {', '.join(map(str, SCALES))}, got {text!r}")
    return int(text)


def register(sub) -> None:
    from ..evaluation.results import DEFAULT_SETS, DEFAULT_SIGMAS, QUICK_IMAGES, RECIPE_CROP
    from ..evaluation.results_sr import SR_SCALES, SR_SETS

    p = sub.add_parser(
        "report", help="regenerate RESULTS.md: every shipped model and the baselines, quality and cost",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=paragraphs(
            "Run every shipped model whose weights exist and the classical baselines (dct, bm3d "
            "when installed) on the test sets at each sigma with the benchmark's protocol "
            "('denoise bench --help'), time the published FFDNet and DnCNN architectures "
            "(this package's, random weights, no weights loaded) on the same images, and write "
            "RESULTS.md, results.json and quality_speed.png into --out (replaced).",
            "Then the shipped super-resolution models with weights and bicubic run on the SR "
            "test sets (--sr-sets, under <data root>/SR_LR) at each scale with the SR "
            "benchmark's protocol ('denoise bench --task sr'), beside the published figures; "
            "SR sets that are not found are a note in RESULTS.md.",
            "Costs are CPU seconds per megapixel measured in this run (process CPU time, so "
            "other load on the machine matters less than to wall time). The full run is long: "
            "every model on every image at every sigma; --quick is a smoke run."),
        epilog=paragraphs(
            "Examples: denoise report --quick --out /tmp/report (a smoke run);  denoise report "
            "--update-default (the full run, then the ranking 'default' follows)"))
    p.add_argument("--out", default=_DEFAULT_OUT, metavar="DIR",
                   help=f"output folder, created if missing (default {_DEFAULT_OUT})")
    p.add_argument("--sets", type=comma_list(), default=list(DEFAULT_SETS), metavar="A,B,...",
                   help="test sets: names under the data root or folders "
                        f"(default {','.join(DEFAULT_SETS)})")
    p.add_argument("--sigma", type=comma_list(sigma_value), default=list(DEFAULT_SIGMAS),
                   metavar="S[,S...]", help="AWGN levels on the 0-255 scale (default 15,25,50)")
    p.add_argument("--models", type=comma_list(), default=None, metavar="A,B,...",
                   help="denoisers to run (default: every shipped denoiser with weights, then dct and "
                        "bm3d)")
    p.add_argument("--sr-sets", type=sr_sets, default=list(SR_SETS), metavar="A,B,...",
                   help="super-resolution test sets: names under <data root>/SR_LR or folders "
                        f"holding HR/xS and LR/xS (default {','.join(SR_SETS)}; {_NO_SR}: no "
                        "super-resolution part)")
    p.add_argument("--sr-scales", type=comma_list(sr_scale), default=list(SR_SCALES), metavar="S[,S...]",
                   help=f"super-resolution scales (default {','.join(map(str, SR_SCALES))})")
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run: only the first {QUICK_IMAGES} images of each set (SR sets too)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--threads", type=positive_int, default=1, metavar="N",
                   help="torch CPU threads during the run (default 1)")
    p.add_argument("--train-steps", type=int, default=2, metavar="N",
                   help="timed training steps per published architecture (default 2; 0: no "
                        "training-cost table)")
    p.add_argument("--train-batch", type=positive_int, default=16, metavar="N",
                   help="crops per timed training step (default 16)")
    p.add_argument("--train-crop", type=positive_int, default=RECIPE_CROP, metavar="N",
                   help=f"side of those crops (default {RECIPE_CROP})")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="folder of the cells (one model, one set, one sigma), written as they are "
                        "measured and reused by a later run when the weights, images and protocol "
                        "are unchanged; an interrupted run continues where it stopped (default "
                        f"OUT/{_CELLS}; --quick: none)")
    p.add_argument("--no-cache", action="store_true", help="measure every cell, keep none")
    p.add_argument("--cached-only", action="store_true",
                   help="write the report from the cached cells only, measuring nothing; the "
                        "cells not finished are listed as missing")
    p.add_argument("--update-default", action="store_true",
                   help="also write the ranking that 'default' follows into the package "
                        "(refused with --quick)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_report)


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run (options left at their defaults omitted)."""
    from ..evaluation.results import DEFAULT_SETS, DEFAULT_SIGMAS, RECIPE_CROP
    from ..evaluation.results_sr import SR_SCALES, SR_SETS

    parts = ["denoise", "report", "--out", args.out]
    if list(args.sets) != list(DEFAULT_SETS):
        parts += ["--sets", ",".join(args.sets)]
    if [float(s) for s in args.sigma] != list(DEFAULT_SIGMAS):
        parts += ["--sigma", ",".join(f"{s:g}" for s in args.sigma)]
    if args.models is not None:
        parts += ["--models", ",".join(args.models)]
    if list(args.sr_sets) != list(SR_SETS):
        parts += ["--sr-sets", ",".join(args.sr_sets) or _NO_SR]
    if list(args.sr_scales) != list(SR_SCALES):
        parts += ["--sr-scales", ",".join(map(str, args.sr_scales))]
    parts += ["--quick"] if args.quick else []
    parts += ["--seed", str(args.seed)] if args.seed else []
    parts += ["--threads", str(args.threads)] if args.threads != 1 else []
    for flag, value, default in (("--train-steps", args.train_steps, 2), ("--train-batch", args.train_batch, 16),
                                 ("--train-crop", args.train_crop, RECIPE_CROP)):
        parts += [flag, str(value)] if value != default else []
    parts += ["--cache", args.cache] if args.cache is not None else []
    parts += ["--no-cache"] if args.no_cache else []
    parts += ["--update-default"] if args.update_default else []
    return shlex.join(parts)


def cell_folder(args: argparse.Namespace) -> str | None:
    """The cell folder of a run: --cache, else OUT/cells; none with --no-cache or --quick."""
    if args.no_cache:
        if args.cache is not None or args.cached_only:
            raise InputError("--no-cache cannot go with --cache or --cached-only")
        return None
    if args.cache is not None:
        return args.cache
    return None if args.quick else str(Path(args.out) / _CELLS)


def cmd_report(args: argparse.Namespace) -> int:
    """``denoise report``: measure, write the files, print where they went."""
    from .. import inference
    from ..evaluation.results import QUICK_IMAGES, run_report
    from ..evaluation.results_report import write_ranking, write_report

    if args.update_default and args.quick:
        raise InputError("--update-default needs the full sets: drop --quick")
    cache = cell_folder(args)
    if args.cached_only and cache is None:
        raise InputError("--cached-only needs a cell folder: give --cache DIR")
    if args.train_steps < 0:
        raise InputError(f"--train-steps must be >= 0, got {args.train_steps}")
    report = run_report(args.sets, args.sigma, args.models, seed=args.seed,
                        max_images=QUICK_IMAGES if args.quick else None, threads=args.threads,
                        train_steps=args.train_steps,
                        train_batch=args.train_batch, train_crop=args.train_crop,
                        progress=not args.quiet, command=command_line(args),
                        sr_sets=args.sr_sets, sr_scales=args.sr_scales, cache=cache,
                        measure=not args.cached_only)
    files = write_report(report, args.out)
    if args.update_default:
        files.append(write_ranking(report, inference.RANKING_FILE))
    for channels, names in report.default_order().items():
        kind = {1: "gray", 3: "color"}.get(channels, f"{channels}-channel")
        print(f"best for {kind} images (may be default): {names[0] if names else 'none'}")
    if report.sr_note:
        print(f"super-resolution: {report.sr_note}")
    if cache is not None:
        print(f"cells in {cache}: {report.reused} reused" + (f", {len(report.missing)} not measured yet"
                                                              if report.missing else ""))
    print("wrote " + ", ".join(str(f) for f in files))
    return 0
