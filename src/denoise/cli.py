"""The ``denoise`` command: one program, several subcommands.

* ``denoise run INPUT... -o OUT``: denoise image files and folders of images.
* ``denoise demo``: every available model on bundled photos; table and figures.
* ``denoise bench --data SET``: mean PSNR/SSIM on test sets, beside published figures.
* ``denoise models``: the registered models, whether they can run here, their cards.

Other modules contribute subcommands through ``register(subparsers)`` (``train``,
``data ee559``, ``ee559 export``). Exit status: 0 on success; 2 for a usage error or any
problem found before work starts (bad option, missing input, unknown model, missing
output folder, an output that exists without ``--force``); 1 when ``run`` went through
all its inputs but some of them failed (each listed at the end); 130 when interrupted.
Every user error is one line ``denoise: error: ...`` on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from . import __version__, train_cli
from .bench import DEFAULT, PROTOCOL, check_model, get_model, missing_extras, missing_requirements
from .ee559 import cli as ee559_cli
from .errors import DenoiseError, ImageReadError, ImageWriteError, InputError
from .models.ensemble import SUFFIX

PROG = "denoise"

#: Modules adding subcommands with ``register(subparsers)``.
PLUGINS = (train_cli, ee559_cli)


# ----------------------------------------------------------------------------- entry point

def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return int(args.func(args) or 0)
        except DenoiseError as exc:
            error(exc)
            return 2
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130


def error(message: object) -> None:
    """Print ``denoise: error: MESSAGE`` as one line on stderr."""
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)


def _one_line(message: object) -> str:
    return " ".join(str(message).split()) or type(message).__name__


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line ``denoise: warning: ...`` instead of a source excerpt."""
    print(f"{PROG}: warning: {_one_line(message)}", file=sys.stderr)


def _paragraphs(*texts: str) -> str:
    """Help text wrapped to 80 columns, paragraphs kept apart (for raw formatters)."""
    return "\n\n".join(textwrap.fill(t, 80) for t in texts)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Image denoising: trained and classical denoisers, benchmarks and a demo.",
        epilog="Run 'denoise COMMAND --help' for a command's options. Quick look: 'denoise demo'.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    _add_demo(sub)
    _add_bench(sub)
    _add_models(sub)
    _register_plugins(sub)
    return parser


def _register_plugins(sub) -> None:
    """Subcommands contributed by other modules: train, export-weights, data, ee559."""
    for module in PLUGINS:
        module.register(sub)


# ----------------------------------------------------------------------------- argument types

def sigma_arg(text: str) -> float | None:
    """A noise level on the 0-255 scale, or "estimated" (None)."""
    if text.strip().lower() in ("estimated", "estimate", "auto"):
        return None
    return sigma_value(text)


