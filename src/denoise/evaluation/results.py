"""The results report: every shipped denoiser and the classical baselines on the field's
test sets, beside the published figures, with costs measured in the same run.

:func:`run_report` measures and ranks; :mod:`.results_report` writes ``RESULTS.md``,
``results.json``, ``quality_speed.png`` and the ranking that ``default`` follows
(:func:`denoise.inference.default_model_name`).

* Quality: the benchmark's protocol (:data:`denoise.evaluation.bench.PROTOCOL`, the same
  noise draws, scores and clipping; built from its functions).
* Cost: CPU seconds (``time.process_time``, all threads of the process) of each forward
  pass through :func:`denoise.inference.restore`, after an untimed warm-up on a crop, per
  megapixel; the wall seconds are kept beside them.
* Cost references: the published FFDNet and DnCNN architectures (this package's
  ``ffdnet`` and ``dncnn`` with their published sizes: gray FFDNet 15 x 64 and DnCNN 17 x 64,
  color FFDNet 12 x 96 and DnCNN 20 x 64), built from the registry with seeded random
  initial weights and **no weights loaded**, timed on the same noisy images in the same
  run (their outputs are not scored), and a few training steps of each on random crops.
* Ranking: per channel count, the models by mean PSNR over that channel count's sets at
  sigma 25 (single pass), each with its CPU time relative to the FFDNet architecture's; a
  model may become ``default`` when it ships with the package and needs no optional package.
* Super-resolution: the shipped SR models and bicubic on Set5 and Set14 by the SR
  benchmark's protocol (:mod:`.results_sr`), after the denoisers; not part of the ranking.
"""
from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Sequence

import torch
from torch import nn

from ..errors import InputError, ModelError
from ..inference import check_denoiser, parse_model_name, restore, supports_channels
from .bench import (
    NOISY,
    PROTOCOL,
    PUBLISHED,
    WARM_UP_SIZE,
    ImageScore,
    SetResult,
    add_noise,
    load_test_set,
    score_image,
)
from .report import mean
from .results_sr import SR_SCALES, SR_SETS, run_sr
from .sr_bench import check_scales
from .sr_report import SRBenchReport

#: The field's test sets: gray Set12 and BSD68, color CBSD68 and Kodak24 (500 x 500 crops).
DEFAULT_SETS = ("Set12", "BSD68", "CBSD68", "Kodak24")
#: The noise levels of the published tables (0-255 scale).
DEFAULT_SIGMAS = (15.0, 25.0, 50.0)
#: The noise level of the ranking and of the figure.
RANK_SIGMA = 25.0
#: The classical baselines run beside the shipped models (when they can run here).
CLASSICAL = ("dct", "bm3d")
#: Cost references: label -> registered architecture; the label is also the method's
#: name in the published tables.
REFERENCES = {"FFDNet": "ffdnet", "DnCNN": "dncnn"}
#: The reference every cost is compared with (the issue's cost bar: at most its CPU time).
CEILING = "FFDNet"
#: Images per set with ``--quick``.
QUICK_IMAGES = 2
#: The training step (the DnCNN paper's batch and crop) the measured training cost is scaled to.
RECIPE_BATCH, RECIPE_CROP = 128, 50
#: The report's files.
RESULTS_MD, RESULTS_JSON, FIGURE = "RESULTS.md", "results.json", "quality_speed.png"


def reference_label(label: str) -> str:
    """How a cost reference is shown: ``"FFDNet arch."``."""
    return f"{label} arch."


def shipped_models() -> list[str]:
    """The denoisers whose weights ship with the package, then the classical baselines
    of :data:`CLASSICAL` that can run here (no super-resolution model: see
    :func:`.results_sr.shipped_sr_models`)."""
    from ..models.registry import get_entry, list_models

    learned = [e.name for e in list_models(user=False)
               if e.kind == "learned" and e.pretrained and e.scale == 1 and e.available()]
    return learned + [name for name in CLASSICAL if get_entry(name, user=False).available()]


@dataclass
class Measured(SetResult):
    """One model on one set at one noise level; image seconds are CPU seconds."""

    channels: int = 1
    wall_seconds: float = 0.0
    reference: bool = False  # a published architecture with random weights: timed only

    def to_dict(self) -> dict:
        return {**super().to_dict(), "channels": self.channels, "cpu_seconds": self.seconds,
                "cpu_s_per_mp": self.sec_per_mp, "wall_seconds": self.wall_seconds,
                "reference": self.reference}


