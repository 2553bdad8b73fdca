"""``denoise run``: denoise image files and folders (plan and check everything first,
then file by file through :func:`denoise.inference.restore`)."""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import (
    DenoiseError,
    ImageReadError,
    ImageWriteError,
    InputError,
    OutputError,
)
from ..inference import DEFAULT, DEFAULT_TILE
from .args import (
    PROG,
    add_file_arguments,
    error,
    number,
    one_line,
    paragraphs,
    positive_int,
    sigma_arg,
)

_SIGMA_HELP = ("noise standard deviation on the 0-255 scale (e.g. 25), relative to the full range "
               "also for 16-bit images; or 'estimated' (default) to estimate it for each image")


def register(sub) -> None:
    p = sub.add_parser(
        "run", help="denoise image files and folders",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=paragraphs(
            "Denoise images. Each output keeps its input's file name (plus --suffix), format, "
            "bit depth (16-bit in, 16-bit out) and alpha channel. Outputs are written "
            "atomically and never replace an existing file without --force."),
        epilog=paragraphs(
            "Exit status: 0 all written; 1 some images failed (each listed at the end, the "
            "others written); 2 nothing done (bad option, missing input or output folder, "
            "unknown model, existing output without --force); 130 interrupted.",
            "Example: denoise run photos/ -o clean/ --mkdir --sigma 25 --model dct"))
    add_file_arguments(p, suffix_example="_denoised")
    p.add_argument("-m", "--model", default=None, metavar="NAME",
                   help="model name from 'denoise models'; add '+x8' to average the model over "
                        "the 8 flips and rotations of the image (8x the time). Without it: "
                        "real-color / real-gray for camera photos (JPEG files, or any file with "
                        "EXIF), whose noise is not white Gaussian; 'default' (the best shipped "
                        "model for the image's channels on Gaussian noise) for other images. "
                        "Pass --model default to use it for photos too")
    p.add_argument("-s", "--sigma", type=sigma_arg, default=None, metavar="S|estimated",
                   help=_SIGMA_HELP)
    p.add_argument("--tile", type=positive_int, default=DEFAULT_TILE, metavar="N",
                   help="process images larger than N x N pixels in tiles of N x N (each with the "
                        f"model's margin around it) to bound memory (default {DEFAULT_TILE})")
    p.add_argument("--noise-map", action="store_true",
                   help="for models that take a noise level, estimate it as a function of brightness "
                        "(signal-dependent, robust to correlated camera noise) and pass it as a "
                        "per-pixel noise map (a model that takes one level per image gets its "
                        "overall level); not with --sigma")
    p.add_argument("--strength", type=strength_arg, default=None, metavar="F",
                   help="scale the noise level given to models that take one (FFDNet's noise map): "
                        "0.8 keeps more detail, 1.3 smooths more (default 1)")
    p.add_argument("--shard", type=shard_arg, default=None, metavar="K/N|auto",
                   help="process only shard K of N (1 <= K <= N): a fixed share of the files, chosen "
                        "by a hash of their output path, so N jobs share a folder without "
                        "coordination; 'auto' takes K and N from torchrun or a Slurm job array")
    p.add_argument("--skip-existing", action="store_true",
                   help="skip inputs whose output exists (to resume an interrupted run)")
    p.add_argument("--strip-metadata", action="store_true",
                   help="leave the input's EXIF (camera, dates, GPS) and ICC colour profile out of "
                        "the outputs (by default they are kept, EXIF orientation reset to 1)")
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
    from ..io import IMAGE_EXTENSIONS

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
    from ..io import list_images

    folders = [root]
    if recursive:
        skip = exclude.resolve() if exclude is not None else None
        folders += sorted(p for p in root.rglob("*") if p.is_dir()
                          and not any(part.startswith(".") for part in p.relative_to(root).parts)
                          and (skip is None or not p.resolve().is_relative_to(skip)))
    return [(f, f.relative_to(root)) for folder in folders for f in list_images(folder)]


