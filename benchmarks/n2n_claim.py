"""The Noise2Noise claim, measured: clean versus noisy training targets, one network, one budget.

Every row trains the same network (same architecture, initialisation, data, optimiser and
number of steps) on CBSD432 color crops, with clean targets or with an independent noisy
draw of the same crop as target, for five corruptions: Gaussian sigma=25, Poisson
lambda=30, Bernoulli p=0.5 (a pixel kept with probability 0.5; masked L2 on the noisy
target's known pixels), random-valued impulses p=0.5 (annealed L0, and L1 and L2 to show
why the mode is needed) and overlaid text covering 25% of the pixels (L1, the median, and
L2 to show why). Clean-target rows use plain L2 against the clean image. Each trained
model is scored on the full Kodak24_full and CBSD68 sets (PSNR of the output clipped to
[0, 1], not quantised; mean over the set), the noise of image i being drawn from
``torch.Generator().manual_seed(seed + i)`` so that every row sees the same noisy inputs.

Regenerate ``benchmarks/results/n2n_claim.md`` (table) and ``n2n_claim.png`` (validation
PSNR curves) with one command (about an hour on 1 CPU thread)::

    python benchmarks/n2n_claim.py

A larger budget for some rows, e.g. 4x the steps for the Gaussian and Poisson pairs (about 25 minutes
per row on 1 thread; the report goes to a folder of its own)::

    python benchmarks/n2n_claim.py --steps 1200 --rows gaussian-clean-l2 gaussian-noisy-l2 \
        poisson-clean-l2 poisson-noisy-l2    # -> benchmarks/results/n2n_claim_steps1200/

Runs live under ``runs/n2n_claim/<row>`` (git-ignored); re-running skips finished rows
(trained and scored) and resumes interrupted ones from their checkpoints. ``--quick``
trains a few steps per row and scores the first two images of each set (a smoke test,
written under ``runs/n2n_claim_quick``). The validation PSNR of the curves is measured on
the last CBSD432 images, held out from training; the test sets are never used to tune.
"""
from __future__ import annotations

import argparse
import functools
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from denoise.errors import DenoiseError, InputError
from denoise.evaluation.bench import PUBLISHED, load_test_set
from denoise.evaluation.report import markdown_table
from denoise.evaluation.testsets import data_root, repo_root
from denoise.metrics import psnr
from denoise.noise import parse_noise
from denoise.training import (
    TrainConfig,
    Trainer,
    build_model,
    hardware_description,
    read_log,
)
from denoise.training.data import load_folder
from denoise.training.runlog import CHECKPOINT, LOG
from denoise.training.trainer import folder_data
from denoise.utils import output_file, write_json, write_text

#: The corruption of each noise family (spec strings of :func:`denoise.noise.parse_noise`).
#: Text sizes are fixed in pixels so that training crops and test images carry the same text.
NOISES = {
    "gaussian": "gaussian:25",
    "poisson": "poisson:30",
    "bernoulli": "bernoulli:0.5",
    "impulse": "impulse:0.5",
    "text": "text:0.25,10-30",
}

TEST_SETS = ("Kodak24_full", "CBSD68")
TRAIN_SET = "CBSD432"


@dataclass(frozen=True)
class Row:
    """One training run: a noise family, the target kind and the loss."""

    noise: str
    target: str
    loss: str

    @property
    def name(self) -> str:
        return f"{self.noise}-{self.target}-{self.loss}"


ROWS = (
    Row("gaussian", "clean", "l2"), Row("gaussian", "noisy", "l2"),
    Row("poisson", "clean", "l2"), Row("poisson", "noisy", "l2"),
    Row("bernoulli", "clean", "l2"), Row("bernoulli", "noisy", "masked_l2"),
    Row("impulse", "clean", "l2"), Row("impulse", "noisy", "l0"),
    Row("impulse", "noisy", "l1"), Row("impulse", "noisy", "l2"),
    Row("text", "clean", "l2"), Row("text", "noisy", "l1"), Row("text", "noisy", "l2"),
)


@dataclass(frozen=True)
class Budget:
    """What every row gets: the network and the optimisation budget."""

    model: str = "unet-small"
    features: int = 16
    crop: int = 64
    batch_size: int = 16
    steps: int = 300
    lr: float = 3e-3
    val_count: int = 12
    val_crop: int = 192
    val_every: int = 25
    threads: int = 1
    seed: int = 0
    max_images: int | None = None  # test images per set (None: all)

    def config(self, row: Row, train_dir: Path, out: Path) -> TrainConfig:
        """The training configuration of ``row`` under this budget."""
        return TrainConfig(
            model=self.model, model_kwargs={"features": self.features}, data="folder",
            train_dir=str(train_dir), gray=False, noise=NOISES[row.noise], target=row.target,
            loss=row.loss, val_count=self.val_count, val_crop=self.val_crop, crop=self.crop,
            batch_size=self.batch_size, steps=self.steps, lr=self.lr, seed=self.seed,
            out=str(out), checkpoint_every=self.val_every, val_every=self.val_every,
            log_every=self.val_every, threads=self.threads, device="cpu", progress=False, plot=False)


