"""The gated-skips claim, measured: plain vs fixed gates vs learned gates vs RED-Net skips.

Four conv/deconv denoisers get one budget (same steps, batch of 64x64 crops, Adam, learning
rate schedule; the same crops and noise draws for a given seed) on CBSD432 color images
with mixed noise, Gaussian sigma 25 then 5% salt-and-pepper (``gaussian:25+saltpepper:0.05``),
clean targets and L2, for each of several seeds:

* ``plain``: the gated DSC network with no skips (``dsc``, gates none);
* ``fixed``: its fixed gates 0.1, 0.2, 0.3, 0.4 (``dsc``, gates fixed);
* ``learned``: the gates learned, starting from those values (``dsc``, gates learned);
* ``rednet20``: RED-Net-20, identity skips every two layers (``rednet``, depth 20).

All four add the input to their output (residual form, identity at start), so the
comparison isolates the internal skips. The last CBSD432 images (sorted by name) are held
out: the validation-PSNR curves are measured on them, never on a test set. Each trained
network is scored on CBSD68 and Kodak24 (the 500x500 crops): PSNR and SSIM of the output
clipped to [0, 1], mean over the set, the noise of image i drawn from
``torch.Generator().manual_seed(test_seed + i)`` (:func:`denoise.evaluation.bench.add_noise`),
so every network and every classical baseline sees the same noisy images. The classical
baselines (median, switching median, dct, median+dct, and bm3d, median+bm3d on the first
images of each set: BM3D takes about 20 s per image) get the true Gaussian sigma.

Regenerate ``benchmarks/results/gates_claim.md`` and ``gates_claim.png``::

    python benchmarks/gates_claim.py                 # the default budget, 3 seeds
    python benchmarks/gates_claim.py --estimate      # time a few steps, project the total

Time: about 1.7 hours on an idle 2-core machine with 2 threads, projected from step times
measured with 1 thread on a shared machine (batch 16: DSC 0.35 s/step, RED-Net-20 3.05 s/step;
forward pass on a 481x321 image: DSC 0.57 s, RED-Net-20 2.9 s; BM3D about 27 s per image)
and an assumed 1.7x from the second thread; about 2.6 hours with 1 thread. RED-Net-20 costs
nine times a DSC step, so it takes most of the training time. ``--estimate`` re-measures.

Runs live under ``runs/gates_claim/<variant>-s<seed>`` (git-ignored); re-running reuses
finished runs and resumes interrupted ones from their checkpoints. ``--steps N`` (another
budget) uses ``runs/gates_claim_stepsN`` and writes its report beside the main one;
``--quick`` is a smoke test (a few steps, one seed, two images per set) written under
``runs/gates_claim_quick``.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from denoise.errors import DenoiseError, InputError, TrainingError
from denoise.evaluation.bench import add_noise, load_test_set, score_image
from denoise.evaluation.report import markdown_table
from denoise.evaluation.testsets import data_root, repo_root
from denoise.inference import restore
from denoise.models.registry import create_model, get_entry
from denoise.training import TrainConfig, Trainer, build_model, hardware_description, read_log
from denoise.training.data import load_folder
from denoise.training.runlog import CHECKPOINT, LOG
from denoise.training.trainer import folder_data
from denoise.utils import output_file, write_json, write_text

NOISE = "gaussian:25+saltpepper:0.05"
TRAIN_SET = "CBSD432"
TEST_SETS = ("CBSD68", "Kodak24")


@dataclass(frozen=True)
class Variant:
    """One network of the comparison: a registered architecture and its arguments."""

    model: str
    kwargs: tuple[tuple[str, object], ...]
    label: str


VARIANTS = {
    "plain": Variant("dsc", (("gates", "none"),), "DSC, no skips (plain conv/deconv)"),
    "fixed": Variant("dsc", (("gates", "fixed"),), "DSC, fixed gates 0.1-0.4"),
    "learned": Variant("dsc", (("gates", "learned"),), "DSC, learned gates"),
    "rednet20": Variant("rednet", (("depth", 20),), "RED-Net-20, identity skips"),
}
#: Classical baselines on the same noisy images (true Gaussian sigma); SLOW ones only on
#: the first ``slow_images`` images of each set.
CLASSICAL = ("median", "median-adaptive", "dct", "median+dct", "bm3d", "median+bm3d")
SLOW = ("bm3d", "median+bm3d")


@dataclass(frozen=True)
class Budget:
    """What every run gets."""

    crop: int = 64
    batch_size: int = 16
    steps: int = 500
    lr: float = 1e-3
    val_count: int = 12
    val_crop: int = 128
    val_every: int = 25
    log_every: int = 5
    threads: int = 2
    max_images: int | None = None  # test images per set (None: all)
    slow_images: int = 8  # images per set for bm3d and median+bm3d
    test_seed: int = 0

    def config(self, variant: str, seed: int, train_dir: Path, out: Path) -> TrainConfig:
        v = VARIANTS[variant]
        return TrainConfig(
            model=v.model, model_kwargs=dict(v.kwargs), data="folder", train_dir=str(train_dir),
            gray=False, noise=NOISE, target="clean", loss="l2", val_count=self.val_count,
            val_crop=self.val_crop, crop=self.crop, batch_size=self.batch_size, steps=self.steps,
            lr=self.lr, schedule="rampdown", rampdown=0.3, seed=seed, out=str(out),
            checkpoint_every=2 * self.val_every, val_every=self.val_every, log_every=self.log_every,
            threads=self.threads, device="cpu", progress=False, plot=False)


FULL = Budget()
QUICK = Budget(crop=32, batch_size=4, steps=20, val_count=2, val_crop=64, val_every=10, log_every=2,
               max_images=2, slow_images=1)


# --------------------------------------------------------------------------- training


def train_run(config: TrainConfig, images) -> dict | None:
    """Train to ``config.steps`` (resuming from a checkpoint); a loss that becomes NaN or
    infinite ends the run, which is then recorded (and scored at its last checkpoint)."""
    run_dir = Path(config.out)
    diverged = run_dir / "diverged.json"
    if diverged.is_file():
        return json.loads(diverged.read_text())
    ckpt = run_dir / CHECKPOINT
    step = int(torch.load(ckpt, map_location="cpu", weights_only=True)["step"]) if ckpt.is_file() else None
    if step is not None and step >= config.steps:
        return None
    trainer = Trainer(config, data=folder_data(config, images()))
    try:
        trainer.fit(resume=step is not None)
    except TrainingError as exc:
        if "the loss became" not in str(exc):  # not a divergence (e.g. a mismatched checkpoint)
            raise
        note = {"step": trainer.step + 1, "error": str(exc)}
        write_json(diverged, note)
        return note
    return None


def final_loss(log: list[dict]) -> float:
    """Mean training loss over the last tenth of the logged rows."""
    losses = [r["loss"] for r in log if r["loss"] is not None and math.isfinite(r["loss"])]
    tail = losses[-max(1, len(losses) // 10):]
    return sum(tail) / len(tail) if tail else float("nan")


def learned_gates(state: dict) -> list[float] | None:
    from denoise.models.rednet import GATE_EPS

    logits = state.get("gate_logits")
    return None if logits is None else (GATE_EPS + (1 - 2 * GATE_EPS) * torch.sigmoid(logits)).tolist()


# --------------------------------------------------------------------------- scoring


class TestSets:
    """The clean test images and their noisy versions (drawn once, shared by every model)."""

    def __init__(self, budget: Budget):
        self.budget = budget

    @functools.cached_property
    def sets(self) -> dict[str, list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]]:
        """``{set: [(name, clean, noisy, sigma), ...]}``."""
        out = {}
        for name in TEST_SETS:
            _, images = load_test_set(name, max_images=self.budget.max_images)
            images = [(n, x if x.shape[1] == 3 else x.expand(-1, 3, -1, -1).contiguous()) for n, x in images]
            out[name] = [(n, x, *add_noise(x, NOISE, self.budget.test_seed, i)) for i, (n, x) in enumerate(images)]
        return out


def score(model, tests: TestSets, limit: int | None = None) -> dict:
    """Per-image PSNR/SSIM of ``model`` (a module or a registered name) on every set, and
    the seconds it took; ``limit``: only the first images of each set."""
    start = time.perf_counter()
    result = {}
    for label, images in tests.sets.items():
        rows = []
        for name, clean, noisy, sigma in images[:limit]:
            out = noisy if model == "noisy" else restore(noisy, model, sigma, tile=None,
                                                          warn_ignored_sigma=False).output
            s = score_image(name, out, clean, 0.0)
            rows.append({"name": name, "psnr": s.psnr, "ssim": s.ssim})
        result[label] = rows
    return {"sets": result, "seconds": time.perf_counter() - start}


def run_variant(variant: str, seed: int, budget: Budget, runs: Path, train_dir: Path, images,
                tests: TestSets) -> dict:
    """Train (or resume) and score one (variant, seed); saved results are reused."""
    out = runs / f"{variant}-s{seed}"
    config = budget.config(variant, seed, train_dir, out)
    path = out / "scores.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if _same_budget(saved.get("budget"), budget):
            return saved
    diverged = train_run(config, images)
    result = {"variant": variant, "seed": seed, "budget": asdict(budget), "diverged": diverged}
    ckpt_path = out / CHECKPOINT
    if ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model = build_model(config, 3)
        model.load_state_dict(ckpt["model"])
        model.eval()
        log = read_log(out / LOG)
        val = [r for r in log if r["val_psnr"] is not None]
        result.update(score(model, tests), step=int(ckpt["step"]), train_s=float(ckpt["elapsed_s"]),
                      params=sum(p.numel() for p in model.parameters()), final_loss=final_loss(log),
                      val_first=val[0]["val_psnr"] if val else None, val_last=val[-1]["val_psnr"] if val else None,
                      gates=learned_gates(ckpt["model"]))
    write_json(path, result)
    return result


def _same_budget(saved: dict | None, budget: Budget) -> bool:
    """Whether saved scores were made under ``budget`` (the thread count does not matter)."""
    keep = {k: v for k, v in asdict(budget).items() if k != "threads"}
    return saved is not None and {k: v for k, v in saved.items() if k != "threads"} == keep


def run_classical(budget: Budget, runs: Path, tests: TestSets) -> dict:
    """Scores of the noisy input and every available classical baseline (cached in
    ``runs/classical.json`` for this noise draw)."""
    path = runs / "classical.json"
    key = {"noise": NOISE, "test_seed": budget.test_seed, "max_images": budget.max_images,
           "slow_images": budget.slow_images}
    saved = json.loads(path.read_text()) if path.is_file() else {}
    if saved.get("key") != key:
        saved = {"key": key, "models": {}}
    for name in ("noisy", *CLASSICAL):
        if name in saved["models"] or (name != "noisy" and get_entry(name).missing_extras()):
            continue
        model = name if name == "noisy" else create_model(name)
        saved["models"][name] = score(model, tests, budget.slow_images if name in SLOW else None)
        write_json(path, saved)
    return saved["models"]


# --------------------------------------------------------------------------- statistics


def set_mean(scores: dict, label: str, metric: str = "psnr", limit: int | None = None) -> float:
    rows = scores["sets"][label][:limit]
    return sum(r[metric] for r in rows) / len(rows)


def spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def scored(results: dict[str, list[dict]], variant: str) -> list[dict]:
    return [r for r in results.get(variant, []) if "sets" in r]


def paired(results, a: str, b: str, label: str, limit: int | None = None) -> list[float]:
    """Per-seed PSNR differences a - b on ``label`` (seeds that both variants finished)."""
    by_seed = {r["seed"]: r for r in scored(results, b)}
    return [set_mean(r, label, limit=limit) - set_mean(by_seed[r["seed"]], label, limit=limit)
            for r in scored(results, a) if r["seed"] in by_seed]


#: A paired difference counts as an effect when it exceeds this (dB).
EFFECT = 0.05


def verdict(diffs: dict[str, list[float]], threshold: float = EFFECT) -> str:
    """"confirmed" when every seed's difference exceeds ``threshold`` on every set; "not
    confirmed" when the mean difference is at most ``threshold`` on every set; else
    "inconclusive". ``threshold`` is EFFECT for "A beats B", minus a tolerance for "A does
    as well as B"."""
    values = [d for ds in diffs.values() for d in ds]
    if not values:
        return "not measured"
    if all(d > threshold for d in values):
        return "confirmed"
    if all(statistics.fmean(ds) <= threshold for ds in diffs.values() if ds):
        return "**not confirmed**"
    return "inconclusive (the seeds or the sets disagree)"


