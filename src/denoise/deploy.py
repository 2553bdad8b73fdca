"""Export a learned model to ONNX or TorchScript, to run it without this package.

    denoise export --model n2n-unet-gray --format onnx -o n2n-unet-gray.onnx
    export_model("n2n-unet-gray", "n2n-unet-gray.onnx")

Every learned model exports: shipped, a user model, weights named by a path, an
architecture (random initial weights: only to test a pipeline), any of them with ``+x8``
(the self-ensemble, in the graph). Classical models (``dct``, ``bm3d``, ...) are
algorithms, not networks, and are refused. The exported model's inputs, float32:

* ``image``: (N, C, H, W), values on the 0-1 scale (8-bit values / 255); C is fixed by
  the model (1: gray, 3: RGB); N, H and W are dynamic (any batch, any image size). The
  padding to a multiple of the model's alignment (32 for the Noise2Noise U-Net) and the
  crop back are computed in the graph from the runtime shape.
* ``sigma``, only for models that take a noise level (FFDNet): (N, 1, H, W), the noise
  standard deviation of each pixel on the 0-1 scale (sigma on the 0-255 scale / 255);
  a constant map gives one level to the whole image. Same N, H, W as ``image``.

Output ``output``: (N, C, scale * H, scale * W) float32 on the 0-1 scale, not clamped
(``denoise`` clamps to [0, 1] before writing an image): the PyTorch ``model(image, sigma)``.
Every export is checked on a batch of another size and noise map before it is written,
with onnxruntime when installed, else on the PyTorch trace the ONNX graph is made from.

The file carries this description: the ONNX ``doc_string`` (model, inputs, output) and
``metadata_props`` (keys ``denoise.*``); TorchScript's extra file ``denoise.json``
(``torch.jit.load(path, _extra_files={"denoise.json": ""})``). ONNX export uses PyTorch's
TorchScript-based exporter (``dynamo=False``) and needs ``pip install 'denoise[onnx]'``
(onnx, onnxruntime). Files are written atomically, never over an existing one unless
``overwrite=True``.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .errors import InputError, MissingDependencyError, ModelError, OutputError
from .models.base import contract
from .models.ensemble import SelfEnsemble
from .utils import output_file

FORMATS = ("onnx", "torchscript")
#: File suffixes that name a format (for the command line's default).
SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".pth": "torchscript", ".ts": "torchscript",
            ".torchscript": "torchscript"}
#: The ONNX opset written by default (read by onnxruntime >= 1.12 and current runtimes), and
#: the range the TorchScript-based exporter writes.
DEFAULT_OPSET, OPSETS = 17, (11, 20)
#: Largest |exported - PyTorch| accepted by the check before writing.
TOLERANCE = 1e-4
#: The example the graph is traced with, and the batch it is checked on: (N, H, W) of
#: other batch sizes, sides of the other parity and remainders modulo 2, 8 and 32, so that
#: a size or a branch baked into the graph shows.
EXAMPLE_SHAPE = (1, 35, 42)
CHECK_SHAPE = (2, 30, 51)


@dataclass
class ExportResult:
    """What :func:`export_model` wrote."""

    path: Path
    format: str
    model: str  # the model's name (or path) as resolved
    channels: int
    inputs: list[dict]  # name, shape, description
    output: dict
    dynamic_axes: list[str]
    alignment: int
    trained: bool
    checked_with: str  # "onnxruntime" or "torch" (the trace), what compared the outputs
    max_difference: float  # max |exported - PyTorch| on the check batch
    opset: int | None = None
    size_bytes: int = 0
    metadata: dict = field(default_factory=dict)


class ExportModule(nn.Module):
    """The module that is traced: ``image`` [and ``sigma``] -> ``output`` (see the module
    docstring for names, shapes and scales)."""

    def __init__(self, model: nn.Module, takes_sigma: bool):
        super().__init__()
        # ONNX has no rot90: the self-ensemble is traced as flips and transposes
        self.model = TraceableEnsemble(model.model) if isinstance(model, SelfEnsemble) else model
        self.takes_sigma = takes_sigma

    def forward(self, image: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(image, sigma if self.takes_sigma else None)


def _symmetry(x: torch.Tensor, s: int, inverse: bool = False) -> torch.Tensor:
    """:func:`denoise.symmetries.transform` (or ``inverse``) with rot90 as flips and a
    transpose (ONNX has no rot90)."""
    x = x.flip(-1) if inverse and s >= 4 else x
    k = (-s if inverse else s) % 4
    if k in (1, 3):
        x = x.flip(-1 if k == 1 else -2).transpose(-2, -1)
    elif k == 2:
        x = x.flip(-2).flip(-1)
    return x.flip(-1) if s >= 4 and not inverse else x


class TraceableEnsemble(nn.Module):
    """:class:`denoise.models.ensemble.SelfEnsemble` (the same symmetries of
    :mod:`denoise.symmetries`, summed in the same order) in ops that export to ONNX."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        total = None
        for s in range(8):
            sig = None if sigma is None else _symmetry(sigma, s)
            y = _symmetry(self.model(_symmetry(x, s), sig), s, inverse=True)
            total = y if total is None else total + y
        return total / 8