FULL = Budget()
QUICK = Budget(crop=32, batch_size=4, steps=4, val_count=2, val_crop=64, val_every=2, max_images=2)


# --------------------------------------------------------------------------- training


def checkpoint_step(run_dir: Path) -> int | None:
    """The step of the run's checkpoint, or None when there is none."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=True)["step"])


def train_row(config: TrainConfig, images: Callable[[], list[torch.Tensor]]) -> None:
    """Train one row to ``config.steps``, resuming from its checkpoint when there is one.
    ``images()`` gives the training folder's images (loaded once for all rows)."""
    step = checkpoint_step(Path(config.out))
    if step is not None and step >= config.steps:
        return
    data = folder_data(config, images())
    Trainer(config, data=data).fit(resume=step is not None)


def trained_model(config: TrainConfig) -> tuple[torch.nn.Module, dict]:
    """The row's trained network (eval mode) and its checkpoint."""
    ckpt = torch.load(Path(config.out) / CHECKPOINT, map_location="cpu", weights_only=True)
    model = build_model(config, 3)
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


# --------------------------------------------------------------------------- evaluation


def noisy_set(noise_spec: str, images: list[tuple[str, torch.Tensor]], seed: int) -> list[torch.Tensor]:
    """The noisy version of every test image: image i draws from ``seed + i``."""
    noise = parse_noise(noise_spec)
    return [noise(x, generator=torch.Generator().manual_seed(seed + i)) for i, (_, x) in enumerate(images)]


def set_psnr(outputs, images) -> float:
    """Mean over the set of the per-image PSNR (data range 1)."""
    scores = [float(psnr(y, x)[0]) for y, (_, x) in zip(outputs, images)]
    return sum(scores) / len(scores)


@torch.inference_mode()
def evaluate(model: torch.nn.Module, noisy: list[torch.Tensor]) -> list[torch.Tensor]:
    """The model's outputs, clipped to [0, 1] (not quantised)."""
    return [model(y).clamp(0, 1) for y in noisy]


class ScoringSets:
    """The test sets (loaded on first use), and their noisy versions for one noise at a
    time (shared by the rows of that noise, so every row sees the same inputs)."""

    def __init__(self, budget: Budget):
        self.seed, self.max_images = budget.seed, budget.max_images
        self._noise: str | None = None
        self._noisy: dict[str, list[torch.Tensor]] = {}

    @functools.cached_property
    def sets(self) -> dict[str, list[tuple[str, torch.Tensor]]]:
        """``{label: [(name, clean (1, 3, H, W)), ...]}`` for every test set."""
        sets = {}
        for name in TEST_SETS:
            label, images = load_test_set(name, max_images=self.max_images)
            sets[label] = [(n, x if x.shape[1] == 3 else x.expand(-1, 3, -1, -1)) for n, x in images]
        return sets

    def noisy(self, noise_spec: str) -> dict[str, list[torch.Tensor]]:
        if noise_spec != self._noise:
            self._noisy = {label: noisy_set(noise_spec, images, self.seed) for label, images in self.sets.items()}
            self._noise = noise_spec
        return self._noisy


def score_row(config: TrainConfig, tests: ScoringSets) -> dict:
    """PSNR of the row's model and of its noisy inputs on every test set."""
    model, ckpt = trained_model(config)
    noisy = tests.noisy(config.noise)
    start = time.perf_counter()
    scores = {label: {"psnr": set_psnr(evaluate(model, noisy[label]), images),
                      "input_psnr": set_psnr(noisy[label], images), "n_images": len(images)}
              for label, images in tests.sets.items()}
    return {"step": int(ckpt["step"]), "train_s": float(ckpt["elapsed_s"]),
            "eval_s": time.perf_counter() - start, "val_psnr": ckpt.get("last_val_psnr"), "sets": scores}


def run_row(row: Row, budget: Budget, runs: Path, train_dir: Path, images: Callable[[], list[torch.Tensor]],
            tests: ScoringSets) -> dict:
    """Train (or resume) and score one row; a finished row's saved scores are reused."""
    out = runs / row.name
    config = budget.config(row, train_dir, out)
    result_path = out / "scores.json"
    if result_path.is_file():
        saved = json.loads(result_path.read_text())
        if saved.get("step") == config.steps and saved.get("budget") == asdict(budget):
            return saved
    train_row(config, images)
    result = {**score_row(config, tests), "budget": asdict(budget), "row": asdict(row),
              "noise_spec": config.noise}
    write_json(result_path, result)
    return result