def plan_jobs(inputs: Sequence[str], out: Path, *, suffix: str = "", recursive: bool = False,
              force: bool = False, skip_existing: bool = False,
              shard: tuple[int, int] | None = None) -> list[Job]:
    """Match every input image with its output path and check the plan before any work.

    Raises a DenoiseError when an input is missing, an output format cannot be written,
    two inputs would write the same output, an output would replace its own input, or an
    output exists and ``force`` is false.
    """
    from ..io import IMAGE_EXTENSIONS

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
    if shard is not None:
        jobs = [job for job in jobs if in_shard(job.target.relative_to(out), *shard)]
    if skip_existing:
        jobs = [job for job in jobs if not job.target.exists()]
    existing = [job.target for job in jobs if job.target.exists()]
    if existing and not force:
        what = f"{existing[0]} and {len(existing) - 1} more outputs exist" if len(existing) > 1 \
            else f"{existing[0]} exists"
        raise ImageWriteError(f"{what}; pass --force to replace, or --skip-existing to skip")
    return jobs


def strength_arg(text: str) -> float:
    """A factor in [0.05, 20]."""
    return number(text, low=0.05, high=20, what="--strength")


def shard_arg(text: str) -> tuple[int, int]:
    """``K/N`` with 1 <= K <= N, or ``auto``: this process's place under torchrun (RANK,
    WORLD_SIZE) or in a Slurm job array (SLURM_ARRAY_TASK_ID, _MIN, _COUNT)."""
    if text.strip().lower() == "auto":
        env = os.environ
        if "WORLD_SIZE" in env:
            return int(env.get("RANK", "0")) + 1, int(env["WORLD_SIZE"])
        if "SLURM_ARRAY_TASK_COUNT" in env:
            first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
            return int(env["SLURM_ARRAY_TASK_ID"]) - first + 1, int(env["SLURM_ARRAY_TASK_COUNT"])
        raise argparse.ArgumentTypeError("auto needs torchrun (RANK, WORLD_SIZE) or a Slurm job array "
                                         "(SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT)")
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N such as 2/8, got {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"shard K/N needs 1 <= K <= N, got {text}")
    return k, n


def in_shard(relative: Path, k: int, n: int) -> bool:
    """Whether the output ``relative`` (to the output folder) belongs to shard ``k`` of ``n``:
    a hash of the path, so the split does not depend on which other files exist."""
    import hashlib

    digest = hashlib.sha256(relative.as_posix().encode()).digest()
    return int.from_bytes(digest[:8], "big") % n == k - 1