def _diff_text(diffs: dict[str, list[float]]) -> str:
    parts = []
    for label, ds in diffs.items():
        if not ds:
            continue
        m, s = spread(ds)
        per_seed = "" if len(ds) < 2 else f" (per seed {min(ds):+.2f} to {max(ds):+.2f})"
        parts.append(f"{m:+.2f} ± {s:.2f} dB on {label}{per_seed}")
    return ", ".join(parts)


def claim_lines(results: dict[str, list[dict]], classical: dict, budget: Budget) -> list[str]:
    """One sentence per claim, computed from the measured numbers."""
    lines = []
    labels = list(TEST_SETS)

    def compare(title: str, a: str, b: str, threshold: float = EFFECT, extra: str = "") -> None:
        diffs = {label: paired(results, a, b, label) for label in labels}
        if not any(diffs.values()):
            return
        loss_a = [r["final_loss"] for r in scored(results, a)]
        loss_b = [r["final_loss"] for r in scored(results, b)]
        ratio = statistics.fmean(loss_a) / statistics.fmean(loss_b) if loss_a and loss_b else float("nan")
        lines.append(f"- {title}: {verdict(diffs, threshold)}. {a} − {b} = {_diff_text(diffs)}; final "
                     f"training loss {a}/{b} = {ratio:.3f}{extra}.")

    def progress(v: str) -> str:
        rs = scored(results, v)
        firsts, lasts = [r["val_first"] for r in rs if r["val_first"]], [r["val_last"] for r in rs if r["val_last"]]
        return f"{v} {statistics.fmean(firsts):.2f} → {statistics.fmean(lasts):.2f} dB" if firsts and lasts else ""

    course = [t for t in (progress("plain"), progress("fixed")) if t]
    compare("Gated skips make the conv/deconv network converge, where the plain one converges worse "
            "(fixed vs plain)", "fixed", "plain",
            extra="; validation PSNR from the first to the last validation: " + ", ".join(course) if course else "")
    compare("Learning the gates improves on the fixed gates (learned vs fixed)", "learned", "fixed")
    gated = max(("fixed", "learned"), key=lambda v: statistics.fmean(
        [set_mean(r, labels[0]) for r in scored(results, v)] or [-math.inf]))
    t_gated = [r["train_s"] for r in scored(results, gated)]
    t_red = [r["train_s"] for r in scored(results, "rednet20")]
    cost = f"; RED-Net-20 took {statistics.fmean(t_red) / statistics.fmean(t_gated):.1f}x the training time" \
        if t_gated and t_red else ""
    compare(f"Gated skips ({gated}, the better gated variant on {labels[0]}) do as well as RED-Net's "
            "identity skips, within 0.1 dB", gated, "rednet20", threshold=-0.1, extra=cost)
    for method in ("dct", "bm3d"):
        both = f"median+{method}"
        if method not in classical or both not in classical:
            continue
        limit = budget.slow_images if method in SLOW else None
        psnr = {name: {label: set_mean(classical[name], label, limit=limit) for label in labels}
                for name in ("noisy", method, both)}
        gains = {label: psnr[both][label] - psnr[method][label] for label in labels}
        alone = {label: psnr[method][label] - psnr["noisy"][label] for label in labels}
        ok = all(g > 1.0 for g in gains.values())
        where = "" if limit is None else f" (first {limit} images of each set)"
        lines.append(f"- Impulses break {method} and a median first repairs it{where}: "
                     f"{'confirmed' if ok else '**not confirmed**'}. {method} alone gains "
                     + ", ".join(f"{g:+.2f} dB on {k}" for k, g in alone.items()) + " over the noisy input; "
                     f"{both} − {method} = " + ", ".join(f"{g:+.2f} dB on {k}" for k, g in gains.items())
                     + " (confirmed means more than 1 dB on every set).")
    best = max((v for v in VARIANTS if scored(results, v)),
               key=lambda v: statistics.fmean(set_mean(r, labels[0]) for r in scored(results, v)), default=None)
    fast = [c for c in CLASSICAL if c in classical and c not in SLOW]
    if best and fast:
        top = max(fast, key=lambda c: set_mean(classical[c], labels[0]))
        diffs = {label: [set_mean(r, label) - set_mean(classical[top], label) for r in scored(results, best)]
                 for label in labels}
        lines.append(f"- The best trained network ({best}) beats the best classical pipeline on the full "
                     f"sets ({top}): {verdict(diffs)}. {best} − {top} = {_diff_text(diffs)}.")
    return lines


