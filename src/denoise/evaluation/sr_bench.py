"""Benchmark super-resolution models by the SR literature's protocol, on its own test inputs.

The sets are read from ``<data root>/SR_LR/<set>/{HR,LR}/xS`` (Set5 and Set14 as the SR
papers evaluate them: the published low-resolution inputs and the high-resolution images
cropped to a multiple of the scale), or from any folder holding ``HR/xS`` and ``LR/xS``.
Every model runs through :func:`denoise.upscale.upscale`; :data:`SR_PROTOCOL` says how it is
scored, :data:`PUBLISHED` holds the figures printed beside ours. The results and their
tables are in :mod:`denoise.evaluation.sr_report`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..degrade import imresize, sr_psnr, sr_ssim
from ..errors import InputError, ModelError
from ..inference import DEFAULT, ModelName, model_for, parse_model_name
from ..io import list_images, read_image, rgb_to_gray
from ..models.base import contract
from ..models.registry import get_entry
from ..models.user import looks_like_path
from ..upscale import DEFAULT_SR, SCALES, check_scale, entry_scales, upscale
from .sr_report import PUBLISHED, SR_PROTOCOL, SRBenchReport, SRImageScore, SRResult
from .testsets import data_root

__all__ = ["PUBLISHED", "SR_PROTOCOL", "SRBenchReport", "SRModel", "load_sr_set", "resolve_sr_model",
           "sr_bench", "sr_scale_folders", "sr_set_folder", "sr_upscale"]

#: The folder of the data root that holds the SR test sets.
SR_FOLDER = "SR_LR"
#: Side of the crop each model upscales, untimed, before the timed images of a scale.
WARM_UP_SIZE = 48


@dataclass(frozen=True)
class SRModel:
    """One model of the benchmark, resolved before any work."""

    label: str  # how the tables name it
    name: str  # what :func:`denoise.upscale.upscale` is given
    scales: tuple[int, ...]  # the scales it upscales by
    channels: int | None = None  # the channel count it takes (None: any)
    missing: str = ""  # why it cannot run here ("" when it can)


def resolve_sr_model(name: str) -> SRModel:
    """The scales, channels and availability of a registered name, a user model or a path
    ("default" is bicubic). ModelError for an unknown name or unreadable weights,
    InputError for a model that does not upscale."""
    label = DEFAULT_SR if name == DEFAULT else name
    parsed = parse_model_name(label)
    channels, missing = None, ""
    if looks_like_path(parsed.base):
        net = model_for(ModelName(parsed.base))  # one line if it cannot be loaded
        scales = (contract(net).scale,) if contract(net).scale in SCALES else ()
        channels = getattr(net, "channels", None)
    else:
        entry = get_entry(parsed.base)
        scales = entry_scales(entry)
        missing = "; ".join(entry.missing())
        if scales and not missing and not getattr(entry.factory, "any_scale", False):
            channels = getattr(model_for(ModelName(parsed.base)), "channels", None)
    if not scales:
        raise InputError(f"model {parsed.base!r} does not upscale (a denoiser); benchmark it with "
                         "denoise bench --task denoise")
    return SRModel(label, str(parsed), scales, channels, missing)


def sr_set_folder(spec: str) -> Path:
    """The folder of an SR test set: a folder holding ``HR/`` and ``LR/``, or the name of
    one under ``<data root>/SR_LR`` (Set5, Set14)."""
    path = Path(spec)
    if (path / "HR").is_dir() and (path / "LR").is_dir():
        return path
    root = data_root()
    if root is None or not (root / SR_FOLDER).is_dir():
        raise InputError(f"SR test set {spec!r}: no {SR_FOLDER} folder in the data folder "
                         f"({root or 'none found'}); set DENOISE_DATA, or give a folder holding HR/xS and LR/xS")
    folder = root / SR_FOLDER / str(spec)
    if "/" in str(spec) or not (folder / "HR").is_dir() or not (folder / "LR").is_dir():
        known = sorted(p.name for p in (root / SR_FOLDER).iterdir() if (p / "HR").is_dir())
        raise InputError(f"unknown SR test set {spec!r}; available in {root / SR_FOLDER}: "
                         f"{', '.join(known) or 'none'} (or a folder holding HR/xS and LR/xS)")
    return folder


def _lr_file(lr_dir: Path, hr: Path) -> Path:
    """The LR file paired with an HR one: the same name with ``_HR`` replaced by ``_LR``
    (the SR_LR convention), else the same name."""
    for candidate in (hr.name.replace("_HR", "_LR"), hr.name):
        if (lr_dir / candidate).is_file():
            return lr_dir / candidate
    raise InputError(f"no low-resolution input for {hr.name} in {lr_dir}")


def check_scales(scales: Sequence[int]) -> list[int]:
    """The scales as ints, each once; InputError for one that is not 2, 3 or 4."""
    return list(dict.fromkeys(check_scale(s) for s in scales))


def sr_scale_folders(spec: str, scale: int) -> tuple[Path, Path, Path]:
    """``(set folder, HR/xS, LR/xS)`` of an SR test set at one scale (nothing is read);
    InputError when the set, or its images at that scale, cannot be found."""
    folder = sr_set_folder(spec)
    hr_dir, lr_dir = folder / "HR" / f"x{scale}", folder / "LR" / f"x{scale}"
    if not hr_dir.is_dir() or not lr_dir.is_dir() or not list_images(hr_dir):
        raise InputError(f"SR test set {spec!r} has no x{scale} images (expected {hr_dir} and {lr_dir})")
    return folder, hr_dir, lr_dir


def load_sr_set(spec: str, scale: int, *, max_images: int | None = None
                ) -> tuple[str, list[tuple[str, torch.Tensor, torch.Tensor]]]:
    """``(label, [(image name, LR (1, C, h, w), HR (1, C, s h, s w)), ...])`` of a set at one
    scale, sorted by file name. The label is the set's name (it selects the published
    figures), marked when only the first ``max_images`` are used."""
    scale = check_scale(scale)
    folder, hr_dir, lr_dir = sr_scale_folders(spec, scale)
    files = list_images(hr_dir)
    label = folder.resolve().name
    if max_images is not None and max_images < len(files):
        files, label = files[:max_images], f"{label} (first {max_images})"
    images = []
    for hr_path in files:
        lr_path = _lr_file(lr_dir, hr_path)
        hr, lr = read_image(hr_path)[0], read_image(lr_path)[0]
        if hr.shape[1] != lr.shape[1] or hr.shape[-2:] != (scale * lr.shape[-2], scale * lr.shape[-1]):
            raise InputError(f"{hr_path.name} ({hr.shape[-2]}x{hr.shape[-1]}) is not x{scale} of "
                             f"{lr_path.name} ({lr.shape[-2]}x{lr.shape[-1]}) with the same channels")
        images.append((hr_path.stem.replace("_HR", ""), lr, hr))
    return label, images


def sr_upscale(lr: torch.Tensor, scale: int, model: SRModel, *, device: str = "cpu") -> torch.Tensor:
    """Upscale ``lr`` with ``model`` through :func:`denoise.upscale.upscale` (whole images,
    untiled), in [0, 1], with ``lr``'s channel count.

    A one-channel (luma) model on a colour image upscales the luma (BT.601 weights,
    :func:`denoise.io.rgb_to_gray`) and bicubic interpolation the chroma: the output is the
    bicubic upscale plus, on every channel, the model's luma minus the bicubic luma (the
    luma is linear, so the chroma stay bicubic's). A colour model on a gray image gets the
    gray repeated over three channels; its output's luma is kept.
    """
    c = lr.shape[1]
    if model.channels is None or model.channels == c:
        return upscale(lr, scale, model.name, tile=None, device=device)
    if model.channels == 1:
        carrier = imresize(lr, scale)
        luma = upscale(rgb_to_gray(lr), scale, model.name, tile=None, device=device)
        return (carrier + (luma - rgb_to_gray(carrier))).clamp(0.0, 1.0)
    out = upscale(lr.expand(-1, 3, -1, -1).contiguous(), scale, model.name, tile=None, device=device)
    return rgb_to_gray(out).clamp(0.0, 1.0)


def score_sr(name: str, sr: torch.Tensor, hr: torch.Tensor, scale: int, seconds: float = 0.0,
             cpu_seconds: float = 0.0) -> SRImageScore:
    """PSNR and SSIM on Y of one output by the papers' protocol (border shave = scale)."""
    return SRImageScore(name, float(sr_psnr(sr, hr, scale)[0]), float(sr_ssim(sr, hr, scale)[0]),
                        seconds, cpu_seconds, hr.shape[-2] * hr.shape[-1])