# --------------------------------------------------------------------------- report


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def results_table(results: dict[Row, dict], labels: list[str]) -> str:
    """The markdown table: one line per row; noisy - clean per set for noisy targets."""
    header = ["noise", "spec", "target", "loss", "val PSNR"]
    for label in labels:
        header += [f"{label} input", f"{label} PSNR", f"{label} noisy − clean"]
    body = []
    for row, res in results.items():
        clean = next((r for k, r in results.items() if k.noise == row.noise and k.target == "clean"), None)
        line = [row.noise, f"`{res['noise_spec']}`", row.target, row.loss.replace("_", " "),
                _fmt(res.get("val_psnr"))]
        for label in labels:
            s = res["sets"][label]
            diff = s["psnr"] - clean["sets"][label]["psnr"] if clean is not None and row.target == "noisy" else None
            line += [_fmt(s["input_psnr"]), _fmt(s["psnr"]), _fmt(diff, signed=True)]
        body.append(line)
    return markdown_table(header, body)


def claim_lines(results: dict[Row, dict], labels: list[str], tolerance: float = 0.1) -> list[str]:
    """Whether noisy L2 targets land within ``tolerance`` dB of clean ones (Gaussian, Poisson)."""
    lines = []
    for noise in ("gaussian", "poisson"):
        clean = results.get(Row(noise, "clean", "l2"))
        noisy = results.get(Row(noise, "noisy", "l2"))
        if clean is None or noisy is None:
            continue
        diffs = {label: noisy["sets"][label]["psnr"] - clean["sets"][label]["psnr"] for label in labels}
        ok = all(abs(d) <= tolerance for d in diffs.values())
        shown = ", ".join(f"{d:+.2f} dB on {label}" for label, d in diffs.items())
        verdict = (f"within {tolerance} dB." if ok else
                   f"**not** within {tolerance} dB (noisy targets better)."
                   if min(diffs.values()) > -tolerance else f"**not** within {tolerance} dB.")
        lines.append(f"- {noise}: noisy − clean = {shown}: {verdict}")
    return lines


def budget_lines(budget: Budget, results: dict[Row, dict]) -> list[str]:
    train_s = sum(r["train_s"] for r in results.values())
    eval_s = sum(r["eval_s"] for r in results.values())
    return [
        f"- Network: `{budget.model}` (features={budget.features}), the same initialisation "
        f"(seed {budget.seed}) for every row.",
        f"- Budget, identical for every row: {budget.steps} Adam steps (betas 0.9, 0.99), batch "
        f"{budget.batch_size} random {budget.crop}x{budget.crop} crops with flips and 90° rotations, "
        f"lr {budget.lr:g} constant then a cosine ramp-down over the last 30% of the steps; "
        f"{budget.steps * budget.batch_size} crops seen per row.",
        f"- Training data: {TRAIN_SET} color, minus its last {budget.val_count} images (sorted by "
        f"name), held out: the validation PSNR (center {budget.val_crop}x{budget.val_crop} crops, "
        f"fixed noise draw) of the curves and of the 'val PSNR' column. The test sets were not "
        "used to choose anything.",
        f"- Hardware: {hardware_description('cpu', budget.threads)}; the machine was shared with "
        "other jobs, so times are indicative.",
        f"- Time, summed over the rows: training {train_s / 60:.1f} min + scoring (forward passes "
        f"and PSNR) {eval_s / 60:.1f} min = {(train_s + eval_s) / 60:.1f} min; a full regeneration "
        "also reads the images and draws the test noise once per noise (a few minutes more).",
    ]


def write_report(path: Path, results: dict[Row, dict], budget: Budget, command: str,
                 wall_s: float, figure: str) -> None:
    labels = list(next(iter(results.values()))["sets"])
    sizes = ", ".join(f"{label} ({next(iter(results.values()))['sets'][label]['n_images']} images)"
                      for label in labels)
    text = "\n".join([
        "# Noise2Noise: clean versus noisy training targets",
        "",
        f"Command: `{command}` (this invocation: {wall_s / 60:.1f} min; finished rows are reused "
        "from their run folders: the time of a full regeneration is given below).",
        "",
        f"PSNR (dB) on {sizes}: mean over the set of the per-image PSNR of the output clipped "
        "to [0, 1], not quantised. 'input' is the PSNR of the noisy input (not clipped). The "
        "noise of test image i is drawn from `torch.Generator().manual_seed(seed + i)` "
        f"(seed {budget.seed}), so every row of a noise sees the same noisy inputs. "
        "'noisy − clean' compares a noisy-target row with the clean-target row of the same "
        "noise. Clean-target rows use plain L2 against the clean image; Bernoulli noisy "
        "targets use L2 masked to the target's kept pixels; annealed L0 is "
        "(|f(x) − y| + 1e-8)^γ with γ going linearly from 2 to 0.1 over training.",
        "",
        results_table(results, labels),
        "",
        "Noisy targets within 0.1 dB of clean targets (L2, Gaussian and Poisson):",
        "",
        *claim_lines(results, labels),
        "",
        "For scale, the Noise2Noise paper's figures on Kodak24_full at Gaussian sigma 25 (its "
        "RGB U-Net trained to convergence on a GPU): "
        + ", ".join(f"{k} {v:.2f} dB" for k, v in PUBLISHED[("Kodak24_full", 25)].items()) + ".",
        "",
        "Budget and setup:",
        "",
        *budget_lines(budget, results),
        "",
        f"![validation PSNR curves]({figure})",
        "",
    ])
    write_text(path, text)