def sigma_value(text: str) -> float:
    """A number in (0, 255]: a noise standard deviation on the 0-255 scale."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number on the 0-255 scale, got {text!r}") from None
    if not 0 < value <= 255:  # also refuses nan
        raise argparse.ArgumentTypeError(f"sigma must be in (0, 255] on the 0-255 scale, got {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def comma_list(item: Callable[[str], object] = str) -> Callable[[str], list]:
    """An argument type for comma-separated values, each converted by ``item``."""

    def parse(text: str) -> list:
        parts = [p.strip() for p in text.split(",")]
        if not all(parts):
            raise argparse.ArgumentTypeError(f"empty item in the list {text!r}")
        return [item(p) for p in parts]

    parse.__name__ = "list"
    return parse


# ----------------------------------------------------------------------------- run

_SIGMA_HELP = ("noise standard deviation on the 0-255 scale (e.g. 25), relative to the full range "
               "also for 16-bit images; or 'estimated' (default) to estimate it for each image")


def _add_run(sub) -> None:
    p = sub.add_parser(
        "run", help="denoise image files and folders",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_paragraphs(
            "Denoise images. Each output keeps its input's file name (plus --suffix), format, "
            "bit depth (16-bit in, 16-bit out) and alpha channel. Outputs are written "
            "atomically and never replace an existing file without --force."),
        epilog=_paragraphs(
            "Exit status: 0 all written; 1 some images failed (each listed at the end, the "
            "others written); 2 nothing done (bad option, missing input or output folder, "
            "unknown model, existing output without --force); 130 interrupted.",
            "Example: denoise run photos/ -o clean/ --mkdir --sigma 25 --model dct"))
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files (.png .jpg .tif ...) or folders of images")
    p.add_argument("-o", "--out", required=True, metavar="DIR",
                   help="output folder; it must exist unless --mkdir is given")
    p.add_argument("-m", "--model", default=DEFAULT, metavar="NAME",
                   help="model name from 'denoise models' (default: 'default', the best shipped "
                        "model for the image's channels); add '+x8' to average the model over "
                        "the 8 flips and rotations of the image (8x the time)")
    p.add_argument("-s", "--sigma", type=sigma_arg, default=None, metavar="S|estimated",
                   help=_SIGMA_HELP)
    p.add_argument("--tile", type=positive_int, default=1024, metavar="N",
                   help="process images larger than N x N pixels in overlapping N x N tiles to "
                        "bound memory (default 1024)")
    p.add_argument("-f", "--force", action="store_true", help="replace existing output files")
    p.add_argument("--suffix", default="", metavar="TEXT",
                   help="added to each output file name before its extension, e.g. _denoised")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="also read the sub-folders of folder inputs (mirrored under OUT)")
    p.add_argument("--mkdir", action="store_true", help="create the output folder if missing")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or per-file lines")
    p.set_defaults(func=cmd_run)


@dataclass(frozen=True)
class Job:
    """One image to denoise: where it comes from and where its output goes."""

    source: Path
    target: Path


def collect_inputs(inputs: Sequence[str], recursive: bool = False, *,
                   exclude: Path | None = None) -> list[tuple[Path, Path]]:
    """``(file, path relative to the output folder)`` for every input image.

    A file input keeps its name; a folder input contributes its images (and, with
    ``recursive``, those of its sub-folders under the same relative paths, except
    hidden ones and the folder ``exclude``, the output). Raises ImageReadError for a
    missing input or a folder without images.
    """
    from .io import IMAGE_EXTENSIONS

    found: list[tuple[Path, Path]] = []
    for text in inputs:
        path = Path(text)
        if path.is_file():
            found.append((path, Path(path.name)))
        elif path.is_dir():
            images = _folder_images(path, recursive, exclude)
            if not images:
                raise ImageReadError(f"no images in {path} (looked for {' '.join(IMAGE_EXTENSIONS)}"
                                     f"{'' if recursive else '; pass --recursive for sub-folders'})")
            found.extend(images)
        else:
            raise ImageReadError(f"no such file or folder: {path}")
    return found


def _folder_images(root: Path, recursive: bool, exclude: Path | None) -> list[tuple[Path, Path]]:
    """The images of ``root`` (and of its sub-folders when ``recursive``), sorted."""
    from .io import list_images

    folders = [root]
    if recursive:
        skip = exclude.resolve() if exclude is not None else None
        folders += sorted(p for p in root.rglob("*") if p.is_dir()
                          and not any(part.startswith(".") for part in p.relative_to(root).parts)
                          and (skip is None or not p.resolve().is_relative_to(skip)))
    return [(f, f.relative_to(root)) for folder in folders for f in list_images(folder)]


def plan_jobs(inputs: Sequence[str], out: Path, *, suffix: str = "", recursive: bool = False,
              force: bool = False) -> list[Job]:
    """Match every input image with its output path and check the plan before any work.

    Raises a DenoiseError when an input is missing, an output format cannot be written,
    two inputs would write the same output, an output would replace its own input, or an
    output exists and ``force`` is false.
    """
    from .io import IMAGE_EXTENSIONS

    if any(sep in suffix for sep in ("/", "\\")) or suffix in (".", ".."):
        raise InputError(f"--suffix must not contain a path separator, got {suffix!r}")
    jobs, seen = [], {}
    for source, relative in collect_inputs(inputs, recursive, exclude=out):
        ext = relative.suffix
        if ext.lower() not in IMAGE_EXTENSIONS:
            raise ImageWriteError(f"{source}: cannot write {ext or 'files without an extension'}; "
                                  f"convert it to one of {' '.join(IMAGE_EXTENSIONS)} first")
        target = out / relative.with_name(relative.stem + suffix + ext)
        key = os.path.normcase(os.path.abspath(target))
        if key in seen:
            raise InputError(f"{seen[key]} and {source} would both write {target}; "
                             "run them separately or use --suffix")
        if os.path.normcase(os.path.abspath(source)) == key or (target.exists() and source.samefile(target)):
            raise InputError(f"the output {target} would replace its input; choose another "
                             "output folder or pass --suffix")
        seen[key] = source
        jobs.append(Job(source, target))
    existing = [job.target for job in jobs if job.target.exists()]
    if existing and not force:
        what = f"{existing[0]} and {len(existing) - 1} more outputs exist" if len(existing) > 1 \
            else f"{existing[0]} exists"
        raise ImageWriteError(f"{what}; pass --force to replace")
    return jobs


def prepare_output_folder(out: Path, mkdir: bool) -> Path:
    """Check (or with ``mkdir`` create) the output folder; raise ImageWriteError if unusable."""
    if out.exists() and not out.is_dir():
        raise ImageWriteError(f"the output {out} is not a folder")
    if not out.exists():
        if not mkdir:
            raise ImageWriteError(f"output folder does not exist: {out}; create it or pass --mkdir")
        try:
            out.mkdir(parents=True)
        except OSError as exc:
            raise ImageWriteError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ImageWriteError(f"cannot write to the output folder {out}: permission denied")
    return out


def denoise_file(job: Job, name: str, sigma: float | None, *, tile: int, force: bool = False,
                 progress: bool = False) -> str:
    """Denoise one file with model ``name`` and write the result; return a one-line summary.

    ``sigma`` is on the 0-255 scale, or None to estimate it from the image. The output
    is written atomically and replaces an existing file only when ``force`` is true.
    """
    from .api import resolved_name
    from .io import read_image, write_image

    x, info = read_image(job.source)
    model = get_model(name, x.shape[1])
    start = time.perf_counter()
    y, used_sigma = denoise_tensor(model, x, None if sigma is None else sigma / 255, tile=tile,
                                   progress=progress)
    _make_parent(job.target)
    write_image(job.target, y, info, overwrite=force)
    used_name = resolved_name(name, x.shape[1])
    how = "" if used_sigma is None else (
        f", sigma {used_sigma * 255:.1f}" + (" estimated" if sigma is None else ""))
    return f"{job.source} -> {job.target} ({used_name}, {time.perf_counter() - start:.1f} s{how})"


def _make_parent(path: Path) -> None:
    """Create the sub-folder of an output (recursive runs mirror their input folders)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageWriteError(f"cannot create the folder {path.parent}: {exc.strerror or exc}") from None


