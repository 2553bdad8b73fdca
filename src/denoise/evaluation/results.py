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
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Sequence

import torch

from ..errors import InputError, ModelError
from ..inference import check_denoiser, parse_model_name, supports_channels
from .bench import NOISY, PROTOCOL, PUBLISHED, add_noise, load_test_set, score_image
from .report import mean
from .results_cells import (  # noqa: F401  (reference_model, timed_restore: public here too)
    CEILING,
    REFERENCES,
    CellStore,
    Measured,
    cell_key,
    images_digest,
    measure_cell,
    reference_label,
    reference_model,
    time_references,
    timed_restore,
)
from .results_sr import SR_SCALES, SR_SETS, run_sr
from .sr_bench import check_scales
from .sr_report import SRBenchReport

#: The field's test sets: gray Set12 and BSD68, color CBSD68 and Kodak24 (500 x 500 crops).
DEFAULT_SETS = ("Set12", "BSD68", "CBSD68", "Kodak24")
#: The noise levels of the published tables (0-255 scale).
DEFAULT_SIGMAS = (15.0, 25.0, 50.0)
#: The noise level of the ranking and of the figure.
RANK_SIGMA = 25.0
#: The classical baselines run beside the shipped models (when they can run here): the
#: DCT, the scikit-image ones, then BM3D (the slowest, last).
CLASSICAL = ("dct", "wavelet", "tv", "nlm", "bm3d")
#: Images per set with ``--quick``.
QUICK_IMAGES = 2
#: The training step (the DnCNN paper's batch and crop) the measured training cost is scaled to.
RECIPE_BATCH, RECIPE_CROP = 128, 50
#: The report's files.
RESULTS_MD, RESULTS_JSON, FIGURE = "RESULTS.md", "results.json", "quality_speed.png"


