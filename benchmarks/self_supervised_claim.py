"""Learning from single noisy images, measured: clean targets vs noisy pairs vs single noisy images.

The Noise2Noise claim's harness and protocol (``benchmarks/n2n_claim.py``: the same network,
initialisation, data, optimiser, number of steps, batch and crops for every row; its
scoring), for Gaussian sigma=25 only, with four kinds of supervision:

* ``clean``: clean targets (L2);
* ``noisy``: noisy pairs, an independent noise draw of the same crop as target (Noise2Noise, L2);
* ``self-n2n``: single noisy images, Neighbor2Neighbor (``--target self``; the network sees
  each crop once, noisy, and never a second draw nor the clean crop);
* ``self-pd``: single noisy images, the blind-spot masking loss on pixel-shuffle-downsampled
  sub-images (``--target self --self-mode pd``; training stride 2, inference stride 1).
  It is built for spatially correlated noise; on pixel-independent Gaussian noise it shows
  what the blind spot costs.

Training on CBSD432 color crops (its last 12 images, sorted by name, held out for the
validation curves); scored on the full Kodak24_full and CBSD68 sets (PSNR of the output
clipped to [0, 1], not quantised; the noise of test image i drawn from
``torch.Generator().manual_seed(seed + i)``, identical for every row). The claim checked:
single noisy images land within 0.5 dB of noisy pairs at the same budget (published, at
convergence on a GPU: Neighbor2Neighbor 32.08 dB vs Noise2Noise 32.41 dB on Kodak).

Regenerate ``benchmarks/results/self_supervised_claim.md`` and ``self_supervised_claim.png``
(about 20 minutes on 1 free CPU thread; the default budget is n2n_claim's)::

    python benchmarks/self_supervised_claim.py

``--steps N`` trains every row for N steps instead (runs in ``runs/self_supervised_claim_stepsN``,
report in ``benchmarks/results/self_supervised_claim_stepsN/``); ``--rows`` picks rows;
``--max-images K`` scores the first K images of each set; ``--quick`` is a smoke test (a few
steps, two test images; written under ``runs/self_supervised_claim_quick``). Finished rows
are reused and interrupted ones resumed from their checkpoints.
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from denoise.errors import DenoiseError, InputError
from denoise.evaluation.report import markdown_table
from denoise.evaluation.testsets import data_root, repo_root
from denoise.training import TrainConfig, read_log
from denoise.training.data import load_folder
from denoise.training.runlog import LOG
from denoise.training.selfsup import objective_for
from denoise.utils import output_file, write_json, write_text


def _load_n2n_claim():
    """benchmarks/n2n_claim.py, whose budget, training and scoring every row here reuses."""
    name = "n2n_claim"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("n2n_claim.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


N2N = _load_n2n_claim()
NOISE = "gaussian"  # N2N.NOISES[NOISE] == "gaussian:25"
TOLERANCE = 0.5  # dB: single images within this of noisy pairs
PUBLISHED = {"Noise2Noise (noisy pairs)": 32.41, "Neighbor2Neighbor (single images)": 32.08}


@dataclass(frozen=True)
class Row:
    """One kind of supervision: the Trainer's target (and self-supervised mode)."""

    name: str
    target: str
    self_mode: str = "n2n"
    label: str = ""

    def config(self, budget, train_dir: Path, out: Path) -> TrainConfig:
        """n2n_claim's configuration of the Gaussian L2 row, with this row's target."""
        config = budget.config(N2N.Row(NOISE, self.target, "l2"), train_dir, out)
        return replace(config, self_mode=self.self_mode) if self.target == "self" else config


ROWS = (
    Row("clean", "clean", label="clean targets"),
    Row("noisy", "noisy", label="noisy pairs (Noise2Noise)"),
    Row("self-n2n", "self", "n2n", label="single noisy images: Neighbor2Neighbor"),
    Row("self-pd", "self", "pd", label="single noisy images: blind spot + PD"),
)


def trained_restorer(config: TrainConfig) -> tuple[torch.nn.Module, dict]:
    """The row's trained network as it denoises a whole image (PD inference for pd rows)."""
    model, ckpt = N2N.trained_model(config)
    objective = objective_for(config, model)
    return (objective.restorer(model) if objective is not None else model).eval(), ckpt


def score_row(config: TrainConfig, tests) -> dict:
    """PSNR of the row's model and of its noisy inputs on every test set."""
    model, ckpt = trained_restorer(config)
    noisy = tests.noisy(config.noise)
    start = time.perf_counter()
    scores = {label: {"psnr": N2N.set_psnr(N2N.evaluate(model, noisy[label]), images),
                      "input_psnr": N2N.set_psnr(noisy[label], images), "n_images": len(images)}
              for label, images in tests.sets.items()}
    return {"step": int(ckpt["step"]), "train_s": float(ckpt["elapsed_s"]),
            "eval_s": time.perf_counter() - start, "val_psnr": ckpt.get("last_val_psnr"), "sets": scores}