def prepare_output_folder(out: Path, mkdir: bool) -> Path:
    """Check (or with ``mkdir`` create) the output folder; raise ImageWriteError if unusable."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"the output {out} is not a folder")
    if not out.exists():
        if not mkdir:
            raise OutputError(f"output folder does not exist: {out}; create it or pass --mkdir")
        try:
            out.mkdir(parents=True)
        except OSError as exc:
            raise OutputError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to the output folder {out}: permission denied")
    return out


def denoise_file(job: Job, name: str, sigma: float | None, *, tile: int, force: bool = False,
                 progress: bool = False, device: str = "cpu", strength: float | None = None,
                 strip_metadata: bool = False, noise_map: bool = False) -> str:
    """Denoise one file with model ``name`` and write the result; return a one-line summary.

    ``sigma`` is on the 0-255 scale (the command line's), or None to estimate it; for a
    model that takes a noise level the summary then also gives the noise level function
    of :func:`denoise.noise_level.estimate_noise_level`, and with ``noise_map`` that
    function's per-pixel map is what the model gets. The output is written atomically and
    replaces an existing file only when ``force`` is true; it keeps the input's EXIF and
    ICC profile unless ``strip_metadata`` is true.
    """
    import torch

    from ..inference import restore
    from ..io import read_image, write_image

    x, info = read_image(job.source)
    name, why = _auto_model(name, x.shape[1], info)
    level, given = _noise_map(x, name, device) if noise_map and sigma is None else (None, None)
    if given is None:
        given = None if sigma is None else sigma / 255
    result = restore(x, name, given, tile=tile, device=device, progress=progress, strength=strength)
    _make_parent(job.target)
    write_image(job.target, result.output, info, overwrite=force, strip_metadata=strip_metadata)
    if level is not None:
        kind = "noise map" if isinstance(given, torch.Tensor) and given.dim() == 4 else "sigma"
        how = f", {kind} {level.summary()}"
    elif result.sigma is None:
        how = ""
    else:
        how = (f", sigma {float(torch.as_tensor(result.sigma).flatten()[0]) * 255:.1f}"
               + (" estimated" + _level_note(x) if result.sigma_estimated else ""))
    return f"{job.source} -> {job.target} ({result.model}{why}, {result.seconds:.1f} s{how})"


def _photo_note() -> str:
    """`` (real-color for camera photos)``: the shipped real-photo models, if any."""
    from ..inference import photo_model_name

    names = [n for n in (photo_model_name(3), photo_model_name(1)) if n]
    return f" ({' / '.join(names)} for camera photos)" if names else ""


def _auto_model(name: str | None, channels: int, info) -> tuple[str, str]:
    """``(model, note)`` for ``--model`` left out (None): the real-photo model for a camera
    photo when it is shipped, else "default"; a given name is kept (empty note)."""
    from ..inference import is_photo, photo_model_name

    if name is not None:
        return name, ""
    photo = photo_model_name(channels) if is_photo(info) else None
    if photo is None:
        return DEFAULT, ""
    what = "EXIF" if info.exif else "JPEG"
    return photo, f", chosen for a camera photo ({what}); --model default for the Gaussian-noise model"


def _noise_map(x, name: str, device: str):
    """``(NoiseLevel, sigma for restore)`` for ``--noise-map``: the per-pixel map for a
    model that takes one, the overall level for one that takes a level per image; ``(None,
    None)`` (and a warning) for a model blind to the noise level."""
    import warnings

    from ..inference import load
    from ..models.base import Wrapper, contract
    from ..models.ffdnet import FFDNet
    from ..noise_level import estimate_noise_level

    resolved, net = load(name, x.shape[1], device)
    if not contract(net).uses_sigma:
        warnings.warn(f"model {resolved} is blind to the noise level: --noise-map is ignored", stacklevel=2)
        return None, None
    level = estimate_noise_level(x)
    inner = net
    while isinstance(inner, Wrapper):
        inner = inner.model
    if isinstance(inner, FFDNet):
        return level, level.to_map(x)
    warnings.warn(f"model {resolved} takes one noise level per image, not a map: --noise-map gives "
                  "it the overall level of the estimated noise level function", stacklevel=2)
    return level, level.sigma.clamp_min(1e-3)  # a level of 0 (a noise-free image) is refused


def _level_note(x) -> str:
    """``"; noise level 7.3 (NLF 4.1-9.8 over brightness)"``: the signal-dependent estimate
    beside the model's own; empty for images too small to estimate it on."""
    from ..noise_level import estimate_noise_level

    try:
        return f"; noise level {estimate_noise_level(x).summary()}"
    except InputError:
        return ""


def _make_parent(path: Path) -> None:
    """Create the sub-folder of an output (recursive runs mirror their input folders)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the folder {path.parent}: {exc.strerror or exc}") from None


def cmd_run(args: argparse.Namespace) -> int:
    """``denoise run``: plan and check everything, then denoise file by file."""
    from tqdm.auto import tqdm

    from ..inference import check_denoiser, resolve_device

    if args.model is not None:
        check_denoiser(args.model)
    if args.noise_map and args.sigma is not None:
        raise InputError("--noise-map estimates the noise level itself; leave out --sigma")
    device = resolve_device(args.device)
    out = Path(args.out)
    jobs = plan_jobs(args.inputs, out, suffix=args.suffix, recursive=args.recursive, force=args.force,
                     skip_existing=args.skip_existing, shard=args.shard)
    prepare_output_folder(out, args.mkdir)
    show = not args.quiet
    if show:
        part = f" (shard {args.shard[0]}/{args.shard[1]})" if args.shard else ""
        model = args.model or DEFAULT + _photo_note()
        print(f"{len(jobs)} image(s){part}, model {model}, device {device}")
    failures: list[tuple[Path, str]] = []
    for job in tqdm(jobs, desc="denoise", unit="img", disable=None if show else True):
        try:
            line = denoise_file(job, args.model, args.sigma, tile=args.tile, force=args.force,
                                progress=show, device=str(device), strength=args.strength,
                                strip_metadata=args.strip_metadata, noise_map=args.noise_map)
        except (DenoiseError, MemoryError) as exc:
            reason = "out of memory; try a smaller --tile" if isinstance(exc, MemoryError) else exc
            failures.append((job.source, one_line(reason)))
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