@dataclass
class TrainCost:
    """CPU seconds of training steps of a reference architecture on random crops."""

    label: str
    channels: int
    batch: int
    crop: int
    steps: int
    cpu_seconds: float

    @property
    def cpu_s_per_mp(self) -> float:
        """CPU seconds per megapixel of training crops (forward, backward, Adam update)."""
        return self.cpu_seconds / (self.steps * self.batch * self.crop ** 2 / 1e6)

    @property
    def recipe_step(self) -> float:
        """Estimated CPU seconds of one step at :data:`RECIPE_BATCH` x :data:`RECIPE_CROP`."""
        return self.cpu_s_per_mp * RECIPE_BATCH * RECIPE_CROP ** 2 / 1e6

    def to_dict(self) -> dict:
        return {"architecture": self.label, "channels": self.channels, "batch": self.batch,
                "crop": self.crop, "steps": self.steps, "cpu_seconds": self.cpu_seconds,
                "cpu_s_per_mp": self.cpu_s_per_mp,
                f"cpu_s_per_step_{RECIPE_BATCH}x{RECIPE_CROP}": self.recipe_step}


@dataclass
class Report:
    """Everything one run of the report measured, and how."""

    results: list[Measured]
    references: list[Measured]
    training: list[TrainCost]
    sets: dict[str, int]  # set label -> channels
    sigmas: list[float]
    seed: int
    threads: int
    command: str = ""
    date: str = ""
    machine: dict = field(default_factory=dict)
    sr: SRBenchReport | None = None  # the super-resolution part (None: not run)
    sr_note: str = ""  # why (part of) it was not run

    @property
    def rank_sigma(self) -> float:
        return RANK_SIGMA if RANK_SIGMA in self.sigmas else self.sigmas[0]

    def groups(self) -> list[int]:
        """The channel counts of the sets, gray first."""
        return sorted(set(self.sets.values()))

    def group_sets(self, channels: int) -> list[str]:
        return [name for name, c in self.sets.items() if c == channels]

    def models(self, channels: int | None = None) -> list[str]:
        """The models that ran (on sets of ``channels`` channels), in run order."""
        return list(dict.fromkeys(r.model for r in self.results if r.model != NOISY
                                  and (channels is None or r.channels == channels)))

    def find(self, name: str, sigma: float, model: str) -> Measured | None:
        return next((r for r in self.results if (r.set, r.sigma, r.model) == (name, sigma, model)), None)

    def cost(self, model: str, channels: int, *, wall: bool = False) -> float:
        """CPU (or wall) seconds per megapixel of ``model`` over every run on sets of
        ``channels`` channels; a reference label for a published architecture."""
        runs = [r for r in self.results + self.references if r.model == model and r.channels == channels]
        mp = sum(r.megapixels for r in runs)
        seconds = sum(r.wall_seconds if wall else r.seconds for r in runs)
        return seconds / mp if mp else math.nan

    def ranking(self) -> dict[int, list[dict]]:
        """Per channel count, every model run on all its sets, best mean PSNR first, with
        its cost and whether it may be ``default`` (``why_not`` says why it may not)."""
        out = {}
        for channels in self.groups():
            sets, ceiling = self.group_sets(channels), self.cost(reference_label(CEILING), channels)
            rows = []
            for model in self.models(channels):
                runs = [self.find(name, self.rank_sigma, model) for name in sets]
                if any(r is None for r in runs):
                    continue
                cost = self.cost(model, channels)
                rows.append({"model": model, "psnr": mean(r.psnr for r in runs),
                             "ssim": mean(r.ssim for r in runs), "cpu_s_per_mp": cost,
                             "vs_ffdnet": cost / ceiling, "why_not": _why_not(model)})
            rows.sort(key=lambda row: -row["psnr"])
            out[channels] = [{**row, "eligible": not row["why_not"]} for row in rows]
        return out

    def default_order(self) -> dict[int, list[str]]:
        """Per channel count, the models ``default`` may stand for, best first."""
        return {c: [row["model"] for row in rows if row["eligible"]] for c, rows in self.ranking().items()}

    def to_dict(self) -> dict:
        sr = {"sr": self.sr.to_dict()} if self.sr is not None else {}
        return {"date": self.date, "command": self.command, "machine": self.machine,
                "threads": self.threads, "seed": self.seed, "sigmas": self.sigmas,
                "sets": self.sets, "protocol": PROTOCOL, "rank_sigma": self.rank_sigma,
                "results": [r.to_dict() for r in self.results],
                "references": [r.to_dict() for r in self.references],
                "training_cost": [t.to_dict() for t in self.training],
                "ranking": {str(c): rows for c, rows in self.ranking().items()},
                "published_psnr": {f"{name} / {s:g}": PUBLISHED[(name, int(s))] for name in self.sets
                                   for s in self.sigmas if s.is_integer() and (name, int(s)) in PUBLISHED},
                **sr, **({"sr_note": self.sr_note} if self.sr_note else {})}