def run_row(row: Row, budget, runs: Path, train_dir: Path, images, tests) -> dict:
    """Train (or resume) and score one row; a finished row's saved scores are reused."""
    out = runs / row.name
    config = row.config(budget, train_dir, out)
    result_path = out / "scores.json"
    if result_path.is_file():
        saved = json.loads(result_path.read_text())
        if saved.get("step") == config.steps and saved.get("budget") == asdict(budget):
            return saved
    N2N.train_row(config, images)
    result = {**score_row(config, tests), "budget": asdict(budget), "row": asdict(row), "noise_spec": config.noise}
    write_json(result_path, result)
    return result


# --------------------------------------------------------------------------- report


def _fmt(value: float | None, signed: bool = False) -> str:
    return "–" if value is None else f"{value:+.2f}" if signed else f"{value:.2f}"


def results_table(results: dict[Row, dict], labels: list[str]) -> str:
    """One line per row: PSNR per set, and its difference to noisy pairs and to clean targets."""
    ref = {name: next((r for k, r in results.items() if k.name == name), None) for name in ("clean", "noisy")}
    header = ["supervision", "target", "val PSNR"]
    for label in labels:
        header += [f"{label} input", f"{label} PSNR", f"{label} − noisy pairs", f"{label} − clean"]
    body = []
    for row, res in results.items():
        line = [row.label, row.target + (f" ({row.self_mode})" if row.target == "self" else ""),
                _fmt(res.get("val_psnr"))]
        for label in labels:
            s = res["sets"][label]["psnr"]
            diffs = [None if ref[k] is None or row.name == k else s - ref[k]["sets"][label]["psnr"]
                     for k in ("noisy", "clean")]
            line += [_fmt(res["sets"][label]["input_psnr"]), _fmt(s), _fmt(diffs[0], True), _fmt(diffs[1], True)]
        body.append(line)
    return markdown_table(header, body)


def claim_lines(results: dict[Row, dict], labels: list[str], tolerance: float = TOLERANCE) -> list[str]:
    """Whether each single-image row lands within ``tolerance`` dB of noisy pairs on every set."""
    noisy = next((r for k, r in results.items() if k.name == "noisy"), None)
    if noisy is None:
        return ["- (no noisy-pair row in this run: nothing to compare with)"]
    lines = []
    for row, res in results.items():
        if row.target != "self":
            continue
        diffs = {label: res["sets"][label]["psnr"] - noisy["sets"][label]["psnr"] for label in labels}
        ok = all(d >= -tolerance for d in diffs.values())
        shown = ", ".join(f"{d:+.2f} dB on {label}" for label, d in diffs.items())
        verdict = (f"**more** than {tolerance} dB below noisy pairs." if not ok else
                   "at or above noisy pairs." if min(diffs.values()) >= 0 else f"within {tolerance} dB below noisy pairs.")
        lines.append(f"- {row.label} − noisy pairs: {shown}: {verdict}")
    return lines


def write_report(path: Path, results: dict[Row, dict], budget, command: str, wall_s: float, figure: str) -> None:
    first = next(iter(results.values()))
    labels = list(first["sets"])
    sizes = ", ".join(f"{label} ({first['sets'][label]['n_images']} images)" for label in labels)
    train_s = sum(r["train_s"] for r in results.values())
    eval_s = sum(r["eval_s"] for r in results.values())
    text = "\n".join([
        "# Learning from single noisy images: clean targets vs noisy pairs vs single noisy images",
        "",
        f"Command: `{command}` (this invocation: {wall_s / 60:.1f} min; finished rows are reused from "
        "their run folders).",
        "",
        f"Gaussian noise sigma=25 (`{N2N.NOISES[NOISE]}`). PSNR (dB) on {sizes}: mean over the set of the "
        "per-image PSNR of the output clipped to [0, 1], not quantised; 'input' is the noisy input's PSNR. "
        f"The noise of test image i is drawn from `torch.Generator().manual_seed(seed + i)` (seed "
        f"{budget.seed}), the same for every row. Rows 'self' never see a clean image nor a second noisy "
        "draw: Neighbor2Neighbor (sub-sampled neighbour pairs, regulariser weight ramped 0 → 2), and the "
        "blind-spot masking loss on pixel-shuffle-downsampled sub-images (training stride 2, inference: "
        "the plain network at stride 1); see `src/denoise/training/selfsup.py`.",
        "",
        results_table(results, labels),
        "",
        f"Single noisy images at most {TOLERANCE} dB below noisy pairs at the same budget (the claim):",
        "",
        *claim_lines(results, labels),
        "",
        "Published, for scale (Neighbor2Neighbor paper, Kodak, Gaussian sigma=25, trained to convergence on a "
        "GPU with a larger U-Net): " + ", ".join(f"{k} {v:.2f} dB" for k, v in PUBLISHED.items())
        + f", a gap of {PUBLISHED['Noise2Noise (noisy pairs)'] - PUBLISHED['Neighbor2Neighbor (single images)']:.2f} dB.",
        "",
        "Budget and setup (n2n_claim's, identical for every row):",
        "",
        f"- Network: `{budget.model}` (features={budget.features}), the same initialisation (seed {budget.seed}).",
        f"- {budget.steps} Adam steps (betas 0.9, 0.99), batch {budget.batch_size} random "
        f"{budget.crop}x{budget.crop} crops with flips and 90° rotations, lr {budget.lr:g} constant then a "
        "cosine ramp-down over the last 30% of the steps. Neighbor2Neighbor trains on the "
        f"{budget.crop // 2}x{budget.crop // 2} neighbour sub-images of those crops (and runs the network "
        f"on the whole crop, without gradient, for its regulariser); the pd rows on their four "
        f"{budget.crop // 2}x{budget.crop // 2} PD sub-images.",
        f"- Training data: {N2N.TRAIN_SET} color minus its last {budget.val_count} images (held out: the "
        f"validation PSNR against clean images, center {budget.val_crop}x{budget.val_crop} crops, of the "
        "curves and of the 'val PSNR' column). The test sets were not used to choose anything.",
        f"- Hardware: {N2N.hardware_description('cpu', budget.threads)}; times are indicative (shared machine).",
        f"- Time, summed over the rows: training {train_s / 60:.1f} min + scoring {eval_s / 60:.1f} min.",
        "",
        f"![validation PSNR curves]({figure})",
        "",
    ])
    write_text(path, text)