def format_from_path(path: str | Path) -> str | None:
    """The format a file name implies (``.onnx``; ``.pt``, ``.ts``: TorchScript), or None."""
    return SUFFIXES.get(Path(path).suffix.lower())


def exportable_models() -> tuple[list[str], list[str]]:
    """``(trained, architectures)``: the learned names with weights here (shipped and the
    user's own), and the learned architectures (exported with random weights)."""
    from .models.registry import list_models

    entries = [e for e in list_models() if e.kind == "learned" and getattr(e.factory, "exportable", True)]
    trained = [e.name for e in entries if e.pretrained and e.has_weights()]
    return trained, [e.name for e in entries if not e.pretrained]


def _refuse_classical(name: str) -> InputError:
    trained, archs = exportable_models()
    return InputError(
        f"model {name!r} is not a network these formats hold (a classical algorithm, or a "
        f"framework of its own) and cannot be "
        f"exported to ONNX or TorchScript; exportable: {', '.join(trained) or 'none shipped'}; "
        f"architectures with random weights: {', '.join(archs)}; or a path to your own weights")


def resolve_model(name: str | nn.Module, channels: int | None = None) -> tuple[str, nn.Module, int, bool]:
    """``(label, model in eval mode on the CPU, channels, trained)`` for an export.

    ``name``: a registered or user model name, a path (as for ``denoise run``), "default"
    (with ``channels``), any of them with ``+x8``, or a module with the model contract
    (copied, never changed). InputError for a classical model or a channel count the model
    does not take; an architecture gives its random initial weights, with a warning.
    """
    from .inference import DEFAULT, default_model_name, parse_model_name
    from .models.registry import create_model, get_entry
    from .models.user import looks_like_path, model_from_path

    if channels is not None and channels not in (1, 3):
        raise InputError(f"channels must be 1 (gray) or 3 (color), got {channels!r}")
    trained, ensemble = True, False
    if isinstance(name, nn.Module):
        contract(name)  # ModelError when it is not a model
        label, model = type(name).__name__, copy.deepcopy(name).cpu()
    else:
        parsed = parse_model_name(name)
        base, ensemble = parsed.base, parsed.ensemble
        if base == DEFAULT:
            if channels is None:
                raise InputError("'default' is a different model for gray and color images: "
                                 "pass channels=1 or 3 (--channels)")
            base = default_model_name(channels)
        if looks_like_path(base):
            label, model = model_from_path(base)
        else:
            entry = get_entry(base)  # ModelError listing the known names
            label = base
            if entry.kind != "learned" or not getattr(entry.factory, "exportable", True):
                raise _refuse_classical(base)
            if channels is not None and entry.channels is not None and channels != entry.channels:
                raise InputError(f"model {base!r} takes {'gray' if entry.channels == 1 else 'color'} "
                                 f"images only (channels={entry.channels}), not channels={channels}")
            if entry.pretrained:
                if not entry.has_weights():
                    raise ModelError(f"model {base!r} has no trained weights here, so there is nothing "
                                     f"to export (its architecture {entry.architecture!r} exports with "
                                     "random weights, to test a pipeline)")
                model = create_model(base)
            else:
                try:
                    model = create_model(base, pretrained=False,
                                         **({} if channels is None else {"channels": channels}))
                except TypeError:
                    raise InputError(f"model {base!r} takes no channels argument") from None
                trained = False
                warnings.warn(f"model {base!r} is an architecture without trained weights: the export "
                              "holds its random initial weights (only useful to test a pipeline)",
                              stacklevel=3)
    own = getattr(model, "channels", None)
    if channels is not None and own is not None and own != channels:
        raise InputError(f"model {label!r} takes {own}-channel images, not channels={channels}")
    channels = own if own is not None else channels
    if channels is None:
        raise InputError(f"model {label!r} does not say how many channels it takes: pass channels=1 "
                         "or 3 (--channels)")
    model = model.eval()
    if ensemble:
        model, label = SelfEnsemble(model), label + "+x8"
    return label, model, channels, trained