# --------------------------------------------------------------------------- report


def _pm(values: list[float], fmt: str = "{:.2f}") -> str:
    if not values:
        return "–"
    m, s = spread(values)
    return fmt.format(m) + (" ± " + fmt.format(s) if len(values) > 1 else "")


def main_table(results: dict[str, list[dict]], classical: dict) -> str:
    header = ["method", "seeds"] + [f"{label} {m}" for label in TEST_SETS for m in ("PSNR", "SSIM")] + [
        "val PSNR (first → last)", "final train loss", "train min/run"]
    rows = []
    for v, variant in VARIANTS.items():
        rs = scored(results, v)
        if not rs:
            continue
        cells = [f"{v}: {variant.label}", str(len(rs))]
        for label in TEST_SETS:
            cells += [_pm([set_mean(r, label) for r in rs]), _pm([set_mean(r, label, "ssim") for r in rs], "{:.4f}")]
        firsts, lasts = [r["val_first"] for r in rs if r["val_first"]], [r["val_last"] for r in rs if r["val_last"]]
        cells += [f"{_pm(firsts)} → {_pm(lasts)}", _pm([r["final_loss"] for r in rs], "{:.5f}"),
                  f"{statistics.fmean(r['train_s'] for r in rs) / 60:.1f}"]
        rows.append(cells)
    for name, res in classical.items():
        if name in SLOW:
            continue
        cells = [name if name != "noisy" else "noisy input", "–"]
        for label in TEST_SETS:
            cells += [f"{set_mean(res, label):.2f}", f"{set_mean(res, label, 'ssim'):.4f}"]
        rows.append(cells + ["–", "–", "–"])
    return markdown_table(header, rows)