def plot_curves(path: Path, runs: Path, rows: tuple[Row, ...]) -> None:
    """Validation PSNR (held-out CBSD432, clean references) against step, one line per row."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    styles = {"clean": {"color": "black"}, "noisy": {"color": "tab:blue", "ls": "--"},
              "self-n2n": {"color": "tab:green"}, "self-pd": {"color": "tab:orange"}}
    for row in rows:
        log = [r for r in read_log(runs / row.name / LOG) if r["val_psnr"] is not None]
        ax.plot([r["step"] for r in log], [r["val_psnr"] for r in log], marker="o", ms=2.5, lw=1,
                label=row.label, **styles.get(row.name, {}))
    ax.set(title=f"{N2N.NOISES[NOISE]}: one network, one budget", xlabel="step",
           ylabel="validation PSNR (dB, held-out CBSD432)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with output_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


# --------------------------------------------------------------------------- command


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few steps per row, two test images per set")
    p.add_argument("--steps", type=int, help="train every row for this many steps (a budget of its own)")
    p.add_argument("--rows", nargs="+", metavar="ROW", help=f"only these rows (default: {' '.join(r.name for r in ROWS)})")
    p.add_argument("--max-images", type=int, help="score only the first K images of each test set")
    p.add_argument("--runs", type=Path, help="run folders (default: runs/self_supervised_claim[_quick][_stepsN])")
    p.add_argument("--out", type=Path, help="report folder (default: benchmarks/results[/self_supervised_claim_stepsN]; "
                   "--quick: the runs folder)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    budget = N2N.QUICK if args.quick else N2N.FULL
    if args.steps:
        budget = replace(budget, steps=args.steps)
    if args.max_images:
        budget = replace(budget, max_images=args.max_images)
    rows = ROWS if not args.rows else tuple(r for r in ROWS if r.name in args.rows)
    if args.rows and len(rows) != len(args.rows):
        print(f"self_supervised_claim: error: unknown row in {args.rows}; rows: {[r.name for r in ROWS]}",
              file=sys.stderr)
        return 2
    base = repo_root() or Path.cwd()
    default = "self_supervised_claim" + ("_quick" if args.quick else "") + (f"_steps{args.steps}" if args.steps else "")
    runs = args.runs or base / "runs" / default
    results_dir = base / "benchmarks" / "results"
    out = args.out or (runs if args.quick else results_dir / default if args.steps else results_dir)
    torch.set_num_threads(budget.threads)
    try:
        root = data_root()
        if root is None or not (root / N2N.TRAIN_SET).is_dir():
            raise InputError(f"{N2N.TRAIN_SET} not found: set DENOISE_DATA to the image data folder")
        images = functools.cache(lambda: load_folder(root / N2N.TRAIN_SET, gray=False)[1])
        tests = N2N.ScoringSets(budget)
        results = {}
        for i, row in enumerate(rows, 1):
            t = time.perf_counter()
            results[row] = run_row(row, budget, runs, root / N2N.TRAIN_SET, images, tests)
            scores = ", ".join(f"{k} {v['psnr']:.2f}" for k, v in results[row]["sets"].items())
            print(f"[{i}/{len(rows)}] {row.name}: {scores} dB ({time.perf_counter() - t:.0f} s)", flush=True)
        out.mkdir(parents=True, exist_ok=True)
        command = "python benchmarks/self_supervised_claim.py" + "".join(
            f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv))
        plot_curves(out / "self_supervised_claim.png", runs, rows)
        write_report(out / "self_supervised_claim.md", results, budget, command, time.perf_counter() - start,
                     "self_supervised_claim.png")
    except DenoiseError as exc:
        print(f"self_supervised_claim: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out / 'self_supervised_claim.md'} and {out / 'self_supervised_claim.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
