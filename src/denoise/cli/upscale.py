"""``denoise upscale``: super-resolve image files and folders, with ``denoise run``'s file
handling (its planning, output checks and atomic writes are reused, not repeated)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DenoiseError
from ..inference import DEFAULT_TILE
from .args import add_file_arguments, one_line, paragraphs, positive_int
from .run import Job, _make_parent, _report_failures, plan_jobs, prepare_output_folder


def scale_arg(text: str) -> int:
    """An integer upscaling factor: 2, 3 or 4."""
    from ..models.sr import SCALES

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer scale ({', '.join(map(str, SCALES))}), got {text!r}") from None
    if value not in SCALES:
        raise argparse.ArgumentTypeError(f"scale {value} is not supported; use {', '.join(map(str, SCALES))}")
    return value


def register(sub) -> None:
    p = sub.add_parser(
        "upscale", help="super-resolve image files and folders (x2, x3, x4)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=paragraphs(
            "Upscale images by --scale. Each output keeps its input's file name (plus --suffix), "
            "format, bit depth and alpha channel (resized bicubically). Outputs are written "
            "atomically and never replace an existing file without --force."),
        epilog=paragraphs(
            "Exit status: 0 all written; 1 some images failed (each listed, the others written); "
            "2 nothing done (bad option, missing input or output folder, unknown model or a "
            "model of another scale, existing output without --force); 130 interrupted.",
            "Example: denoise upscale photos/ -o big/ --mkdir --scale 2 --model bicubic"))
    add_file_arguments(p, suffix_example="_x2")
    p.add_argument("--scale", type=scale_arg, required=True, metavar="2|3|4", help="upscaling factor")
    p.add_argument("-m", "--model", default="bicubic", metavar="NAME",
                   help="super-resolution model of that scale (default bicubic, training-free)")
    p.add_argument("--tile", type=positive_int, default=DEFAULT_TILE, metavar="N",
                   help=f"process inputs larger than N x N pixels in tiles (default {DEFAULT_TILE})")
    p.set_defaults(func=cmd_upscale)


def upscale_file(job: Job, model, scale: int, *, tile: int, force: bool = False,
                 progress: bool = False, device: str = "cpu", name: str | None = None) -> str:
    """Upscale one file and write it atomically; return a one-line summary."""
    import time

    from ..io import read_image, write_image
    from ..upscale import resized_info, upscale

    x, info = read_image(job.source)
    start = time.perf_counter()
    y = upscale(x, scale, model, tile=tile, device=device, progress=progress)
    seconds = time.perf_counter() - start
    info = resized_info(info, scale)
    _make_parent(job.target)
    write_image(job.target, y, info, overwrite=force)
    name = name or (model if isinstance(model, str) else type(model).__name__)
    return f"{job.source} -> {job.target} (x{scale}, {name}, {seconds:.1f} s)"


def cmd_upscale(args: argparse.Namespace) -> int:
    """``denoise upscale``: check the scale and model, plan, then upscale file by file."""
    from tqdm.auto import tqdm

    from ..inference import resolve_device
    from ..upscale import check_upscaler

    scale, model = check_upscaler(args.model, args.scale)
    device = resolve_device(args.device)
    out = Path(args.out)
    jobs = plan_jobs(args.inputs, out, suffix=args.suffix, recursive=args.recursive, force=args.force)
    prepare_output_folder(out, args.mkdir)
    show = not args.quiet
    if show:
        print(f"{len(jobs)} image(s), x{scale}, model {args.model}, device {device}")
    failures: list[tuple[Path, str]] = []
    for job in tqdm(jobs, desc="upscale", unit="img", disable=None if show else True):
        try:
            line = upscale_file(job, model, scale, tile=args.tile, force=args.force,
                                progress=show, device=str(device), name=args.model)
        except (DenoiseError, MemoryError) as exc:
            reason = "out of memory; try a smaller --tile" if isinstance(exc, MemoryError) else exc
            failures.append((job.source, one_line(reason)))
            continue
        if show:
            tqdm.write(line)
    return _report_failures(failures, len(jobs), out)
