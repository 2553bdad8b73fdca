"""Denoising as pre-training: the classifier's convolutions initialised from a trained denoiser's encoder.

The classifier (:class:`denoise.models.classifier.DSCClassifier`, by default the bare
encoder: five conv-BN-ReLU stages, pooling, a linear layer) trains on CIFAR10 with two
initialisations of its convolutions, everything else identical (architecture, seed of the
other layers, batches, augmentation, budget):

* ``default``: PyTorch's He-normal initialisation (seeded);
* ``denoiser``: the five encoder convolutions copied from the trained gated DSC denoiser
  (:func:`denoise.models.classifier.init_from_denoiser`), by default the ``pixel`` row of
  ``benchmarks/perceptual_loss.py`` (CBSD432, ``gaussian:25+saltpepper:0.05``, pixel L2).

Two data settings: ``full`` (all 10000 train/ images) and ``small`` (100 labelled images
per class, drawn per seed with ``per_class_split(labels, 100, seed + 1000)``, the same draw
for both initialisations). Five seeds each. Test accuracy (test/, 5000 images) and loss are
recorded along training; the report gives mean +- std over the seeds, the paired
differences (denoiser - default, same seed), and answers: does pre-training converge faster
(test accuracy after a quarter of the budget) and reach a higher plateau (final accuracy)?

    python benchmarks/perceptual_loss.py --rows pixel   # first: the denoiser
    python benchmarks/pretraining.py                    # 2 settings x 2 inits x 5 seeds
    python benchmarks/pretraining.py --settings small   # only the 100-per-class setting
    python benchmarks/pretraining.py --quick            # smoke test (after perceptual_loss.py --quick)

Runs live in ``runs/pretraining/<setting>/<init>/seed<k>/`` (git-ignored; resumable,
finished runs reused). Writes ``benchmarks/results/pretraining.md`` and ``pretraining.png``.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import shlex
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from denoise.errors import DenoiseError, InputError, ModelError
from denoise.evaluation.report import markdown_table
from denoise.evaluation.testsets import data_root, repo_root
from denoise.models.classifier import DSCClassifier, init_from_denoiser
from denoise.models.rednet import GatedDSC
from denoise.models.registry import load_weights
from denoise.training import hardware_description
from denoise.training.cifar import (ClassifierConfig, finished_history, load_cifar, per_class_split,
                                   record_history, train_classifier)
from denoise.utils import output_file, write_text

INITS = ("default", "denoiser")
#: The budget of each data setting (identical for both initialisations).
SETTINGS = {
    "full": ClassifierConfig(epochs=20, batch_size=128, lr=0.1, eval_every=1),
    "small": ClassifierConfig(epochs=120, batch_size=64, lr=0.05, eval_every=4),
}
SMALL_PER_CLASS = 100
#: Two-sided 95% critical values of Student's t by degrees of freedom (paired test over seeds).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
QUICK = {"full": replace(SETTINGS["full"], epochs=2, batch_size=32),
         "small": replace(SETTINGS["small"], epochs=4, batch_size=16, eval_every=2)}


def load_denoiser(path: Path) -> GatedDSC:
    """A color GatedDSC (fixed gates) from a training checkpoint or a safetensors file."""
    if not path.is_file():
        raise InputError(f"denoiser not found: {path}; train it first (python benchmarks/perceptual_loss.py "
                         "--rows pixel) or pass --denoiser")
    dsc = GatedDSC(channels=3, gates="fixed")
    if path.suffix == ".safetensors":
        return load_weights(dsc, path).eval()
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    try:
        dsc.load_state_dict(ckpt["model"])
    except (KeyError, RuntimeError) as exc:
        raise ModelError(f"{path} holds no color GatedDSC checkpoint: {str(exc).splitlines()[0]}") from None
    return dsc.eval()




def run_one(setting: str, init: str, seed: int, budgets, data, test, dsc, extra: int, runs: Path,
            denoiser_id: str) -> list[dict]:
    """Train (or resume) one run; a finished run leaves ``history.json`` (its budget, the
    denoiser's digest and the per-epoch history), which is reused without its checkpoint,
    so that finished runs can be kept across machines without their weights."""
    config = replace(budgets[setting], seed=seed)
    out = runs / setting / init / f"seed{seed}"
    card = {"config": asdict(config), "extra": extra, "denoiser": denoiser_id if init == "denoiser" else None}
    history = finished_history(out, card)
    if history is not None:
        return history
    torch.manual_seed(seed)
    model = DSCClassifier(extra=extra)
    if init == "denoiser":
        init_from_denoiser(model, dsc)
    history = train_classifier(model, data, config, evals={"test": test}, out=out, progress=True)
    record_history(out, card, history)
    return history


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of the weights themselves (names and values), the same whether they were
    read from a training checkpoint or from a safetensors export."""
    h = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def curve(histories: list[list[dict]], key: str) -> tuple[list[int], list[float], list[float]]:
    """Epochs where every run has ``key``, and the mean and std over the runs there."""
    epochs = [r["epoch"] for r in histories[0] if key in r]
    rows = [[next(r[key] for r in h if r["epoch"] == e) for h in histories] for e in epochs]
    stats = [mean_std(v) for v in rows]
    return epochs, [m for m, _ in stats], [s for _, s in stats]


def at_fraction(history: list[dict], key: str, fraction: float) -> float:
    """``key`` at the first evaluated epoch at or after ``fraction`` of the epochs."""
    last = history[-1]["epoch"]
    return next(r[key] for r in history if key in r and r["epoch"] >= fraction * last)


def summary(results: dict[str, dict[str, list[list[dict]]]]) -> tuple[str, list[str]]:
    """The table, and one verdict line per setting and question."""
    body, lines = [], []
    for setting, by_init in results.items():
        for init, histories in by_init.items():
            final = mean_std([h[-1]["test_accuracy"] for h in histories])
            best = mean_std([max(r["test_accuracy"] for r in h if "test_accuracy" in r) for h in histories])
            early = mean_std([at_fraction(h, "test_accuracy", 0.25) for h in histories])
            loss = mean_std([h[-1]["test_loss"] for h in histories])
            body.append([setting, init, len(histories), f"{early[0]:.4f} ± {early[1]:.4f}",
                         f"{final[0]:.4f} ± {final[1]:.4f}", f"{best[0]:.4f} ± {best[1]:.4f}",
                         f"{loss[0]:.4f} ± {loss[1]:.4f}"])
        if set(by_init) != set(INITS):
            continue
        pairs = list(zip(by_init["default"], by_init["denoiser"]))
        for what, fn in (("faster convergence (test accuracy after 1/4 of the epochs)",
                          lambda h: at_fraction(h, "test_accuracy", 0.25)),
                         ("higher plateau (final test accuracy)", lambda h: h[-1]["test_accuracy"])):
            diffs = [fn(b) - fn(a) for a, b in pairs]
            m, s = mean_std(diffs)
            se = s / math.sqrt(len(diffs)) if len(diffs) > 1 else float("inf")
            t = T95.get(len(diffs) - 1, 2.0)
            wins = sum(d > 0 for d in diffs)
            verdict = ("too few seeds to tell" if len(diffs) < 3 else "yes" if m > t * se else
                       "no, lower" if m < -t * se else "no clear difference")
            lines.append(f"- {setting}, {what}: denoiser − default = {m * 100:+.2f} ± {s * 100:.2f} points "
                         f"(paired over {len(diffs)} seeds, standard error {se * 100:.2f}; pre-training ahead in "
                         f"{wins}/{len(diffs)}): **{verdict}** (paired t-test at 95%: |mean| > {t:.2f} standard errors).")
    header = ["data", "init", "seeds", "test acc. at 1/4 budget", "final test acc.", "best test acc.",
              "final test loss"]
    return markdown_table(header, body), lines


def plot(path: Path, results: dict[str, dict[str, list[list[dict]]]]) -> None:
    """Per setting: test accuracy, and train / test loss, mean ± std over the seeds."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.6 * len(results)))
    axes = fig.subplots(len(results), 2, squeeze=False)
    colors = {"default": "tab:blue", "denoiser": "tab:orange"}
    for (acc_ax, loss_ax), (setting, by_init) in zip(axes, results.items()):
        for init, histories in by_init.items():
            c = colors[init]
            for ax, key, style in ((acc_ax, "test_accuracy", "-"), (loss_ax, "test_loss", "-"),
                                   (loss_ax, "train_loss", "--")):
                e, m, s = curve(histories, key)
                ax.plot(e, m, style, color=c, lw=1.2, label=f"{init} ({key.replace('_', ' ')})")
                ax.fill_between(e, [a - b for a, b in zip(m, s)], [a + b for a, b in zip(m, s)], color=c,
                                alpha=0.2, lw=0)
        acc_ax.set(xlabel="epoch", ylabel="test accuracy", title=f"{setting}: test accuracy (mean ± std)")
        loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title=f"{setting}: loss (train: augmented, "
                    "label smoothing)")
        for ax in (acc_ax, loss_ax):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    with output_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke test: tiny data, 2 seeds, few epochs")
    p.add_argument("--settings", nargs="+", choices=tuple(SETTINGS), default=list(SETTINGS))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--extra", type=int, default=0, help="extra stride-1 convolutions per stage (default "
                   "initialisation in both arms; 0: every convolution is pre-trained)")
    p.add_argument("--denoiser", type=Path, help="GatedDSC checkpoint or safetensors (default: "
                   "runs/perceptual_loss[_quick]/pixel/checkpoint.pt)")
    p.add_argument("--runs", type=Path, help="run folders (default runs/pretraining[_quick])")
    p.add_argument("--out", type=Path, help="report folder (default benchmarks/results; --quick: the runs folder)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    base = repo_root() or Path.cwd()
    suffix = "_quick" if args.quick else ""
    runs = args.runs or base / "runs" / f"pretraining{suffix}"
    out = args.out or (runs if args.quick else base / "benchmarks" / "results")
    denoiser_path = args.denoiser or base / "runs" / f"perceptual_loss{suffix}" / "pixel" / "checkpoint.pt"
    budgets = QUICK if args.quick else SETTINGS
    seeds = range(2 if args.quick else args.seeds)
    command = "python benchmarks/pretraining.py" + "".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:]))
    try:
        root = data_root()
        if root is None or not (root / "CIFAR10").is_dir():
            raise InputError("CIFAR10 not found: set DENOISE_DATA to the image data folder")
        dsc = load_denoiser(denoiser_path)
        digest = weights_digest(dsc)
        train = load_cifar(root / "CIFAR10", "train", per_class=30 if args.quick else None)
        test = load_cifar(root / "CIFAR10", "test", per_class=10 if args.quick else None)
        per_class = 5 if args.quick else SMALL_PER_CLASS
        results: dict[str, dict[str, list[list[dict]]]] = {}
        for setting in args.settings:
            results[setting] = {init: [] for init in INITS}
            for seed in seeds:
                data = train if setting == "full" else train.subset(per_class_split(train.labels, per_class,
                                                                                     seed + 1000)[0])
                for init in INITS:
                    t = time.perf_counter()
                    h = run_one(setting, init, seed, budgets, data, test, dsc, args.extra, runs, digest)
                    results[setting][init].append(h)
                    print(f"{setting} {init} seed {seed}: test accuracy {h[-1]['test_accuracy']:.4f} "
                          f"({time.perf_counter() - t:.0f} s)", flush=True)
        table, verdicts = summary(results)
        out.mkdir(parents=True, exist_ok=True)
        plot(out / "pretraining.png", results)
        shown = denoiser_path.relative_to(base) if denoiser_path.is_relative_to(base) else denoiser_path
        train_s = sum(h[-1]["wall_s"] for by_init in results.values() for hs in by_init.values() for h in hs)
        text = "\n".join([
            "# Denoising as pre-training for a CIFAR10 classifier",
            "",
            f"Command: `{command}` (this invocation {(time.perf_counter() - start) / 60:.1f} min; finished "
            "runs are reused).",
            "",
            f"Classifier: DSCClassifier(extra={args.extra}) (the DSC encoder's five convolutions with "
            "BatchNorm and ReLU, global average pooling, a linear layer). `denoiser`: its five convolutions "
            f"copied from `{shown}` (weights sha256 {digest}...); `default`: He-normal. Same seed ⇒ same "
            "BatchNorm/head initialisation, batches and augmentation in both arms. Test: CIFAR10 test/ "
            f"({len(test)} images); `small`: {per_class} train/ images per class, drawn per seed.",
            "",
            table,
            "",
            "Mean ± standard deviation over the seeds. 'at 1/4 budget': the first evaluation at or after "
            "a quarter of the epochs; 'best' is shown for information (chosen on test, so optimistic).",
            "",
            "The report's question:",
            "",
            *verdicts,
            "",
            "Budgets: " + "; ".join(f"{s}: " + ", ".join(f"{k} {v}" for k, v in asdict(budgets[s]).items()
                                                          if k != "seed") for s in args.settings)
            + ". SGD with Nesterov momentum, one-cycle schedule, random crops (4-pixel padding) and flips.",
            "",
            f"Hardware: {hardware_description('cpu', args.threads)}; {train_s / 60:.1f} min of training "
            "summed over the runs (shared machine: indicative).",
            "",
            "![curves](pretraining.png)",
            "",
        ])
        write_text(out / "pretraining.md", text)
    except DenoiseError as exc:
        print(f"pretraining: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out / 'pretraining.md'} and {out / 'pretraining.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