def _timed(lr: torch.Tensor, scale: int, model: SRModel, device: str) -> tuple[torch.Tensor, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    sr = sr_upscale(lr, scale, model, device=device)
    return sr, time.perf_counter() - wall, time.process_time() - cpu


def _resolve_all(models: Sequence[str]) -> list[SRModel]:
    resolved = list({m.label: m for m in map(resolve_sr_model, models)}.values())
    if all(m.missing for m in resolved):
        raise ModelError("no model can run here: " + "; ".join(f"{m.label}: {m.missing}" for m in resolved)
                         + " ('denoise models' lists the ready ones)")
    return resolved


def _notes(models: list[SRModel], scales: Sequence[int]) -> list[str]:
    notes = []
    for m in models:
        if m.missing:
            notes.append(f"{m.label}: not run: {m.missing}")
        elif any(s not in m.scales for s in scales):
            skipped = ", ".join(f"x{s}" for s in scales if s not in m.scales)
            notes.append(f"{m.label}: upscales by {', '.join(f'x{s}' for s in m.scales)} only; "
                         f"{skipped} skipped")
    return notes


def sr_bench(sets: Sequence[str], scales: Sequence[int], models: Sequence[str], *,
             max_images: int | None = None, progress: bool = True, device: str = "cpu") -> SRBenchReport:
    """Every model on every set at every scale (see :data:`SR_PROTOCOL`).

    Models are registry names, user models or paths ("default" = bicubic). A model that
    does not upscale by a scale is skipped there, one whose weights are missing is not
    run; both are said in the report's notes (its cells are "–"). Every input is checked,
    and every set read, before the first model runs.
    """
    from tqdm.auto import tqdm

    if not sets or not scales or not models:
        raise InputError("the SR benchmark needs at least one set, one scale and one model")
    scales = check_scales(scales)
    resolved = _resolve_all(models)
    if not any(s in m.scales for m in resolved if not m.missing for s in scales):
        raise InputError("no model asked for upscales by " + ", ".join(f"x{s}" for s in scales)
                         + "; " + "; ".join(_notes(resolved, scales)))
    loaded = [(scale, load_sr_set(spec, scale, max_images=max_images)) for spec in sets for scale in scales]
    runnable = [m for m in resolved if not m.missing]
    total = sum(len(images) for s, (_, images) in loaded for m in runnable if s in m.scales)
    results: list[SRResult] = []
    with tqdm(total=total, desc="bench sr", unit="img", disable=None if progress else True) as bar:
        for scale, (label, images) in loaded:
            for model in resolved:
                result = SRResult(label, scale, model.label)
                results.append(result)
                if model.missing or scale not in model.scales:
                    continue
                bar.set_postfix_str(f"{label} x{scale} {model.label}")
                warm = images[0][1][..., :WARM_UP_SIZE, :WARM_UP_SIZE]
                sr_upscale(warm, scale, model, device=device)  # untimed: loading, first calls
                for name, lr, hr in images:
                    sr, seconds, cpu = _timed(lr, scale, model, device)
                    result.images.append(score_sr(name, sr, hr, scale, seconds, cpu))
                    bar.update()
    return SRBenchReport(results, _notes(resolved, scales), str(device), torch.get_num_threads())