def denoise_tensor(model, x, sigma: float | None, *, tile: int, progress: bool):
    """Denoise (1, C, H, W) with ``model``; return the output and the sigma it used (0-1
    scale), or None for a model without ``uses_sigma`` (a blind one).

    The noise level is estimated once for the whole image when not given and the model
    uses one, so that all tiles of a large image share it.
    """
    import torch

    from .tiling import tiled

    uses_sigma = getattr(model, "uses_sigma", False)
    if sigma is None and uses_sigma:
        from .estimate import estimate_sigma

        sigma = float(estimate_sigma(x)[0])
    with torch.inference_mode():
        if max(x.shape[-2:]) > tile:
            y = tiled(model, x, sigma, tile=tile, progress=progress)
        else:
            y = model(x, sigma)
    return y.clamp(0, 1), sigma if uses_sigma else None


def cmd_run(args: argparse.Namespace) -> int:
    """``denoise run``: plan and check everything, then denoise file by file."""
    from tqdm.auto import tqdm

    check_model(args.model)
    out = Path(args.out)
    jobs = plan_jobs(args.inputs, out, suffix=args.suffix, recursive=args.recursive, force=args.force)
    prepare_output_folder(out, args.mkdir)
    show = not args.quiet
    failures: list[tuple[Path, str]] = []
    for job in tqdm(jobs, desc="denoise", unit="img", disable=None if show else True):
        try:
            line = denoise_file(job, args.model, args.sigma, tile=args.tile, force=args.force,
                                progress=show)
        except (DenoiseError, MemoryError) as exc:
            reason = "out of memory; try a smaller --tile" if isinstance(exc, MemoryError) else exc
            failures.append((job.source, _one_line(reason)))
            continue
        if show:
            tqdm.write(line)
    return _report_failures(failures, len(jobs), out)


def _report_failures(failures: list[tuple[Path, str]], total: int, out: Path) -> int:
    if not failures:
        return 0
    for source, reason in failures:
        error(reason if str(source) in reason else f"{source}: {reason}")
    done = total - len(failures)
    print(f"{PROG}: {len(failures)} of {total} images failed"
          + (f"; the {done} others were written to {out}" if done > 1 else
             f"; the other one was written to {out}" if done else ""), file=sys.stderr)
    return 1


# ----------------------------------------------------------------------------- demo

def _add_demo(sub) -> None:
    from .demo import DEMO_IMAGES

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
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """``denoise demo``: run the demo, print its table and where the files went."""
    from .demo import run_demo

    start = time.perf_counter()
    result = run_demo(args.out, models=args.models, sigma=args.sigma, seed=args.seed,
                      images=args.images, size=args.size, progress=not args.quiet)
    print(f"Gaussian noise sigma={args.sigma:g} (0-255 scale), seed {args.seed}; "
          f"PSNR in dB (higher is better)\n")
    print(result.table())
    print(f"\nwrote {len(result.files)} files to {args.out} (comparison sheets: "
          f"{', '.join(f'{n}.png' for n in result.images)}; results.md; results.json) "
          f"in {time.perf_counter() - start:.0f} s")
    return 0


# ----------------------------------------------------------------------------- bench