def _io_spec(c, channels: int) -> tuple[list[dict], dict, dict]:
    """The inputs, the output and the dynamic axes of an export."""
    h, w = ("H", "W") if c.scale == 1 else ("H_out", "W_out")  # H_out = scale * H
    inputs = [{"name": "image", "shape": f"[N, {channels}, H, W]",
               "description": f"images, values on the 0-1 scale (8-bit / 255), "
                              f"{'gray' if channels == 1 else 'RGB'}; any N, H, W"}]
    if c.uses_sigma:
        inputs.append({"name": "sigma", "shape": "[N, 1, H, W]",
                       "description": "noise level map: the noise standard deviation of "
                                      "each pixel on the 0-1 scale (sigma_255 / 255); same N, H, W "
                                      "as image; a constant map for one level"})
    output = {"name": "output", "shape": f"[N, {channels}, {h}, {w}]",
              "description": "restored images on the 0-1 scale, not clamped (clamp to [0, 1], then "
                             f"* 255 and round, for 8 bits){f'; {h} = {c.scale} H' if c.scale != 1 else ''}"}
    axes = {i["name"]: {0: "N", 2: "H", 3: "W"} for i in inputs} | {"output": {0: "N", 2: h, 3: w}}
    return inputs, output, axes


def _example(shape: tuple[int, int, int], channels: int, uses_sigma: bool, seed: int) -> tuple:
    """A random batch (and a spatially varying noise map in [0.02, 0.2]) of ``shape``."""
    g = torch.Generator().manual_seed(seed)
    n, h, w = shape
    image = torch.rand(n, channels, h, w, generator=g)
    if not uses_sigma:
        return (image,)
    ramp = torch.linspace(0.02, 0.2, w).expand(n, 1, h, w)
    return image, (ramp + 0.02 * torch.rand(n, 1, h, w, generator=g)).clamp(0.02, 0.2).contiguous()


@contextlib.contextmanager
def _quiet():
    """Tracing without the deprecation and tracer warnings (the check below is the proof)."""
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning, torch.jit.TracerWarning):
            warnings.simplefilter("ignore", category)
        yield


@contextlib.contextmanager
def _silent_fds():
    """File descriptors 1 and 2 sent to a scratch file: the TorchScript-based ONNX exporter
    logs its whole graph from C++ when it fails (the error says what went wrong)."""
    def flush():
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()

    flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        with tempfile.TemporaryFile() as scratch:
            for fd in saved:
                os.dup2(scratch.fileno(), fd)
            yield
    finally:
        flush()
        for fd, copy_of in saved.items():
            os.dup2(copy_of, fd)
            os.close(copy_of)


def _failed(label: str, fmt: str, exc: BaseException) -> ModelError:
    text = " ".join(str(exc).split())[:300] or type(exc).__name__
    return ModelError(f"model {label!r} cannot be exported to {fmt}: {text}")


def _check(label: str, reference: torch.Tensor, out, what: str) -> float:
    """max |out - reference|; a ModelError above :data:`TOLERANCE` or for another shape."""
    out = torch.as_tensor(out)
    diff = float((out - reference).abs().max()) if out.shape == reference.shape else float("inf")
    if not diff <= TOLERANCE:  # also NaN
        raise ModelError(f"model {label!r} cannot be exported: its {what} differs from PyTorch (max "
                         f"{diff:.3g}, shape {tuple(out.shape)}) on a {CHECK_SHAPE[1]}x{CHECK_SHAPE[2]} "
                         "batch (Python control flow on the image size or noise level does not survive tracing)")
    return diff


def _metadata(label: str, fmt: str, channels: int, c, trained: bool, inputs, output, opset) -> dict:
    meta = {"model": label, "version": __version__, "format": fmt, "channels": channels,
            "trained": str(trained).lower(), "inputs": json.dumps(inputs), "output": json.dumps(output),
            "dynamic_axes": "N, H, W", "value_range": "0-1",
            "sigma_scale": "0-1 (sigma_255 / 255)" if c.uses_sigma else "none (blind model)",
            "alignment": c.alignment, "scale": c.scale, "receptive_field": c.receptive_field, "opset": opset}
    return {f"denoise.{k}": str(v) for k, v in meta.items() if v is not None}


def _doc(label: str, inputs, output, trained: bool) -> str:
    state = "trained" if trained else "untrained: random weights"
    lines = [f"denoise model {label} ({state}), exported by denoise {__version__}."]
    lines += [f"input {i['name']} float32 {i['shape']}: {i['description']}" for i in inputs]
    lines.append(f"output {output['name']} float32 {output['shape']}: {output['description']}")
    lines.append("N, H and W are dynamic; padding to the model's alignment happens inside.")
    return "\n".join(lines)


def _onnx_bytes(module: ExportModule, example: tuple, names: list[str], axes: dict, opset: int) -> bytes:
    buf = io.BytesIO()
    with _quiet(), _silent_fds(), torch.no_grad():
        torch.onnx.export(module, example, buf, dynamo=False, opset_version=opset, input_names=names,
                          output_names=["output"], dynamic_axes=axes, do_constant_folding=True)
    return buf.getvalue()


