"""``denoise fit``: fine-tune a model on a folder of your noisy photos (self-supervised, for a
bounded time), save it as your model, then denoise the photos with it (see
:mod:`denoise.training.fit`)."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..errors import DenoiseError, ImageReadError, ImageWriteError, InputError
from .args import PROG, one_line, paragraphs, positive_int


def register(sub) -> None:
    from ..inference import DEFAULT_TILE
    from ..training.fit import BATCH, CROP, DEFAULT_BASE, DEFAULT_MINUTES, LR

    p = sub.add_parser(
        "fit", help="fine-tune a model on your own noisy photos (no clean images), then denoise them",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=paragraphs(
            "Fine-tune a trained denoiser on the noisy photos of FOLDER, self-supervised (no clean "
            "image, no second shot), for at most --minutes of training; save the result as your "
            "model (usable by name: denoise run -m NAME) and write the photos denoised with it "
            "into OUT.",
            f"It starts from --model (default: {DEFAULT_BASE[3]} for color photos, {DEFAULT_BASE[1]} "
            "for gray ones) and learns from every photo of the folder, with random crops of "
            f"{CROP} pixels, batches of {BATCH}, Adam at a constant learning rate of {LR:g} and the "
            "batch-norm statistics of the base frozen. --minutes bounds the wall time of the "
            "training (loading and denoising the photos come on top); a checkpoint is kept, and "
            "--resume continues the fit for another --minutes.",
            "The fit's run folder (checkpoint.pt, log.csv, curves.png) is fits/NAME in your model "
            "folder ($DENOISE_MODELS, else ~/.local/share/denoise/models), and the model NAME.safetensors "
            "with its card goes beside fits/. Outputs keep their input's name, format and bit "
            "depth, are written atomically and never replace a file without --force."),
        epilog=paragraphs(
            "Exit status: 0 done; 1 some photos could not be denoised (listed; the model is saved); "
            "2 nothing done (bad option, empty folder, unknown or unsuitable model, existing output "
            "or fit without --force/--resume); 130 interrupted (the checkpoint is kept: --resume).",
            "Example: denoise fit my_photos/ -o denoised/ --mkdir --minutes 10"))
    p.add_argument("folder", metavar="FOLDER", help="a folder of your noisy photos (png, jpg, tif; "
                   "not its sub-folders), all shot with the same camera and settings ideally")
    p.add_argument("-o", "--out", required=True, metavar="DIR",
                   help="output folder for the denoised photos; it must exist unless --mkdir is given")
    p.add_argument("--minutes", default=DEFAULT_MINUTES, metavar="M",
                   help=f"the training's wall-time budget in minutes, > 0 (default {DEFAULT_MINUTES:g}); "
                        "longer usually fits better")
    p.add_argument("-m", "--model", default=None, metavar="NAME",
                   help="the blind denoiser to start from: a model name with weights, one of your own, "
                        "a .safetensors file or a training run folder (default: "
                        f"{DEFAULT_BASE[3]} / {DEFAULT_BASE[1]} by the photos' channels)")
    p.add_argument("--name", default=None, metavar="NAME",
                   help="the name to save your model as (default: fit- and the folder's name)")
    p.add_argument("--self-mode", choices=("pd", "n2n", "pseudo"), default=None,
                   help="the objective: pseudo (default), the base's own outputs as clean images with "
                        "its training noise added afresh (adapts the base to your photos' content); the "
                        "self-supervised pd, a blind spot on pixel-shuffle-downsampled photos, for "
                        "correlated noise that no shipped model knows; n2n (Neighbor2Neighbor), for "
                        "pixel-independent noise only (on camera noise it keeps the correlated part)")
    p.add_argument("--resume", action="store_true",
                   help="continue the earlier fit of this --name (default name: from the folder) "
                        "for another --minutes; its model, mode and seed are kept")
    p.add_argument("-f", "--force", action="store_true",
                   help="replace existing output files, and start a fit of this name over (its "
                        "checkpoint and model are replaced)")
    p.add_argument("--mkdir", action="store_true", help="create the output folder if missing")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=None, metavar="N",
                   help="seed of the random crops and masks (default 0)")
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda|mps",
                   help="where the model trains and runs (default auto: CUDA, else MPS, else the CPU)")
    p.add_argument("--tile", type=positive_int, default=DEFAULT_TILE, metavar="N",
                   help=f"denoise photos larger than N x N pixels in tiles (default {DEFAULT_TILE})")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or per-file lines")
    p.set_defaults(func=cmd_fit)


def cmd_fit(args: argparse.Namespace) -> int:
    """``denoise fit``: check everything, fit, save the model, denoise the folder."""
    from tqdm.auto import tqdm

    from ..inference import resolve_device
    from ..io import IMAGE_EXTENSIONS, list_images
    from ..models.registry import get_entry
    from ..models.user import looks_like_path
    from ..training.fit import check_minutes, default_name, fit, fits_dir
    from .run import _report_failures, plan_jobs, prepare_output_folder

    minutes = check_minutes(args.minutes)
    folder, out = Path(args.folder), Path(args.out)
    if not folder.is_dir():
        raise ImageReadError(f"not a folder: {folder}; pass a folder of noisy photos" if folder.exists()
                             else f"no such folder: {folder}")
    if not list_images(folder):
        raise InputError(f"no images in {folder} (looked for {' '.join(IMAGE_EXTENSIONS)}); "
                         "fit needs a folder of noisy photos")
    if args.model is not None and not looks_like_path(args.model):
        get_entry(args.model)  # an unknown name fails before any photo is read
    jobs = plan_jobs([str(folder)], out, force=True)
    existing = [job.target for job in jobs if job.target.exists()]
    if existing and not args.force:
        what = f"{existing[0]} and {len(existing) - 1} more outputs exist" if len(existing) > 1 \
            else f"{existing[0]} exists"
        raise ImageWriteError(f"{what}; pass --force to replace them, or choose another -o folder")
    _check_output_folder(out, args.mkdir)
    device = resolve_device(args.device)
    name = args.name or default_name(folder)
    command = _command(args)
    show = not args.quiet
    try:
        result = fit(folder, minutes=minutes, model=args.model, name=name, self_mode=args.self_mode,
                     resume=args.resume, overwrite=args.force, seed=args.seed, threads=args.threads,
                     device=str(device), progress=show, command=command)
    except KeyboardInterrupt:
        again = command if args.resume else command + " --resume"
        print(f"{PROG}: interrupted; the fit's checkpoint is in {fits_dir() / name}; continue with: "
              f"{again}", file=sys.stderr)
        return 130
    total = f", {result.steps} in all" if result.steps != result.new_steps else ""
    print(f"fitted {result.base} on {result.images} photo(s): {result.new_steps} steps in "
          f"{result.seconds / 60:.1f} min{total}; saved as your model {result.name} ({result.weights})")
    prepare_output_folder(out, args.mkdir)
    model = result.model.to(device)
    failures: list[tuple[Path, str]] = []
    for job in tqdm(jobs, desc="denoise", unit="img", disable=None if show else True):
        try:
            line = _denoise_file(job, model, result.name, tile=args.tile, device=device, force=args.force)
        except (DenoiseError, MemoryError) as exc:
            reason = "out of memory; try a smaller --tile" if isinstance(exc, MemoryError) else exc
            failures.append((job.source, one_line(reason)))
            continue
        if show:
            tqdm.write(line)
    code = _report_failures(failures, len(jobs), out)
    print(f"wrote {len(jobs) - len(failures)} denoised photo(s) to {out}; use your model on other photos "
          f"with: denoise run PHOTOS -o OUT -m {result.name}; fit it longer with --resume")
    return code


def _command(args: argparse.Namespace) -> str:
    """The command line of a fit, from its parsed arguments (kept in the model card)."""
    parts = ["denoise", "fit", str(args.folder), "-o", str(args.out), "--minutes", str(args.minutes)]
    for flag, value in (("--model", args.model), ("--name", args.name), ("--self-mode", args.self_mode),
                        ("--seed", args.seed), ("--threads", args.threads)):
        if value is not None:
            parts += [flag, str(value)]
    parts += [flag for flag, on in (("--mkdir", args.mkdir), ("--force", args.force), ("--resume", args.resume))
              if on]
    return shlex.join(parts)


def _check_output_folder(out: Path, mkdir: bool) -> None:
    """The checks of :func:`~.run.prepare_output_folder` without creating anything (with
    ``mkdir`` a missing folder is made after the fit)."""
    from .run import prepare_output_folder

    if out.exists() or not mkdir:
        prepare_output_folder(out, False)


def _denoise_file(job, model, name: str, *, tile: int, device, force: bool) -> str:
    """Denoise one photo with the fitted model and write it atomically (as ``denoise run``)."""
    from ..inference import restore
    from ..io import read_image, write_image
    from .run import _make_parent

    x, info = read_image(job.source)
    result = restore(x, model, tile=tile, device=device)
    _make_parent(job.target)
    write_image(job.target, result.output, info, overwrite=force)
    return f"{job.source} -> {job.target} ({name}, {result.seconds:.1f} s)"

