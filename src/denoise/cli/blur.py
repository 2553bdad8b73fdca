"""``denoise estimate-blur``: estimate the blur a low-resolution photo went through, by
gradient descent through a frozen super-resolution network (:func:`denoise.blur.estimate_blur`,
``--method fit``) or by the learned x2 regressor (:func:`denoise.blur_width.estimate_width`,
``--method learned``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .args import paragraphs, positive_int
from .upscale import scale_arg


def register(sub) -> None:
    p = sub.add_parser(
        "estimate-blur", help="estimate the blur kernel of a low-resolution image through an SR model",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=paragraphs(
            "Estimate the blur kernel IMAGE went through before a --scale decimation: the SR "
            "model runs once on IMAGE (frozen), then a kernel is fitted by gradient descent so "
            "that the model's output, blurred and decimated again, reproduces IMAGE. Prints the "
            "Gaussian width (standard deviation) in high-resolution pixels -- the pixels of the "
            "model's output; divide by the scale for input pixels, also printed -- and the "
            "residual in 8-bit grey levels (RMS over the image less its borders).",
            "The estimate is only as good as the model: a network trained on bicubic inputs "
            "returns a blurred output for a blurred input, which biases the width low; bicubic "
            "interpolation (--model bicubic) gives no information about the blur at all: its "
            "output, resampled, reproduces the input for the narrowest kernel.",
            "--method learned (x2 only, no --model): a small CNN trained on CBSD432 with "
            "synthetic Gaussian blurs (width 0.3-3 HR pixels) then x2 decimation reads the "
            "Gaussian width from the image's luma directly, averaged over windows of it "
            "(denoise.blur_width). On synthetic tests over Set5/Set14 (widths 0.8-2.0) it is "
            "within 10% in 59 of 95 cases, mean error 9.4%, where the fit through rdn-x2 is "
            "within 10% in none. It cannot tell a soft scene from a blurred one, and knows "
            "only Gaussian blur, exact decimation and 8-bit rounding."),
        epilog=paragraphs(
            "Exit status: 0 done; 2 nothing done (missing or unreadable image, unknown model or "
            "a model of another scale, image too small for the kernel, existing output without "
            "--force); 130 interrupted.",
            "Example: denoise estimate-blur photo.png --model my-sr-x2.safetensors --scale 2 --kind free "
            "--kernel-out kernel.png --json blur.json",
            "Example: denoise estimate-blur photo.png --method learned --scale 2"))
    p.add_argument("image", metavar="IMAGE", help="the low-resolution image (.png .jpg .tif ...)")
    p.add_argument("--method", choices=("fit", "learned"), default="fit",
                   help="fit: through the SR --model (default); learned: the learned x2 width "
                        "regressor (no --model; Gaussian width only)")
    p.add_argument("-m", "--model", default=None, metavar="NAME_OR_PATH",
                   help="super-resolution model of that scale: a name from 'denoise models' or a path "
                        "to weights or a run folder (required with --method fit)")
    p.add_argument("--scale", type=scale_arg, required=True, metavar="2|3|4", help="upscaling factor")
    p.add_argument("--kind", choices=("gaussian", "free"), default=None,
                   help="an isotropic Gaussian (width and sub-pixel centre; default) or a free "
                        "non-negative kernel summing to 1")
    p.add_argument("--size", type=positive_int, default=None, metavar="K",
                   help="kernel taps per side, odd (default 21 for gaussian, 13 for free)")
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="optimiser iterations (default 30 L-BFGS for gaussian, 300 Adam for free)")
    p.add_argument("--crop", type=int, default=None, metavar="N",
                   help="fit on the N x N window of the image with the most detail (default 128; "
                        "0: the whole image, slower on large photos)")
    p.add_argument("--kernel-out", default=None, metavar="K.png",
                   help="write the kernel as a K x K gray image scaled to its largest tap")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="write the estimate (width, shift, residual, loss curve, kernel) as JSON")
    p.add_argument("-f", "--force", action="store_true", help="replace existing output files")
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda|mps",
                   help="where the model runs (default auto: CUDA, else MPS, else the CPU; the fit "
                        "itself runs on the CPU)")
    p.set_defaults(func=cmd_estimate_blur)


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse outputs that exist (without --force) or whose folder is missing, before work."""
    from ..errors import OutputError

    for name in (args.kernel_out, args.json):
        if name is None:
            continue
        path = Path(name)
        if path.exists() and not args.force:
            raise OutputError(f"{path} exists; pass --force to replace it")
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            raise OutputError(f"output folder does not exist: {folder}")
    if args.kernel_out is not None:
        from ..io import IMAGE_EXTENSIONS

        if Path(args.kernel_out).suffix.lower() not in IMAGE_EXTENSIONS:
            raise OutputError(f"--kernel-out must end in one of {' '.join(IMAGE_EXTENSIONS)}, "
                              f"got {args.kernel_out}")


