"""Train the compact CIFAR10 classifier whose trunk is the gated DSC denoiser's encoder.

The classifier (:class:`denoise.models.classifier.DSCClassifier`) is the network behind the
perceptual loss (``benchmarks/perceptual_loss.py``). Protocol:

1. **Selection on held-out training images.** Every candidate in :data:`CANDIDATES` (the
   number of extra stride-1 convolutions per stage, dropout, weight decay) trains on
   CIFAR10 ``train/`` minus 100 images per class (drawn with seed 1234), under the budget
   of :data:`FULL`, and is scored on those 1000 held-out images after its last epoch. The
   test images are not read in this phase.
2. **Final run.** The candidate with the best held-out accuracy trains on all of ``train/``
   (10000 images) with the same budget (seed 0). Its ``test/`` accuracy (5000 images) is
   recorded after every epoch for the curves; the figure reported is the last epoch's (no
   early stopping on the test set).

Outputs: ``runs/cifar-classifier/classifier.safetensors`` (git-ignored; the architecture in
its metadata, read by :func:`denoise.models.classifier.load_classifier`), the run folders
(``select/<candidate>/``, ``final/``, resumable checkpoints), and
``benchmarks/results/cifar_classifier.md`` / ``.png`` (table and curves)::

    python benchmarks/cifar_classifier.py            # selection + final run
    python benchmarks/cifar_classifier.py --quick    # a smoke test (a few hundred images,
                                                     # 2 epochs; written under runs/)

Re-running resumes unfinished runs and reuses finished ones.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from denoise.errors import DenoiseError, InputError
from denoise.evaluation.report import markdown_table
from denoise.evaluation.testsets import data_root, repo_root
from denoise.models.classifier import DSCClassifier, load_classifier, save_classifier
from denoise.training import hardware_description
from denoise.training.cifar import (
    CHECKPOINT,
    ClassifierConfig,
    LabelledImages,
    finished_history,
    load_cifar,
    per_class_split,
    record_history,
    train_classifier,
)
from denoise.utils import file_digest, output_file, write_json, write_text

HELD_OUT_PER_CLASS = 100
HELD_OUT_SEED = 1234


@dataclass(frozen=True)
class Candidate:
    """One architecture / regularisation setting tried in the selection phase."""

    extra: tuple[int, ...]  # extra stride-1 convolutions per stage
    dropout: float = 0.0
    weight_decay: float = 5e-4

    @property
    def name(self) -> str:
        extra = "-".join(map(str, self.extra)) if len(set(self.extra)) > 1 else str(self.extra[0])
        return f"extra{extra}-drop{self.dropout:g}-wd{self.weight_decay:g}"


#: The bare encoder (5 convolutions, ~25 M multiply-adds per 32x32 image) and one extra
#: convolution in the first three stages (~82 M). A third candidate, one extra convolution in
#: every stage (~100 M), was dropped before it ran: about an hour of CPU for a variant whose
#: extra convolutions sit at 4x4 and 2x2, where there is little left to gain.
CANDIDATES = (Candidate((0, 0, 0, 0, 0)), Candidate((1, 1, 1, 0, 0)))
FULL = ClassifierConfig(epochs=40, batch_size=128, lr=0.1, warmup=0.15, weight_decay=5e-4,
                        label_smoothing=0.1, seed=0)
QUICK = replace(FULL, epochs=2, batch_size=32)



def run(candidate: Candidate, budget: ClassifierConfig, train: LabelledImages,
        evals: dict[str, LabelledImages], out: Path, threads: int, *,
        export: Path | None = None) -> tuple[DSCClassifier, list[dict]]:
    """Train (or resume, or reuse) one candidate in ``out``; return the model and history.

    A finished run leaves ``history.json`` (candidate, budget, training-set size, history).
    Without ``export`` (the selection phase, which only reads the held-out accuracy) that
    file alone is reused and the model returned is untrained, so finished candidates can be
    kept across machines without their checkpoints. With ``export`` (the final run) the
    trained weights are written there (safetensors) and their digest joins the record: the
    finished run is reused, from that file, only while it still holds those weights."""
    config = replace(budget, weight_decay=candidate.weight_decay)
    torch.manual_seed(config.seed)  # the initialisation
    model = DSCClassifier(extra=list(candidate.extra), dropout=candidate.dropout)
    card = {"candidate": asdict(candidate), "config": asdict(config), "train_size": len(train)}
    if export is None:
        history = finished_history(out, card)
        if history is not None:
            return model.eval(), history
    elif export.is_file():
        history = finished_history(out, {**card, "weights": file_digest(export)})
        if history is not None:
            return load_classifier(export)[0], history
    history = train_classifier(model, train, config, evals=evals, out=out, progress=True)
    if export is not None:
        save_classifier(export, model, train.classes)
        card["weights"] = file_digest(export)
    record_history(out, card, history)
    return model.eval(), history


def plot(path: Path, history: list[dict], title: str) -> None:
    """Loss and accuracy curves of the final run."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6))
    ax1, ax2 = fig.subplots(1, 2)
    epochs = [r["epoch"] for r in history]
    ax1.plot(epochs, [r["train_loss"] for r in history], label="train (augmented, label smoothing)")
    tested = [r for r in history if "test_loss" in r]
    ax1.plot([r["epoch"] for r in tested], [r["test_loss"] for r in tested], label="test")
    ax1.set_ylabel("cross-entropy")
    ax2.plot(epochs, [r["train_accuracy"] for r in history], label="train (augmented)")
    ax2.plot([r["epoch"] for r in tested], [r["test_accuracy"] for r in tested], label="test")
    ax2.axhline(0.8, color="gray", ls=":", lw=1, label="80%")
    ax2.set_ylabel("accuracy")
    for ax in (ax1, ax2):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with output_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def report(path: Path, selection: dict[str, dict], best: Candidate, final: list[dict], budget: ClassifierConfig,
           sizes: dict[str, int], command: str, threads: int, figure: str) -> None:
    rows = [[name, f"{r['val_accuracy']:.4f}", f"{r['params'] / 1e6:.2f} M", f"{r['wall_s'] / 60:.1f}"]
            for name, r in selection.items()]
    last = final[-1]
    best_epoch = max((r for r in final if "test_accuracy" in r), key=lambda r: r["test_accuracy"])
    text = "\n".join([
        "# CIFAR10 classifier with the DSC encoder as trunk",
        "",
        f"Command: `{command}`.",
        "",
        f"**Test accuracy: {last['test_accuracy']:.4f}** ({sizes['test']} test images, after the last "
        f"of {len(final)} epochs; test loss {last['test_loss']:.4f}). Network `{best.name}`: the "
        "five DSC encoder convolutions (3x3, 64, 64, 128, 256, 512 features, the last four with "
        "stride 2), each with BatchNorm and ReLU"
        + (f", extra stride-1 conv-BN-ReLUs per stage: {list(best.extra)}" if any(best.extra) else "")
        + f", global average pooling, dropout {best.dropout:g}, a linear layer. (For information "
        f"only, not used to choose anything: the best epoch on test was {best_epoch['epoch']} with "
        f"{best_epoch['test_accuracy']:.4f}.)",
        "",
        f"Selection (held-out: {sizes['held']} train/ images, the same number per class, seed {HELD_OUT_SEED}; "
        f"candidates trained on the other {sizes['fit']}; test/ not read):",
        "",
        markdown_table(["candidate", "held-out accuracy", "parameters", "train min"], rows),
        "",
        "Budget (every run): " + ", ".join(f"{k} {v}" for k, v in asdict(budget).items()
                                           if k not in ("eval_every",)) + "; SGD with Nesterov "
        "momentum, one-cycle learning rate (linear warm-up from lr/25, cosine to 0), random "
        "32x32 crops of the 4-pixel zero-padded image and horizontal flips; inputs in [0, 1], "
        "no other normalisation. Weight decay as in the candidate.",
        "",
        f"Hardware: {hardware_description('cpu', threads)}; final run {last['wall_s'] / 60:.1f} min "
        "of training (shared machine: indicative).",
        "",
        f"![curves]({figure})",
        "",
    ])
    write_text(path, text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke test: few images, 2 epochs")
    p.add_argument("--runs", type=Path, help="run folder (default runs/cifar-classifier[-quick])")
    p.add_argument("--out", type=Path, help="report folder (default benchmarks/results; --quick: the run folder)")
    p.add_argument("--candidates", nargs="+", help="only these candidates (names as in the table)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = repo_root() or Path.cwd()
    runs = args.runs or base / "runs" / ("cifar-classifier-quick" if args.quick else "cifar-classifier")
    out = args.out or (runs if args.quick else base / "benchmarks" / "results")
    budget = QUICK if args.quick else FULL
    candidates = [c for c in CANDIDATES if not args.candidates or c.name in args.candidates]
    command = "python benchmarks/cifar_classifier.py" + "".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:]))
    try:
        root = data_root()
        if root is None or not (root / "CIFAR10").is_dir():
            raise InputError("CIFAR10 not found: set DENOISE_DATA to the image data folder")
        if not candidates:
            raise InputError(f"no candidate selected; candidates: {[c.name for c in CANDIDATES]}")
        train = load_cifar(root / "CIFAR10", "train", per_class=30 if args.quick else None)
        test = load_cifar(root / "CIFAR10", "test", per_class=20 if args.quick else None)
        held, fit = per_class_split(train.labels, 10 if args.quick else HELD_OUT_PER_CLASS, HELD_OUT_SEED)
        selection = {}
        for c in candidates:
            t = time.perf_counter()
            model, hist = run(c, budget, train.subset(fit), {"val": train.subset(held)}, runs / "select" / c.name,
                              args.threads)
            selection[c.name] = {"val_accuracy": hist[-1]["val_accuracy"], "wall_s": hist[-1]["wall_s"],
                                 "params": sum(q.numel() for q in model.parameters())}
            print(f"{c.name}: held-out accuracy {hist[-1]['val_accuracy']:.4f} "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
        best = max(candidates, key=lambda c: selection[c.name]["val_accuracy"])
        weights = runs / "classifier.safetensors"
        model, final = run(best, replace(budget, seed=0), train, {"test": test}, runs / "final", args.threads,
                           export=weights)
        print(f"final {best.name}: test accuracy {final[-1]['test_accuracy']:.4f}", flush=True)
        write_json(runs / "classifier.json", {"candidate": asdict(best), "budget": asdict(budget),
                                              "test_accuracy": final[-1]["test_accuracy"],
                                              "selection": selection, "command": command,
                                              "checkpoint": str(runs / "final" / CHECKPOINT)})
        out.mkdir(parents=True, exist_ok=True)
        plot(out / "cifar_classifier.png", final, f"{best.name} on CIFAR10 train/ ({len(train)} images)")
        report(out / "cifar_classifier.md", selection, best, final, budget,
               {"test": len(test), "fit": len(fit), "held": len(held)}, command, args.threads, "cifar_classifier.png")
    except DenoiseError as exc:
        print(f"cifar_classifier: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {weights}, {out / 'cifar_classifier.md'} and {out / 'cifar_classifier.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