def slow_table(results: dict[str, list[dict]], classical: dict, limit: int) -> str:
    header = ["method"] + [f"{label} {m}" for label in TEST_SETS for m in ("PSNR", "SSIM")]
    rows = []
    for v in VARIANTS:
        rs = scored(results, v)
        if rs:
            rows.append([v] + [cell for label in TEST_SETS for cell in (
                _pm([set_mean(r, label, limit=limit) for r in rs]),
                _pm([set_mean(r, label, "ssim", limit) for r in rs], "{:.4f}"))])
    for name in ("noisy", "dct", "median+dct", *SLOW):
        if name in classical:
            rows.append([name if name != "noisy" else "noisy input"] + [cell for label in TEST_SETS for cell in (
                f"{set_mean(classical[name], label, limit=limit):.2f}",
                f"{set_mean(classical[name], label, 'ssim', limit):.4f}")])
    return markdown_table(header, rows)


def write_report(path: Path, results: dict[str, list[dict]], classical: dict, budget: Budget, seeds: list[int],
                 command: str, wall_s: float, figure: str) -> None:
    any_run = next(r for rs in results.values() for r in rs if "sets" in r)
    sizes = ", ".join(f"{label} ({len(any_run['sets'][label])} images)" for label in TEST_SETS)
    diverged = [f"{r['variant']} seed {r['seed']} at step {r['diverged']['step']}"
                for rs in results.values() for r in rs if r.get("diverged")]
    gates = [r["gates"] for r in scored(results, "learned") if r.get("gates")]
    train_s = sum(r.get("train_s", 0.0) for rs in results.values() for r in rs)
    eval_s = sum(r.get("seconds", 0.0) for rs in results.values() for r in rs)
    classical_s = sum(c.get("seconds", 0.0) for c in classical.values())
    slow = [n for n in SLOW if n in classical]
    text = [
        "# Gated skip connections in a conv/deconv denoiser, measured",
        "",
        f"Command: `{command}` (this invocation: {wall_s / 60:.1f} min; finished runs are reused from "
        "their run folders).",
        "",
        f"Mixed noise `{NOISE}` (Gaussian sigma 25, not clipped, then 5% of the pixels set to 0 or 1), "
        f"color. PSNR (dB) and SSIM on {sizes}: mean over the set of the per-image values of the "
        "output clipped to [0, 1], not quantised; trained networks as mean ± standard deviation over "
        f"{len(seeds)} seed(s) ({', '.join(map(str, seeds))}). The noise of test image i is drawn from "
        f"`torch.Generator().manual_seed({budget.test_seed} + i)`, the same for every method. Classical "
        "methods get the true Gaussian sigma; `median-adaptive` is a switching median that replaces only "
        "the detected impulses (values at 0 or 1) by the median of the non-impulse values of their "
        "smallest window (3x3 up to 7x7), and `median+X` runs it before X.",
        "",
        main_table(results, classical),
        "",
    ]
    if slow:
        text += [f"BM3D on the first {budget.slow_images} images of each set (about 20 s per image), with "
                 "the other methods on the same images:", "", slow_table(results, classical, budget.slow_images), ""]
    elif get_entry("bm3d").missing_extras():
        text += ["BM3D rows: the optional package `bm3d` is not installed (`pip install 'denoise[bm3d]'`).", ""]
    text += [f"Claims (verdicts and numbers computed from the runs above: 'A beats B' is confirmed when "
             f"A − B exceeds {EFFECT} dB for every seed on both sets, not confirmed when its mean is at most "
             f"{EFFECT} dB on both, inconclusive otherwise; differences are paired by seed, so both "
             "networks saw the same crops and noise):", "", *claim_lines(results, classical, budget), ""]
    if gates:
        mean_gates = [statistics.fmean(g[k] for g in gates) for k in range(len(gates[0]))]
        text += ["Learned gates at the end (mean over seeds, delta_1..delta_4; start 0.1, 0.2, 0.3, 0.4): "
                 + ", ".join(f"{g:.3f}" for g in mean_gates) + ".", ""]
    if diverged:
        text += ["Runs whose loss became NaN or infinite (scored at their last checkpoint): "
                 + "; ".join(diverged) + ".", ""]
    text += [
        "Budget and setup:",
        "",
        f"- Identical for every run: {budget.steps} Adam steps (betas 0.9, 0.99), batch {budget.batch_size} "
        f"random {budget.crop}x{budget.crop} crops with flips and 90° rotations, clean targets, L2 loss, "
        f"lr {budget.lr:g} constant then a cosine ramp-down over the last 30% of the steps. For a given seed "
        "every variant draws the same crops and the same noise (the data generator is seeded with the seed; "
        "the initialisation too).",
        f"- Training data: {TRAIN_SET} color minus its last {budget.val_count} images (sorted by name), held out "
        f"for the validation PSNR (center {budget.val_crop}x{budget.val_crop} crops, one fixed noise draw) of "
        "the curves and of the 'val PSNR' column. The test sets were not used to choose anything.",
        f"- 'final train loss': mean training L2 loss over the last tenth of the logged steps (a row per "
        f"{budget.log_every} steps).",
        f"- Hardware: {hardware_description('cpu', budget.threads)}; the machine may have been shared with "
        "other jobs, so times are indicative.",
        f"- Time summed over the runs: training {train_s / 60:.1f} min, scoring {eval_s / 60:.1f} min, classical "
        f"baselines {classical_s / 60:.1f} min.",
        "",
        f"![training loss and validation PSNR curves]({figure})",
        "",
    ]
    write_text(path, "\n".join(text))