def _check_method(args: argparse.Namespace) -> None:
    """The options each method takes: --model for fit; none of the fit's own for learned."""
    from ..errors import InputError

    if args.method == "fit":
        if args.model is None:
            raise InputError("--method fit needs -m/--model NAME_OR_PATH (a super-resolution model of "
                             "that scale); or use --method learned (x2) which needs none")
        return
    given = [flag for flag, value in (("--model", args.model), ("--kind", args.kind), ("--steps", args.steps),
                                      ("--crop", args.crop)) if value is not None]
    if given:
        raise InputError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only to "
                         "--method fit; --method learned takes the "
                         "image, --scale 2 and the outputs (--kernel-out, --json, --size of the kernel)")


def learned_summary(name: str, width: float, scale: int) -> str:
    """The one line printed for the learned estimate."""
    return (f"{name}: Gaussian blur width {width:.3f} HR pixels ({width / scale:.3f} LR pixels) at "
            f"x{scale}, learned estimator")


def summary(name: str, est) -> str:
    """The one line printed for an estimate."""
    if est.kind == "gaussian":
        what = (f"Gaussian blur width {est.width:.3f} HR pixels ({est.width_lr:.3f} LR pixels) at "
                f"x{est.scale}, centre shift ({est.shift[0]:+.2f}, {est.shift[1]:+.2f}) HR pixels")
    else:
        k = est.kernel.shape[-1]
        what = (f"free {k}x{k} kernel at x{est.scale}, width from its second moment "
                f"{est.moment_width:.3f} HR pixels ({est.moment_width / est.scale:.3f} LR pixels)")
    where = ""
    if est.window is not None:
        top, left, h, w = est.window
        where = f" (fitted on the {h}x{w} window at row {top}, column {left})"
    return f"{name}: {what}; residual {est.rms_levels:.3f} grey levels RMS{where}"


def cmd_estimate_blur(args: argparse.Namespace) -> int:
    """``denoise estimate-blur``: check everything, estimate, print, write the outputs."""
    from ..blur import DEFAULT_CROP, estimate_blur
    from ..inference import resolve_device
    from ..io import read_image
    from ..upscale import check_upscaler

    _check_method(args)
    if args.method == "learned":
        return _learned(args)
    check_upscaler(args.model, args.scale)
    device = resolve_device(args.device)
    _check_outputs(args)
    x, _ = read_image(args.image)
    crop = DEFAULT_CROP if args.crop is None else (args.crop or None)
    est = estimate_blur(x, args.model, args.scale, kind=args.kind or "gaussian", size=args.size,
                        steps=args.steps, crop=crop, device=device)
    print(summary(args.image, est))
    _write_outputs(args, est.kernel, {"image": str(args.image), "model": args.model, **est.to_dict(),
                                      "curve": est.curve})
    return 0


def _write_outputs(args: argparse.Namespace, kernel, record: dict) -> None:
    """--kernel-out (the kernel scaled to its largest tap) and --json, of either method."""
    from ..io import write_image
    from ..utils import write_json

    if args.kernel_out is not None:
        write_image(args.kernel_out, (kernel / kernel.max())[None, None].float(), overwrite=args.force)
        print(f"kernel -> {args.kernel_out}")
    if args.json is not None:
        write_json(args.json, record, overwrite=args.force)
        print(f"estimate -> {args.json}")


def _learned(args: argparse.Namespace) -> int:
    """``--method learned``: the learned x2 width regressor (it refuses other scales); the
    Gaussian kernel of that width for the outputs (--size taps, default 21)."""
    from ..blur import DEFAULT_SIZE, gaussian_kernel
    from ..blur_width import NAME, estimate_width
    from ..io import read_image

    _check_outputs(args)
    size = args.size or DEFAULT_SIZE["gaussian"]
    gaussian_kernel(1.0, size)  # a bad --size is refused before any work
    x, _ = read_image(args.image)
    width = estimate_width(x, args.scale)
    kernel = gaussian_kernel(width, size)
    print(learned_summary(args.image, width, args.scale))
    _write_outputs(args, kernel, {"image": str(args.image), "method": "learned", "model": NAME,
                                  "kind": "gaussian", "scale": args.scale, "width_hr": width,
                                  "width_lr": width / args.scale, "kernel_size": size,
                                  "kernel": kernel.tolist()})
    return 0