def plot_curves(path: Path, runs: Path, rows: tuple[Row, ...]) -> None:
    """Validation PSNR against step, one panel per noise, clean and noisy targets."""
    from matplotlib.figure import Figure

    noises = list(dict.fromkeys(r.noise for r in rows))
    fig = Figure(figsize=(3.6 * len(noises), 3.4))
    axes = fig.subplots(1, len(noises), squeeze=False)[0]
    for ax, noise in zip(axes, noises):
        for row in (r for r in rows if r.noise == noise):
            log = [r for r in read_log(runs / row.name / LOG) if r["val_psnr"] is not None]
            style = dict(color="black", ls="-") if row.target == "clean" else dict(ls="--")
            ax.plot([r["step"] for r in log], [r["val_psnr"] for r in log], marker="o", ms=2.5, lw=1,
                    label=f"{row.target}, {row.loss.replace('_', ' ')}", **style)
        ax.set_title(NOISES[noise], fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("validation PSNR (dB, held-out CBSD432)")
    fig.tight_layout()
    with output_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


# --------------------------------------------------------------------------- command


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few steps per row, two test images per set")
    p.add_argument("--runs", type=Path, help="run folders (default: runs/n2n_claim[_quick][_stepsN])")
    p.add_argument("--out", type=Path, help="report folder (default: benchmarks/results; with --steps N: "
                   "benchmarks/results/n2n_claim_stepsN; --quick: the runs folder)")
    p.add_argument("--steps", type=int, help="train every row for this many steps instead (a larger "
                   "budget; runs then go to runs/n2n_claim_stepsN)")
    p.add_argument("--rows", nargs="+", metavar="ROW", help=f"only these rows (default: all: "
                   f"{' '.join(r.name for r in ROWS)})")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    budget = QUICK if args.quick else FULL
    if args.steps:
        budget = replace(budget, steps=args.steps)
    rows = ROWS if not args.rows else tuple(r for r in ROWS if r.name in args.rows)
    if args.rows and len(rows) != len(args.rows):
        print(f"n2n_claim: error: unknown row in {args.rows}; rows: {[r.name for r in ROWS]}", file=sys.stderr)
        return 2
    base = repo_root() or Path.cwd()
    # another budget gets its own folders (a finished run would otherwise be extended)
    default_runs = "n2n_claim" + ("_quick" if args.quick else "") + (f"_steps{args.steps}" if args.steps else "")
    runs = args.runs or base / "runs" / default_runs
    # a larger budget's report goes to a folder of its own beside the main one
    results_dir = base / "benchmarks" / "results"
    out = args.out or (runs if args.quick else results_dir / default_runs if args.steps else results_dir)
    torch.set_num_threads(budget.threads)
    try:
        root = data_root()
        if root is None or not (root / TRAIN_SET).is_dir():
            raise InputError(f"{TRAIN_SET} not found: set DENOISE_DATA to the image data folder")
        images = functools.cache(lambda: load_folder(root / TRAIN_SET, gray=False)[1])
        tests = ScoringSets(budget)
        results = {}
        for i, row in enumerate(rows, 1):
            t = time.perf_counter()
            results[row] = run_row(row, budget, runs, root / TRAIN_SET, images, tests)
            scores = ", ".join(f"{k} {v['psnr']:.2f}" for k, v in results[row]["sets"].items())
            print(f"[{i}/{len(rows)}] {row.name}: {scores} dB ({time.perf_counter() - t:.0f} s)", flush=True)
        out.mkdir(parents=True, exist_ok=True)
        command = "python benchmarks/n2n_claim.py" + "".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:]))
        plot_curves(out / "n2n_claim.png", runs, rows)
        write_report(out / "n2n_claim.md", results, budget, command, time.perf_counter() - start, "n2n_claim.png")
    except DenoiseError as exc:
        print(f"n2n_claim: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out / 'n2n_claim.md'} and {out / 'n2n_claim.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
