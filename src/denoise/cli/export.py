"""``denoise export``: a learned model as an ONNX or TorchScript file (see :mod:`denoise.deploy`)."""
from __future__ import annotations

import argparse
import warnings

from .args import paragraphs


def _channels(text: str) -> int:
    if text not in ("1", "3"):
        raise argparse.ArgumentTypeError(f"expected 1 (gray) or 3 (color), got {text!r}")
    return int(text)


def register(sub) -> None:
    p = sub.add_parser(
        "export", help="write a learned model as ONNX or TorchScript, for any image size",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=paragraphs(
            "Write a learned model (shipped, your own, a path to weights, an architecture with "
            "random weights; NAME+x8 for the self-ensemble) as an ONNX or TorchScript file that "
            "takes any batch and image size. Classical models are algorithms, not networks, and "
            "cannot be exported.",
            "Inputs: 'image' float32 (N, C, H, W) on the 0-1 scale; for models that take a noise "
            "level (FFDNet) also 'sigma' float32 (N, 1, H, W), the noise standard deviation per "
            "pixel on the 0-1 scale (sigma_255 / 255). Output: 'output' (N, C, H, W), 0-1 scale, "
            "not clamped. The file documents them (ONNX doc_string and metadata_props; TorchScript "
            "extra file denoise.json).",
            "Each export is checked against PyTorch on another image size before it is written "
            "(with onnxruntime when installed: pip install 'denoise[onnx]'). The file is written "
            "atomically and never replaces an existing one without --force."),
        epilog="example: denoise export --model n2n-unet-gray --format onnx -o n2n-unet-gray.onnx")
    p.add_argument("-m", "--model", required=True, metavar="NAME",
                   help="a learned model name, a user model, a path to weights or a run folder")
    p.add_argument("--format", choices=("onnx", "torchscript"), default=None,
                   help="the file format (default: from the file name: .onnx, else .pt/.ts = torchscript)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the file to write")
    p.add_argument("-f", "--force", action="store_true", help="replace FILE if it exists")
    p.add_argument("--channels", type=_channels, default=None, metavar="1|3",
                   help="1 (gray) or 3 (color), for names that take either (architectures, default)")
    p.add_argument("--opset", type=int, default=None, metavar="N",
                   help="ONNX opset, 11 to 20 (default: 17)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    """``denoise export``: write the file, then say what it holds."""
    from ..deploy import DEFAULT_OPSET, SUFFIXES, export_model, format_from_path
    from ..errors import InputError

    fmt = args.format or format_from_path(args.output)
    if fmt is None:
        raise InputError(f"cannot tell the format from {args.output!r}: pass --format onnx or "
                         f"torchscript (or name the file {', '.join(SUFFIXES)})")
    if args.opset is not None and fmt != "onnx":
        raise InputError("--opset applies to ONNX exports only")
    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)  # the untrained-architecture warning, once
        result = export_model(args.model, args.output, format=fmt, channels=args.channels,
                              opset=args.opset if args.opset is not None else DEFAULT_OPSET,
                              overwrite=args.force)
    kind = f"ONNX opset {result.opset}" if result.format == "onnx" else "TorchScript"
    size = result.size_bytes / 1e6
    print(f"wrote {result.path} ({kind}, {size:.1f} MB): model {result.model}"
          + ("" if result.trained else " (untrained: random weights)"))
    width = max(len(spec["name"]) for spec in [*result.inputs, result.output])
    for role, spec in [*(("input", i) for i in result.inputs), ("output", result.output)]:
        print(f"  {role:<6} {spec['name']:<{width}}  float32 {spec['shape']}  {spec['description']}")
    align = (f"; the padding to a multiple of {result.alignment} is in the graph"
             if result.alignment > 1 else "")
    print(f"  dynamic axes: {', '.join(result.dynamic_axes)} (any batch and image size{align})")
    tool = "onnxruntime" if result.checked_with == "onnxruntime" else "the PyTorch trace"
    print(f"  checked on a batch of another size with {tool}: max |exported - PyTorch| = "
          f"{result.max_difference:.1e}")
    if result.format == "torchscript":
        print("  load: torch.jit.load(FILE); the description is its extra file denoise.json")
    return 0