def _add_bench(sub) -> None:
    p = sub.add_parser(
        "bench", help="mean PSNR/SSIM on test sets, beside the published figures",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Benchmark denoisers on folders of clean images with the protocol of the "
                    "published tables.",
        epilog="Protocol (the one of the published tables):\n" + PROTOCOL)
    p.add_argument("--data", type=comma_list(), required=True, metavar="SET[,SET...]",
                   help="test sets: folders, or names of folders under the data root "
                        "($DENOISE_DATA or ../shared/data), e.g. Set12,BSD68,CBSD68,Kodak24")
    p.add_argument("--sigma", type=comma_list(sigma_value), default=[15.0, 25.0, 50.0],
                   metavar="S[,S...]", help="noise levels on the 0-255 scale (default 15,25,50)")
    p.add_argument("--model", type=comma_list(), default=[DEFAULT], metavar="NAME[,NAME...]",
                   help="models to compare (default: 'default'); a name ending in '+x8' is "
                        "the model's mean over the 8 flips and rotations")
    p.add_argument("--max-images", type=positive_int, default=None, metavar="N",
                   help="only the first N images of each set (the published figures are then "
                        "not shown)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--gray", action="store_true", help="convert color images to gray first")
    p.add_argument("--json", metavar="FILE", help="also write all results, per image, as JSON")
    p.add_argument("--md", metavar="FILE", help="also write the tables as markdown")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    """``denoise bench``: run, print the markdown tables, write the requested files."""
    from .bench import bench
    from .report import write_json, write_text

    for path in (args.json, args.md):
        if path and not Path(path).parent.is_dir():
            raise ImageWriteError(f"the folder of {path} does not exist; create it first")
    report = bench(args.data, args.sigma, args.model, seed=args.seed, gray=args.gray,
                   max_images=args.max_images, progress=not args.quiet)
    text = report.to_markdown()
    print(text)
    if args.json:
        write_json(args.json, report.to_dict())
    if args.md:
        write_text(args.md, text + "\n")
    return 0


# ----------------------------------------------------------------------------- models

def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list the models, whether they can run here, their cards",
                       description="List every registered model: kind, whether it can run here "
                                   "(weights shipped, optional packages installed), its "
                                   "description and a summary of its model card.")
    p.add_argument("--json", action="store_true", help="print JSON (with the full model cards)")
    p.set_defaults(func=cmd_models)


def model_status(entry) -> dict:
    """What ``denoise models`` says about one registry entry, as a JSON-ready dict."""
    return {"name": entry.name, "kind": entry.kind, "available": entry.available(),
            "status": "; ".join(missing_requirements(entry)) or "ready",
            "weights_shipped": entry.has_weights() if entry.kind == "learned" else None,
            "missing_extras": missing_extras(entry), "description": entry.description, "card": entry.card()}


def card_summary(card: dict | None) -> str:
    """One line from a model card: its "summary" if it has one, else what it was trained
    on and how (data, targets, noise, steps, validation PSNR), else its first plain fields."""
    if not card:
        return ""
    if isinstance(card.get("summary"), str):
        return _one_line(card["summary"])
    training = card.get("training") if isinstance(card.get("training"), dict) else {}
    validation = card.get("validation") if isinstance(card.get("validation"), dict) else {}
    parts = []
    if isinstance(card.get("data"), str):
        parts.append("trained on " + card["data"].split(" (")[0])
    if card.get("targets"):
        parts.append(f"{card['targets']} targets")
    if card.get("noise"):
        parts.append(f"noise {card['noise']}")
    if training.get("steps"):
        parts.append(f"{training['steps']} steps")
    if isinstance(validation.get("psnr_db"), (int, float)):
        at = f" at {validation['noise']}" if validation.get("noise") else ""
        parts.append(f"validation PSNR {validation['psnr_db']:.2f} dB{at}")
    if not parts:
        parts = [f"{k}: {v}" for k, v in card.items()
                 if isinstance(v, (str, int, float)) and k != "name"][:4]
    return _one_line("; ".join(parts))


def cmd_models(args: argparse.Namespace) -> int:
    """``denoise models``: a table (or JSON) of the registry."""
    import json

    from .models.registry import list_models
    from .report import markdown_table

    statuses = [model_status(e) for e in list_models()]
    if args.json:
        print(json.dumps(statuses, indent=2))
        return 0
    print(markdown_table(["model", "kind", "status", "description"],
                         [[s["name"], s["kind"], s["status"], s["description"]] for s in statuses],
                         align="llll"))
    cards = [(s["name"], card_summary(s["card"])) for s in statuses if s["card"]]
    if cards:
        print("\nModel cards:")
        for name, summary in cards:
            print(f"  {name}: {summary}")
    print(f"\nAny name + '{SUFFIX}' (e.g. default{SUFFIX}): the model averaged over the 8 flips and "
          "rotations of the image, 8x the time.")
    return 0


if __name__ == "__main__":  # python -m denoise.cli
    sys.exit(main())