def _why_not(model: str) -> str:
    """Why ``model`` may not be ``default`` ("" when it may): it must ship with the package,
    run in one pass and need no optional package (``default`` is the same on every install)."""
    from ..models.registry import get_entry

    parsed = parse_model_name(model)
    if parsed.ensemble:
        return "not a single pass"
    try:
        entry = get_entry(parsed.base, user=False)
    except ModelError:
        return "not shipped with the package"
    if entry.kind == "learned" and not entry.has_weights():
        return "not shipped with the package"
    if entry.requires:
        return f"needs the optional package {entry.requires}"
    return ""


def machine(threads: int) -> dict:
    """The machine the report ran on."""
    from ..training.export import hardware_description

    return {"description": hardware_description("cpu", threads), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform()}


def reference_model(label: str, channels: int, seed: int = 0) -> nn.Module:
    """The published architecture ``label`` for ``channels`` channels, with seeded random
    initial weights (no weights loaded), in eval mode."""
    from ..models.registry import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_model(REFERENCES[label], pretrained=False, channels=channels)


def timed_restore(model: str | nn.Module, noisy: torch.Tensor, level) -> tuple[torch.Tensor, float, float]:
    """``(clipped output, CPU seconds, wall seconds)`` of one forward pass, untiled, on the
    CPU, after an untimed warm-up on a crop."""
    restore(noisy[..., :WARM_UP_SIZE, :WARM_UP_SIZE], model, level, tile=None, device="cpu",
            warn_ignored_sigma=False)
    start = time.process_time()
    result = restore(noisy, model, level, tile=None, device="cpu", warn_ignored_sigma=False)
    return result.output, time.process_time() - start, result.seconds


def train_cost(label: str, channels: int, *, batch: int, crop: int, steps: int, seed: int = 0) -> TrainCost:
    """CPU seconds of ``steps`` training steps (L2 loss to the clean crops, Adam) of the
    published architecture ``label`` on random ``batch`` x ``crop`` x ``crop`` crops with
    AWGN of sigma up to 55, after one untimed step."""
    net = reference_model(label, channels, seed).train()
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(batch, channels, crop, crop, generator=g)
    sigma = torch.rand(batch, generator=g) * 55 / 255
    noisy = clean + sigma.view(-1, 1, 1, 1) * torch.randn(clean.shape, generator=g)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(net(noisy, sigma), clean).backward()
        opt.step()

    step()
    start = time.process_time()
    for _ in range(steps):
        step()
    return TrainCost(label, channels, batch, crop, steps, time.process_time() - start)


def _check(sets: Sequence[str], sigmas: Sequence[float], models: Sequence[str], threads: int) -> None:
    if not sets or not sigmas or not models:
        raise InputError("the report needs at least one set, one sigma and one model")
    for s in sigmas:
        if not 0 < s <= 255:
            raise InputError(f"sigma must be in (0, 255] on the 0-255 scale, got {s:g}")
    if threads < 1:
        raise InputError(f"threads must be at least 1, got {threads}")
    for name in models:
        check_denoiser(name)


def _load(sets: Sequence[str], max_images: int | None) -> list[tuple[str, list, int]]:
    """``(label, images, channels)`` per set; a set must hold one kind of image."""
    loaded = []
    for spec in sets:
        label, images = load_test_set(spec, max_images=max_images)
        kinds = {x.shape[1] for _, x in images}
        if len(kinds) != 1:
            raise InputError(f"set {label} mixes gray and color images; the report needs sets of one kind")
        loaded.append((label, images, kinds.pop()))
    if len({label for label, _, _ in loaded}) != len(loaded):
        raise InputError("two sets have the same name; the report names sets by their folder")
    return loaded