def _trace(label: str, fmt: str, module: nn.Module, example: tuple, check: tuple):
    """``(traced module, its output on check)``; a one-line ModelError if tracing fails."""
    try:
        with _quiet(), torch.no_grad():
            traced = torch.jit.trace(module, example, check_trace=False)
            return traced, traced(*check)
    except Exception as exc:  # noqa: BLE001 - any tracer failure, in one line
        raise _failed(label, fmt, exc) from None


def _run_onnxruntime(data: bytes, feeds: dict) -> object | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.log_severity_level = 3
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return session.run(["output"], {k: v.numpy() for k, v in feeds.items()})[0]


def export_model(name: str | nn.Module, path: str | Path, *, format: str = "onnx",
                 channels: int | None = None, opset: int = DEFAULT_OPSET,
                 overwrite: bool = False) -> ExportResult:
    """Export learned model ``name`` to ``path`` as ONNX or TorchScript (see the module
    docstring for the inputs, outputs and what is checked).

    ``channels`` picks 1 or 3 for names that take either (architectures, "default");
    ``opset`` is the ONNX opset (11-20). The file is written atomically, and an existing
    one is replaced only with ``overwrite=True``. Errors are one-line
    :class:`denoise.errors.DenoiseError`\\ s, raised before anything is written.
    """
    if format not in FORMATS:
        raise InputError(f"unknown export format {format!r}; use one of {', '.join(FORMATS)}")
    if format == "onnx" and (isinstance(opset, bool) or not isinstance(opset, int)
                             or not OPSETS[0] <= opset <= OPSETS[1]):
        raise InputError(f"opset must be an integer from {OPSETS[0]} to {OPSETS[1]}, got {opset!r}")
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give the file to write (-o FILE)")
    if not (path.parent if str(path.parent) else Path(".")).is_dir():
        raise OutputError(f"output folder does not exist: {path.parent}")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists; pass --force (overwrite=True) to replace it")

    label, model, channels, trained = resolve_model(name, channels)  # classical: refused here
    if format == "onnx":
        try:
            import onnx
        except ImportError:
            raise MissingDependencyError("ONNX export needs the onnx package: "
                                         "pip install 'denoise[onnx]'") from None
    c = contract(model)
    inputs, output, axes = _io_spec(c, channels)
    names = [i["name"] for i in inputs]
    module = ExportModule(model, c.uses_sigma).eval()
    example = _example(EXAMPLE_SHAPE, channels, c.uses_sigma, seed=0)
    check = _example(CHECK_SHAPE, channels, c.uses_sigma, seed=1)
    try:
        with torch.no_grad():
            reference = module(*check)
    except Exception as exc:  # noqa: BLE001 - a model that does not run on the inputs of an export
        raise _failed(label, format, exc) from None
    meta = _metadata(label, format, channels, c, trained, inputs, output, opset if format == "onnx" else None)

    if format == "onnx":
        try:
            data = _onnx_bytes(module, example, names, axes, opset)
            proto = onnx.load_model_from_string(data)
            proto.doc_string = _doc(label, inputs, output, trained)
            for value, spec in [*zip(proto.graph.input, inputs), (proto.graph.output[0], output)]:
                value.doc_string = f"float32 {spec['shape']}: {spec['description']}"
            for key, value in meta.items():
                prop = proto.metadata_props.add()
                prop.key, prop.value = key, value
            onnx.checker.check_model(proto)
            data = proto.SerializeToString()
            out = _run_onnxruntime(data, dict(zip(names, check)))
        except Exception as exc:  # noqa: BLE001 - an exporter failure, in one line
            raise _failed(label, format, exc) from None
        checked_with = "onnxruntime" if out is not None else "torch"
        if out is None:  # no onnxruntime: check the trace the ONNX graph was made from
            out = _trace(label, format, module, example, check)[1]
        diff = _check(label, reference, out, "ONNX graph" if checked_with == "onnxruntime" else "trace")
        with output_file(path, overwrite=overwrite) as tmp:
            tmp.write_bytes(data)
    else:
        traced, out = _trace(label, format, module, example, check)
        diff, checked_with = _check(label, reference, out, "TorchScript trace"), "torch"
        extra = {"denoise.json": json.dumps({**meta, "doc": _doc(label, inputs, output, trained)}, indent=1)}
        with output_file(path, overwrite=overwrite) as tmp, _quiet():
            torch.jit.save(traced, str(tmp), _extra_files=extra)
    return ExportResult(path, format, label, channels, inputs, output, ["N", "H", "W"], c.alignment,
                        trained, checked_with, diff, opset if format == "onnx" else None,
                        path.stat().st_size, meta)