def plot_curves(path: Path, runs: Path, results: dict[str, list[dict]]) -> None:
    """Training loss and validation PSNR against step: per variant the mean over seeds and
    a band from the lowest to the highest seed."""
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    loss_ax, val_ax = fig.subplots(1, 2)
    for k, variant in enumerate(results):
        logs = [read_log(runs / f"{variant}-s{r['seed']}" / LOG) for r in results[variant]]
        logs = [log for log in logs if log]
        if not logs:
            continue
        color = f"C{k}"
        for ax, key in ((loss_ax, "loss"), (val_ax, "val_psnr")):
            series = [{int(r["step"]): r[key] for r in log if r[key] is not None} for log in logs]
            steps = sorted(set.intersection(*(set(s) for s in series)))
            if not steps:
                continue
            values = np.array([[s[t] for t in steps] for s in series])
            ax.plot(steps, values.mean(0), color=color, lw=1.2, label=f"{variant} ({len(logs)} seeds)")
            if len(logs) > 1:
                ax.fill_between(steps, values.min(0), values.max(0), color=color, alpha=0.2, lw=0)
    loss_ax.set(xlabel="step", ylabel="training loss (L2, window mean)", yscale="log", title="training loss")
    val_ax.set(xlabel="step", ylabel="PSNR (dB)", title=f"validation PSNR (held-out {TRAIN_SET})")
    for ax in (loss_ax, val_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{NOISE}: mean over seeds, band = min to max", fontsize=9)
    fig.tight_layout()
    with output_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


# --------------------------------------------------------------------------- estimate


def estimate(budget: Budget, seeds: list[int]) -> str:
    """Time a few training steps and one test-sized forward pass per variant (and the
    classical baselines on one image) and project the time of the whole benchmark."""
    torch.manual_seed(0)
    lines, total = [], 0.0
    _, images = load_test_set(TEST_SETS[0], max_images=1)
    clean = images[0][1]
    noisy, sigma = add_noise(clean, NOISE, 0, 0)
    n_images = sum(len(load_test_set(s, max_images=budget.max_images)[1]) for s in TEST_SETS)
    val_pixels = budget.val_count * budget.val_crop ** 2
    for name, v in VARIANTS.items():
        model = create_model(v.model, pretrained=False, channels=3, **dict(v.kwargs)).train()
        opt = torch.optim.Adam(model.parameters(), budget.lr)
        x = torch.rand(budget.batch_size, 3, budget.crop, budget.crop)
        times = []
        for _ in range(4):
            start = time.perf_counter()
            loss = ((model(x) - x) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - start)
        step_s = statistics.median(times[1:])
        with torch.inference_mode():
            start = time.perf_counter()
            model.eval()(noisy)
            fwd_s = time.perf_counter() - start
        per_pixel = fwd_s / clean[0, 0].numel()
        val_s = per_pixel * val_pixels * (budget.steps // budget.val_every)
        run_s = step_s * budget.steps + val_s + per_pixel * n_images * 2.0e5
        total += run_s * len(seeds)
        lines.append(f"{name}: {step_s:.3f} s/step, {fwd_s:.2f} s per {clean.shape[-1]}x{clean.shape[-2]} "
                     f"image -> {run_s / 60:.1f} min per run")
    for name in CLASSICAL:
        if get_entry(name).missing_extras():
            continue
        start = time.perf_counter()
        restore(noisy, name, sigma, tile=None, warn_ignored_sigma=False)
        t = time.perf_counter() - start
        count = min(budget.slow_images, n_images) * len(TEST_SETS) if name in SLOW else n_images
        total += t * count * 1.3  # Kodak24 images are larger than CBSD68's
        lines.append(f"{name}: {t:.2f} s per image -> {t * count * 1.3 / 60:.1f} min")
    lines.append(f"projected total with {len(seeds)} seed(s), {budget.steps} steps, {torch.get_num_threads()} "
                 f"thread(s): {total / 60:.0f} min")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke test: a few steps, one seed, two images per set")
    p.add_argument("--steps", type=int, help=f"training steps per run (default {FULL.steps}; another value "
                   "gets its own run and report folders)")
    p.add_argument("--seeds", type=int, help="number of seeds (0, 1, ...; default 3, --quick 1)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="only these variants")
    p.add_argument("--max-images", type=int, help="only the first N images of each test set")
    p.add_argument("--slow-images", type=int, help=f"images per set for bm3d (default {FULL.slow_images})")
    p.add_argument("--threads", type=int, help=f"torch CPU threads (default {FULL.threads})")
    p.add_argument("--runs", type=Path, help="run folders (default runs/gates_claim[_quick|_stepsN])")
    p.add_argument("--out", type=Path, help="report folder (default benchmarks/results; --quick: the runs folder)")
    p.add_argument("--estimate", action="store_true", help="time a few steps per variant and project the total")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    budget = QUICK if args.quick else FULL
    changes = {k: v for k, v in (("steps", args.steps), ("max_images", args.max_images),
                                 ("slow_images", args.slow_images), ("threads", args.threads)) if v is not None}
    budget = replace(budget, **changes)
    seeds = list(range(args.seeds if args.seeds is not None else (1 if args.quick else 3)))
    variants = args.variants or list(VARIANTS)
    torch.set_num_threads(budget.threads)
    if args.estimate:
        print(estimate(budget, seeds))
        return 0
    base = repo_root() or Path.cwd()
    name = "gates_claim" + ("_quick" if args.quick else "") + (f"_steps{args.steps}" if args.steps else "")
    runs = args.runs or base / "runs" / name
    results_dir = base / "benchmarks" / "results"
    out = args.out or (runs if args.quick else results_dir / name if args.steps else results_dir)
    try:
        if not seeds:
            raise InputError("--seeds must be at least 1")
        root = data_root()
        if root is None or not (root / TRAIN_SET).is_dir():
            raise InputError(f"{TRAIN_SET} not found: set DENOISE_DATA to the image data folder")
        images = functools.cache(lambda: load_folder(root / TRAIN_SET, gray=False)[1])
        tests = TestSets(budget)
        results: dict[str, list[dict]] = {v: [] for v in variants}
        for i, (variant, seed) in enumerate([(v, s) for s in seeds for v in variants], 1):
            t = time.perf_counter()
            res = run_variant(variant, seed, budget, runs, root / TRAIN_SET, images, tests)
            results[variant].append(res)
            shown = ", ".join(f"{k} {set_mean(res, k):.2f}" for k in TEST_SETS) if "sets" in res else "no checkpoint"
            print(f"[{i}/{len(seeds) * len(variants)}] {variant} seed {seed}: {shown} dB "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
        classical = run_classical(budget, runs, tests)
        if not any(scored(results, v) for v in variants):
            raise TrainingError("no run produced a checkpoint to score")
        out.mkdir(parents=True, exist_ok=True)
        command = "python benchmarks/gates_claim.py" + "".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:]))
        plot_curves(out / "gates_claim.png", runs, results)
        write_report(out / "gates_claim.md", results, classical, budget, seeds, command,
                     time.perf_counter() - start, "gates_claim.png")
    except DenoiseError as exc:
        print(f"gates_claim: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out / 'gates_claim.md'} and {out / 'gates_claim.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