def run_report(sets: Sequence[str] = DEFAULT_SETS, sigmas: Sequence[float] = DEFAULT_SIGMAS,
               models: Sequence[str] | None = None, *, seed: int = 0, max_images: int | None = None,
               threads: int = 1, train_steps: int = 2, train_batch: int = 16, train_crop: int = RECIPE_CROP,
               progress: bool = True, command: str = "", sr_sets: Sequence[str] = SR_SETS,
               sr_scales: Sequence[int] = SR_SCALES) -> Report:
    """Measure the report (see the module docstring); nothing is written.

    Args:
        sets: test sets (names under the data root, or folders).
        sigmas: AWGN levels on the 0-255 scale.
        models: default: :func:`shipped_models` (every shipped model, then the baselines).
        seed: the noise seed (the benchmark's: image ``i`` uses ``seed + i``).
        max_images: only the first images of each set (a smoke run).
        threads: torch CPU threads during the run (restored afterwards).
        train_steps: timed training steps per reference architecture (0: none).
        train_batch, train_crop: the batch those steps run on.
        command: the command line that ran the report, recorded in it.
        sr_sets: super-resolution test sets (names under ``<data root>/SR_LR``, or folders
            holding ``HR/xS`` and ``LR/xS``); empty: no SR part. A set not found is a note.
        sr_scales: the SR scales (2, 3, 4); ``max_images`` limits the SR sets too.
    """
    from tqdm.auto import tqdm

    models = list(dict.fromkeys(models if models is not None else shipped_models()))
    sigmas = [float(s) for s in sigmas]
    _check(sets, sigmas, models, threads)
    if train_steps < 0 or train_batch < 1 or train_crop < 8:
        raise InputError("training cost: steps >= 0, batch >= 1 and crop >= 8 pixels")
    if sr_sets and not sr_scales:
        raise InputError("the super-resolution part needs at least one scale (or no SR sets)")
    sr_scales = check_scales(sr_scales)
    loaded = _load(sets, max_images)
    ref_sigma = RANK_SIGMA if RANK_SIGMA in sigmas else sigmas[0]
    groups = sorted({c for _, _, c in loaded})
    total = sum(len(images) * (len(sigmas) * sum(supports_channels(m, c) for m in models) + len(REFERENCES))
                for _, images, c in loaded) + (len(groups) * len(REFERENCES) if train_steps else 0)
    results: list[Measured] = []
    references: list[Measured] = []
    training: list[TrainCost] = []
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tqdm(total=total, desc="report", unit="run", disable=None if progress else True) as bar:
            for label, images, channels in loaded:
                for sigma in sigmas:
                    results += _measure_set(label, images, channels, sigma, models, seed, bar)
                references += _time_references(label, images, channels, ref_sigma, seed, bar)
            for channels in groups if train_steps else []:
                for ref in REFERENCES:
                    bar.set_postfix_str(f"training step {ref} {channels} ch")
                    training.append(train_cost(ref, channels, batch=train_batch, crop=train_crop,
                                               steps=train_steps, seed=seed))
                    bar.update()
        sr, sr_note = run_sr(sr_sets, sr_scales, max_images=max_images, progress=progress)
    finally:
        torch.set_num_threads(old_threads)
    return Report(results, references, training, {label: c for label, _, c in loaded}, sigmas, seed,
                  threads, command, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  machine(threads), sr, sr_note)


def _measure_set(label: str, images: list, channels: int, sigma: float, models: Sequence[str],
                 seed: int, bar) -> list[Measured]:
    """The noisy input and every model that takes ``channels`` channels on one set."""
    noisy = [add_noise(x, sigma, seed, i) for i, (_, x) in enumerate(images)]
    out = [Measured(label, sigma, NOISY, [score_image(name, y, x, 0.0) for (name, x), (y, _)
                                          in zip(images, noisy)], channels=channels)]
    for model in models:
        if not supports_channels(model, channels):
            continue
        bar.set_postfix_str(f"{label} σ={sigma:g} {model}")
        result = Measured(label, sigma, model, channels=channels)
        for (name, clean), (y, level) in zip(images, noisy):
            output, cpu, wall = timed_restore(model, y, level)
            result.images.append(score_image(name, output, clean, cpu))
            result.wall_seconds += wall
            bar.update()
        out.append(result)
    return out


def _time_references(label: str, images: list, channels: int, sigma: float, seed: int,
                     bar) -> list[Measured]:
    """The published architectures (random weights) timed on the set's noisy images."""
    noisy = [add_noise(x, sigma, seed, i) for i, (_, x) in enumerate(images)]
    out = []
    for ref in REFERENCES:
        bar.set_postfix_str(f"{label} {reference_label(ref)} (random weights)")
        net = reference_model(ref, channels, seed)
        result = Measured(label, sigma, reference_label(ref), channels=channels, reference=True)
        for (name, clean), (y, level) in zip(images, noisy):
            _, cpu, wall = timed_restore(net, y, level)
            result.images.append(ImageScore(name, math.nan, math.nan, cpu, clean.shape[-2] * clean.shape[-1]))
            result.wall_seconds += wall
            bar.update()
        out.append(result)
    return out