def shipped_models() -> list[str]:
    """The denoisers whose weights ship with the package (single pass), the classical
    baselines of :data:`CLASSICAL` that can run here but BM3D, the shipped denoisers'
    self-ensembles (``+x8``), then BM3D (no super-resolution model: see
    :func:`.results_sr.shipped_sr_models`). Cheap first: an interrupted run (the cells are
    kept, see :mod:`.results_cells`) has the most rows done."""
    from ..models.registry import get_entry, list_models

    learned = [e.name for e in list_models(user=False)
               if e.kind == "learned" and e.pretrained and e.scale == 1 and e.available()]
    classical = [name for name in CLASSICAL if get_entry(name, user=False).available()]
    slowest = [name for name in classical if name == "bm3d"]
    return [*learned, *(c for c in classical if c not in slowest), *(n + "+x8" for n in learned), *slowest]


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
    cache: str = ""  # the cell folder (see results_cells), "" when none
    reused: int = 0  # cells taken whole from the cache (measured by earlier runs)
    missing: list[str] = field(default_factory=list)  # cells not measured (--cached-only)

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

    def ratio(self, model: str, channels: int) -> float:
        """``model``'s CPU time over the FFDNet architecture's for the same pixels, each
        image against the architecture timed in the run that measured it; for a
        reference, its cost over the FFDNet architecture's."""
        runs = [r for r in self.results if r.model == model and r.channels == channels]
        if not runs:
            return self.cost(model, channels) / self.cost(reference_label(CEILING), channels)
        ceiling = sum(r.ceiling_seconds for r in runs)
        return sum(r.seconds for r in runs) / ceiling if ceiling > 0 else math.nan

    def ranking(self) -> dict[int, list[dict]]:
        """Per channel count, every model run on all its sets, best mean PSNR first, with
        its cost and whether it may be ``default`` (``why_not`` says why it may not)."""
        out = {}
        for channels in self.groups():
            sets = self.group_sets(channels)
            rows = []
            for model in self.models(channels):
                runs = [self.find(name, self.rank_sigma, model) for name in sets]
                if any(r is None for r in runs):
                    continue
                cost = self.cost(model, channels)
                rows.append({"model": model, "psnr": mean(r.psnr for r in runs),
                             "ssim": mean(r.ssim for r in runs), "cpu_s_per_mp": cost,
                             "vs_ffdnet": self.ratio(model, channels), "why_not": _why_not(model)})
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
                "cache": self.cache, "cells_reused": self.reused, "cells_missing": self.missing,
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
               sr_scales: Sequence[int] = SR_SCALES, cache: str | None = None,
               measure: bool = True) -> Report:
    """Measure the report (see the module docstring); only the cells are written.

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
        cache: a folder of cells (:mod:`.results_cells`): finished cells there are reused,
            unfinished ones continued, new ones written as they progress; None: none.
        measure: False builds the report from the cached cells only: nothing is run (no
            training cost, no SR part) and the cells not finished are listed as missing.
    """
    from tqdm.auto import tqdm

    models = list(dict.fromkeys(models if models is not None else shipped_models()))
    sigmas = [float(s) for s in sigmas]
    _check(sets, sigmas, models, threads)
    if train_steps < 0 or train_batch < 1 or train_crop < 8:
        raise InputError("training cost: steps >= 0, batch >= 1 and crop >= 8 pixels")
    if sr_sets and not sr_scales:
        raise InputError("the super-resolution part needs at least one scale (or no SR sets)")
    if not measure and cache is None:
        raise InputError("a report from cached cells needs the cell folder")
    sr_scales = check_scales(sr_scales)
    store = CellStore(cache)
    run = datetime.now(timezone.utc).isoformat(timespec="seconds") + f"/{uuid.uuid4().hex[:8]}"  # unique per run
    loaded = [(label, images, c, _plan(store, label, images, c, sigmas, models, seed))
              for label, images, c in _load(sets, max_images)]
    ref_sigma = RANK_SIGMA if RANK_SIGMA in sigmas else sigmas[0]
    groups = sorted({c for _, _, c, _ in loaded})
    busy = {label for label, _, _, plan in loaded if any(not done for *_, done in plan)} if measure else set()
    train_steps = train_steps if measure else 0
    total = sum(len(images) - (len(cell.images) if cell else 0)
                for _, images, _, plan in loaded for _, _, cell, done in plan if measure and not done)
    total += sum(len(images) * len(REFERENCES) for label, images, _, _ in loaded if label in busy)
    total += len(groups) * len(REFERENCES) if train_steps else 0
    results: list[Measured] = []
    references: list[Measured] = []
    training: list[TrainCost] = []
    reused, missing = 0, []
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tqdm(total=total, desc="report", unit="run", disable=None if progress else True) as bar:
            ceilings = {}
            for label, images, channels, plan in loaded:
                if label in busy:
                    refs = time_references(label, images, channels, ref_sigma, seed, bar)
                    store.save_references(label, refs, run)
                else:
                    refs = store.load_references(label)
                references += refs
                ceilings[label] = next((r.sec_per_mp for r in refs if r.model == reference_label(CEILING)), math.nan)
                for sigma in sigmas:
                    noisy = [add_noise(x, sigma, seed, i) for i, (_, x) in enumerate(images)]
                    results.append(Measured(label, sigma, NOISY, [score_image(name, y, x, 0.0) for (name, x), (y, _)
                                                                  in zip(images, noisy)], channels=channels))
            # model by model (the cheap ones first, see shipped_models), then set by set
            for model in models:
                for label, images, channels, plan in loaded:
                    for key, sigma, cell, done in (p for p in plan if p[0]["model"] == model):
                        if done:
                            results.append(cell)
                            reused += 1
                        elif measure:
                            bar.set_postfix_str(f"{label} σ={sigma:g} {model}")
                            noisy = [add_noise(x, sigma, seed, i) for i, (_, x) in enumerate(images)]
                            results.append(measure_cell(store, key, cell, images, noisy, ceilings[label], run, bar))
                        else:
                            done_images = f" ({len(cell.images)} of {len(images)} images)" if cell else ""
                            missing.append(f"{model} on {label} at σ={sigma:g}{done_images}")
            for channels in groups if train_steps else []:
                for ref in REFERENCES:
                    bar.set_postfix_str(f"training step {ref} {channels} ch")
                    training.append(train_cost(ref, channels, batch=train_batch, crop=train_crop,
                                               steps=train_steps, seed=seed))
                    bar.update()
            if training:
                store.save_training([t.to_dict() for t in training], run)
            elif not measure:  # the training cost of the run that last measured it
                training = [TrainCost(d["architecture"], d["channels"], d["batch"], d["crop"], d["steps"],
                                      d["cpu_seconds"]) for d in store.load_training()]
        sr, sr_note = (run_sr(sr_sets, sr_scales, max_images=max_images, progress=progress) if measure
                       else (None, "not run (a report from cached cells)" if sr_sets else ""))
    finally:
        torch.set_num_threads(old_threads)
    return Report(results, references, training, {label: c for label, _, c, _ in loaded}, sigmas, seed,
                  threads, command, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  machine(threads), sr, sr_note, str(cache) if cache is not None else "", reused, missing)


def _plan(store: CellStore, label: str, images: list, channels: int, sigmas: Sequence[float],
          models: Sequence[str], seed: int) -> list[tuple[dict, float, Measured | None, bool]]:
    """``(key, sigma, cached cell or None, finished)`` of every cell of one set."""
    images_id = images_digest(images)
    plan = []
    for sigma in sigmas:
        for model in models:
            if supports_channels(model, channels):
                key = cell_key(model, label, images_id, sigma, seed)
                plan.append((key, sigma, *store.load(key)))
    return plan
