"""A perceptual loss for the gated DSC denoiser: classifier features alone, and mixed with pixel L2.

Every row trains the same network (``dsc``: the gated conv-deconv network with direct
symmetric connections, fixed gates 0.1-0.4, residual output; same initialisation, data,
optimiser and number of steps) on CBSD432 color crops corrupted by Gaussian noise
(sigma 25) plus 5% salt and pepper (``gaussian:25+saltpepper:0.05``), with clean targets,
under one of these losses (:class:`denoise.training.perceptual.FeatureLoss`):

* ``pixel``: mean squared error (pixel L2);
* ``feature``: L2 between the frozen CIFAR10 classifier's features (stages 2 and 3, after
  their ReLU; the classifier of ``benchmarks/cifar_classifier.py``) of output and target;
* ``feature-batchstats``: the same, with the classifier's BatchNorm normalising by each
  batch's own statistics (a loss network left in train mode; its running statistics do not
  move): features blind to the intensity scale of the whole batch;
* ``mix-W``: pixel L2 + W * c * feature L2, where ``c`` (measured once on a fixed batch of
  noisy training crops against their clean versions) makes both terms equal on the noisy
  input: W = 1 weighs them equally at the start of training.

Scores (output clipped to [0, 1], not quantised; mean over a set of the per-image values):
PSNR and SSIM on the first 12 CBSD68 images and on Kodak24 (500x500), the noise of image i
drawn from ``torch.Generator().manual_seed(seed + i)``, and the mean output intensity
against the clean images' (the feature-only failure: dark outputs). The figure shows crops
of two Kodak24 images for every row, and the validation PSNR curves.

    python benchmarks/cifar_classifier.py      # first: the classifier (runs/cifar-classifier/)
    python benchmarks/perceptual_loss.py       # every row, then the report
    python benchmarks/perceptual_loss.py --rows pixel     # only the pixel row (the denoiser
                                                          # that benchmarks/pretraining.py uses)
    python benchmarks/perceptual_loss.py --quick          # smoke test (needs cifar_classifier.py --quick)

Runs live in ``runs/perceptual_loss/<row>`` (git-ignored) and resume from their
checkpoints; finished rows are reused. Writes ``benchmarks/results/perceptual_loss.md`` and
``perceptual_loss.png``.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from denoise.errors import DenoiseError, InputError, TrainingError
from denoise.evaluation.bench import load_test_set
from denoise.evaluation.report import detail_crop, markdown_table, to_display
from denoise.evaluation.testsets import data_root, repo_root
from denoise.inference import restore
from denoise.metrics import psnr, ssim
from denoise.models.classifier import load_classifier
from denoise.noise import parse_noise
from denoise.training import TrainConfig, Trainer, build_model, hardware_description, read_log
from denoise.training.data import load_folder
from denoise.training.perceptual import DEFAULT_LAYERS, FeatureLoss, calibrate
from denoise.training.runlog import CHECKPOINT, LOG
from denoise.training.trainer import folder_data
from denoise.utils import file_digest, output_file, write_json, write_text

NOISE = "gaussian:25+saltpepper:0.05"
TRAIN_SET = "CBSD432"
TEST_SETS = (("CBSD68", 12), ("Kodak24", None))
FIGURE_IMAGES = ("kodim13", "kodim01")  # textures: grass and rock; a brick wall
INTENSITY = "intensity.json"


@dataclass(frozen=True)
class Row:
    """One loss: ``pixel`` weight and ``feature`` weight W (in units of the calibration c);
    ``batch_statistics``: the classifier's BatchNorm on batch statistics (a loss network
    left in train mode), to show what that does."""

    name: str
    feature: float
    pixel: float
    batch_statistics: bool = False


ROWS = (Row("pixel", 0.0, 1.0), Row("feature", 1.0, 0.0), Row("feature-batchstats", 1.0, 0.0, True),
        Row("mix-0.1", 0.1, 1.0), Row("mix-1", 1.0, 1.0), Row("mix-10", 10.0, 1.0))


@dataclass(frozen=True)
class Budget:
    """What every row gets."""

    crop: int = 64
    batch_size: int = 16
    steps: int = 2000
    lr: float = 5e-4
    val_count: int = 12
    val_crop: int = 128
    val_every: int = 100
    threads: int = 1
    seed: int = 0
    layers: tuple[int, ...] = DEFAULT_LAYERS
    max_images: int | None = None  # test images per set (None: as in TEST_SETS)

    def config(self, train_dir: Path, out: Path) -> TrainConfig:
        return TrainConfig(
            model="dsc", model_kwargs={"gates": "fixed"}, data="folder", train_dir=str(train_dir), gray=False,
            noise=NOISE, target="clean", loss="l2", val_count=self.val_count, val_crop=self.val_crop,
            crop=self.crop, batch_size=self.batch_size, steps=self.steps, lr=self.lr, seed=self.seed,
            out=str(out), checkpoint_every=self.val_every, val_every=self.val_every, log_every=self.val_every,
            threads=self.threads, device="cpu", progress=True, plot=False)


FULL = Budget()
QUICK = Budget(crop=32, batch_size=4, steps=4, val_count=2, val_crop=64, val_every=2, max_images=2)


class LossTrainer(Trainer):
    """The training loop of :class:`denoise.training.Trainer` with another loss function
    (``loss_fn``; None keeps the config's ``loss``, the pixel L2 of the ``pixel`` row; the
    run folder's ``loss.json`` records the loss), which also records the mean output intensity on the validation images at every
    validation (``intensity.json``: the drift towards dark outputs, step by step)."""

    def __init__(self, config: TrainConfig, loss_fn=None, **kwargs):
        super().__init__(config, **kwargs)
        if loss_fn is not None:
            self.loss_fn = loss_fn.to(self.device)

    @torch.no_grad()
    def validate(self) -> float | None:
        value = super().validate()
        if self._val_cache:
            self.model.eval()
            outs = [self.model(noisy.to(self.device)).float().clamp(0, 1).mean() for noisy, _, _ in self._val_cache]
            refs = [ref.mean() for _, ref, _ in self._val_cache]
            self.model.train()
            path = self.run_dir / INTENSITY
            rows = [r for r in (json.loads(path.read_text()) if path.is_file() else []) if r["step"] < self.step]
            write_json(path, rows + [{"step": self.step, "mean_out": float(torch.stack(outs).mean()),
                                      "mean_clean": float(torch.stack(refs).mean())}])
        return value


def make_loss(row: Row, classifier, layers, scale: float) -> FeatureLoss:
    return FeatureLoss(classifier, layers, feature_weight=row.feature * scale, pixel_weight=row.pixel,
                       batch_statistics=row.batch_statistics)


def calibration(data, classifier, layers) -> float:
    """c = pixel L2 / feature L2 of 64 noisy training crops against their clean versions."""
    batch = data.sample(64, torch.Generator().manual_seed(999))
    return calibrate(FeatureLoss(classifier, layers), batch.input, batch.target)


def train_row(row: Row, config: TrainConfig, data, loss_fn: FeatureLoss | None, loss_card: dict) -> None:
    """Train (or resume) one row; refuses a folder trained with another loss."""
    out = Path(config.out)
    card_path = out / "loss.json"
    ckpt = out / CHECKPOINT
    if ckpt.is_file():
        saved = json.loads(card_path.read_text()) if card_path.is_file() else None
        if saved != loss_card:
            raise InputError(f"{out} was trained with another loss or classifier ({saved}); remove it "
                             "or pass another --runs folder")
        step = int(torch.load(ckpt, map_location="cpu", weights_only=True)["step"])
        if step >= config.steps:
            return
    out.mkdir(parents=True, exist_ok=True)
    write_json(card_path, loss_card)
    LossTrainer(config, loss_fn, data=data).fit(resume=ckpt.is_file())


def trained_model(config: TrainConfig) -> tuple[torch.nn.Module, dict]:
    ckpt = torch.load(Path(config.out) / CHECKPOINT, map_location="cpu", weights_only=True)
    model = build_model(config, 3)
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


def test_sets(budget: Budget) -> dict[str, list[tuple[str, torch.Tensor, torch.Tensor]]]:
    """``{label: [(name, clean, noisy), ...]}``; image i's noise from ``seed + i``."""
    noise = parse_noise(NOISE)
    sets = {}
    for name, limit in TEST_SETS:
        limit = budget.max_images if budget.max_images is not None else limit
        label, images = load_test_set(name, max_images=limit)
        sets[label] = [(n, x, noise(x, generator=torch.Generator().manual_seed(budget.seed + i)))
                       for i, (n, x) in enumerate(images)]
    return sets


def detail(y: torch.Tensor, clean: torch.Tensor) -> float:
    """Texture kept: the mean absolute difference between neighbouring pixels of ``y``
    over that of the clean image (1: as much fine detail as the clean image; below 1:
    smoothed away; above 1: more than there is, noise or artefacts)."""
    def activity(x):
        return float((x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean())
    return activity(y.clamp(0, 1)) / activity(clean)


def score(model, sets) -> tuple[dict, dict[str, torch.Tensor]]:
    """Per set: PSNR, SSIM, mean output and clean intensity, detail kept (:func:`detail`)
    and the inputs' scores; and every output by image name (for the figure)."""
    results, outputs = {}, {}
    for label, images in sets.items():
        rows = []
        for name, clean, noisy in images:
            y = restore(noisy, model, tile=None).output
            outputs[name] = y
            rows.append([float(psnr(y, clean)[0]), float(ssim(y, clean)[0]), float(y.mean()),
                         float(clean.mean()), detail(y, clean), float(psnr(noisy, clean)[0]),
                         float(ssim(noisy.clamp(0, 1), clean)[0])])
        mean = torch.tensor(rows, dtype=torch.float64).mean(0).tolist()
        results[label] = dict(zip(("psnr", "ssim", "mean_out", "mean_clean", "detail", "input_psnr", "input_ssim"),
                                  mean), n_images=len(images))
    return results, outputs


def run_row(row: Row, budget: Budget, runs: Path, train_dir: Path, images, classifier, classifier_id: str | None,
            sets) -> tuple[dict, dict]:
    """Train (or reuse) one row and score it. ``classifier`` may be None for a row without
    a feature term (its calibration is then not measured)."""
    config = budget.config(train_dir, runs / row.name)
    data = folder_data(config, images())
    scale = calibration(data, classifier, budget.layers) if classifier is not None else None
    if row.feature:
        loss_fn = make_loss(row, classifier, budget.layers, scale)
        card = {"row": asdict(row), "layers": list(budget.layers), "calibration": scale, "classifier": classifier_id,
                "noise": NOISE}
    else:
        loss_fn, card = None, {"row": asdict(row), "noise": NOISE}  # the config's L2; no classifier
    train_row(row, config, data, loss_fn, card)
    model, ckpt = trained_model(config)
    if int(ckpt["step"]) < config.steps:  # stopped by a signal: never score or report a partial row
        raise TrainingError(f"row {row.name} stopped at step {int(ckpt['step'])} of {config.steps}; run the "
                            "same command again to resume it")
    start = time.perf_counter()
    results, outputs = score(model, sets)
    return ({"row": asdict(row), "calibration": scale, "step": int(ckpt["step"]), "train_s": float(ckpt["elapsed_s"]),
             "eval_s": time.perf_counter() - start, "val_psnr": ckpt.get("last_val_psnr"), "sets": results}, outputs)


@torch.no_grad()
def landscape(classifier, layers, scale: float, images, outputs: dict[str, dict]) -> list[tuple[str, float, float]]:
    """``(candidate output, c * feature L2, pixel L2)`` against the clean images, mean over
    ``images`` ([(name, clean, noisy)]): trivial outputs next to the noisy input and the
    trained rows' outputs. Shows what each loss prefers."""
    loss = FeatureLoss(classifier, layers)
    box = torch.ones(3, 1, 5, 5) / 25

    def blur(x):
        return torch.nn.functional.conv2d(torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate"), box, groups=3)

    candidates = {
        "noisy input": lambda name, clean, noisy: noisy,
        "black (all 0)": lambda name, clean, noisy: torch.zeros_like(clean),
        "flat, the image's mean colour": lambda name, clean, noisy: clean.mean(dim=(2, 3), keepdim=True).expand_as(clean),
        "0.5 x clean (darker, half contrast)": lambda name, clean, noisy: 0.5 * clean,
        "clean - 0.2 (darker)": lambda name, clean, noisy: clean - 0.2,
        "clean blurred (5x5 box)": lambda name, clean, noisy: blur(clean),
        **{f"output of '{row}'": (lambda name, clean, noisy, row=row: outputs[row][name]) for row in outputs},
    }
    table = []
    for label, make in candidates.items():
        feats, pixels = [], []
        for name, clean, noisy in images:
            y = make(name, clean, noisy)
            feats.append(scale * float(loss.feature_term(y, clean)))
            pixels.append(float(torch.mean((y - clean) ** 2)))
        table.append((label, sum(feats) / len(feats), sum(pixels) / len(pixels)))
    return table


# --------------------------------------------------------------------------- report

#: An output whose mean intensity is below the clean images' by more than this is "dark".
DARK = 0.05


def findings(results: dict[str, dict], trivial: list[tuple[str, float, float]], trivial_set: str) -> list[str]:
    """The issue's questions answered from the measured numbers, one bullet each."""
    labels = list(next(iter(results.values()))["sets"])
    pixel = results.get("pixel")
    lines = []

    def scores(r: dict, label: str) -> str:
        s = r["sets"][label]
        return (f"{label} {s['psnr']:.2f} dB / SSIM {s['ssim']:.4f}, mean {s['mean_out']:.3f} "
                f"(clean {s['mean_clean']:.3f})")

    for name in ("feature", "feature-batchstats"):
        if name not in results:
            continue
        r = results[name]
        drift = [r["sets"][label]["mean_out"] - r["sets"][label]["mean_clean"] for label in labels]
        below = [label for label in labels if r["sets"][label]["psnr"] < r["sets"][label]["input_psnr"]]
        if any(d < -DARK for d in drift):
            verdict = "the report's failure **reproduced**: the outputs are darker than the clean images"
        elif any(d > DARK for d in drift):
            verdict = ("the report's dark outputs **not reproduced**, the intensity drifts the other way: the "
                       "outputs are brighter than the clean images")
        else:
            verdict = f"the report's dark outputs **not reproduced** (mean output within {DARK} of the clean images')"
        if below:
            verdict += f", and they score below the noisy input on {', '.join(below)}"
        lines.append(f"- `{name}` (feature loss alone): {'; '.join(scores(r, label) for label in labels)}: "
                     f"{verdict}.")
    costs = {label: (f, q) for label, f, q in trivial}
    reference = "output of 'pixel'" if "output of 'pixel'" in costs else "noisy input"
    if reference in costs:
        ref_f, ref_q = costs[reference]
        cheaper = [(label, f, q) for label, f, q in trivial
                   if not label.startswith("output of") and label != "noisy input" and f < ref_f and q > ref_q]
        if cheaper:
            shown = "; ".join(f"{label}: {f:.5f} (pixel L2 {q:.5f})" for label, f, q in cheaper)
            lines.append(
                f"- Why: under the feature loss, outputs far from the clean image cost less than the "
                f"{reference.replace('output of', 'output of the row')} ({ref_f:.5f}, pixel L2 {ref_q:.5f}) on "
                f"{trivial_set}: {shown}. The classifier's features keep what tells the classes apart "
                "and drop the rest (absolute intensity, colour offsets, fine detail are partly normalised or "
                "cut by the ReLUs), so a loss made only of them has minima the pixel loss would never accept, "
                "and training drifts towards them.")
        else:
            lines.append(f"- Why: no simple output in the table below costs less than the {reference} under the "
                         "feature loss; the failure, if any, is not a cheap trivial minimum of this loss.")
    if pixel is not None:
        for name, r in results.items():
            if not name.startswith("mix-"):
                continue
            parts = []
            for label in labels:
                a, b = r["sets"][label], pixel["sets"][label]
                parts.append(f"{label} {a['psnr'] - b['psnr']:+.2f} dB, SSIM {a['ssim'] - b['ssim']:+.4f}, "
                             f"detail {b['detail']:.2f} -> {a['detail']:.2f}")
            lines.append(f"- `{name}` against pixel L2 alone: {'; '.join(parts)}.")
    return lines



def figure(path: Path, results: dict[str, dict], outputs: dict[str, dict], sets, runs: Path, names) -> None:
    """Crops (clean, noisy, each row) of two test images, and the validation PSNR curves."""
    from matplotlib.figure import Figure

    pool = {n: (clean, noisy) for images in sets.values() for n, clean, noisy in images}
    names = [n for n in names if n in pool] or list(pool)[:2]
    cols = ["clean", "noisy", *results]
    fig = Figure(figsize=(2.2 * len(cols), 2.5 * len(names) + 3.2))
    grid = fig.add_gridspec(len(names) + 1, len(cols), height_ratios=[2.3] * len(names) + [3.0])
    for i, name in enumerate(names):
        clean, noisy = pool[name]
        top, left, side = detail_crop(clean, 96)
        for j, col in enumerate(cols):
            img = clean if col == "clean" else noisy if col == "noisy" else outputs[col][name]
            ax = fig.add_subplot(grid[i, j])
            ax.imshow(to_display(img[..., top:top + side, left:left + side]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if col != "clean":
                ref = img.clamp(0, 1)
                ax.set_xlabel(f"{float(psnr(ref, clean)[0]):.2f} dB, SSIM {float(ssim(ref, clean)[0]):.3f}\n"
                              f"mean {float(ref.mean()):.3f}", fontsize=7)
            ax.set_title(f"{col}\n{name}" if i == 0 else name, fontsize=8)
    half = len(cols) // 2
    ax, bx = fig.add_subplot(grid[len(names), :half]), fig.add_subplot(grid[len(names), half:])
    for name in results:
        log = [r for r in read_log(runs / name / LOG) if r["val_psnr"] is not None]
        line = ax.plot([r["step"] for r in log], [r["val_psnr"] for r in log], marker="o", ms=2, lw=1, label=name)
        drift = runs / name / INTENSITY
        rows = json.loads(drift.read_text()) if drift.is_file() else []
        bx.plot([r["step"] for r in rows], [r["mean_out"] for r in rows], marker="o", ms=2, lw=1,
                color=line[0].get_color(), label=name)
    if rows:
        bx.axhline(rows[-1]["mean_clean"], color="black", ls=":", lw=1, label="clean")
    ax.set(xlabel="step", ylabel="validation PSNR (dB)", title="held-out CBSD432 (center crops)")
    bx.set(xlabel="step", ylabel="mean output intensity", title="held-out CBSD432: mean of the output (clipped)")
    for a in (ax, bx):
        a.grid(alpha=0.3)
        a.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with output_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def write_report(path: Path, results: dict[str, dict], budget: Budget, classifier_path: Path, command: str,
                 wall_s: float, figure_name: str, trivial: list[tuple[str, float, float]], trivial_set: str) -> None:
    labels = list(next(iter(results.values()))["sets"])
    header = ["loss", "pixel", "feature W", "val PSNR"]
    for label in labels:
        header += [f"{label} PSNR", f"{label} SSIM", f"{label} mean (clean)", f"{label} detail"]
    body = []
    for name, r in results.items():
        line = [name, f"{r['row']['pixel']:g}", f"{r['row']['feature']:g}", f"{r['val_psnr'] or float('nan'):.2f}"]
        for label in labels:
            s = r["sets"][label]
            line += [f"{s['psnr']:.2f}", f"{s['ssim']:.4f}", f"{s['mean_out']:.3f} ({s['mean_clean']:.3f})",
                     f"{s['detail']:.2f}"]
        body.append(line)
    first = next(iter(results.values()))
    inputs = "; ".join(f"{label}: {first['sets'][label]['input_psnr']:.2f} dB, SSIM "
                       f"{first['sets'][label]['input_ssim']:.4f}" for label in labels)
    train_s = sum(r["train_s"] for r in results.values())
    text = "\n".join([
        "# Perceptual (classifier-feature) loss for the gated DSC denoiser",
        "",
        f"Command: `{command}` (this invocation {wall_s / 60:.1f} min; finished rows are reused).",
        "",
        f"Noise `{NOISE}`; noisy inputs {inputs}. Loss = pixel * L2(pixels) + W * c * "
        f"L2(features), features of stages {list(budget.layers)} (after ReLU) of the frozen "
        f"classifier `{classifier_path}` in eval mode; c = {first['calibration']:.4g} makes both terms "
        "equal on noisy training crops; `feature-batchstats` normalises the classifier's BatchNorm "
        "by each batch's statistics instead of the running ones. 'mean' is the mean output "
        "intensity (clipped to [0, 1]) against the clean images' mean; 'detail' the output's mean "
        "absolute difference between neighbouring pixels over the clean image's (1: as much fine "
        "texture as the clean image, below 1: smoothed).",
        "",
        markdown_table(header, body),
        "",
        f"What each loss prefers: c x feature L2 and pixel L2 of simple outputs against the clean "
        f"images ({trivial_set}, mean over the images; c as above, so both columns are equal on "
        "noisy training crops):",
        "",
        markdown_table(["output", "c x feature L2", "pixel L2"],
                       [[label, f"{f:.5f}", f"{q:.5f}"] for label, f, q in trivial]),
        "",
        "Findings:",
        "",
        *findings(results, trivial, trivial_set),
        "",
        "Budget (every row): " + ", ".join(f"{k} {v}" for k, v in asdict(budget).items() if k != "max_images")
        + "; Adam (0.9, 0.99), constant learning rate then a cosine ramp-down over the last 30%, "
        f"random crops of {TRAIN_SET} (minus its last {budget.val_count} images, held out for the "
        "validation PSNR) with flips and 90-degree rotations, clean targets.",
        "",
        f"Hardware: {hardware_description('cpu', budget.threads)}; training {train_s / 60:.1f} min "
        "summed over the rows (shared machine: indicative).",
        "",
        f"![crops and curves]({figure_name})",
        "",
    ])
    write_text(path, text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few steps per row, two test images per set")
    p.add_argument("--rows", nargs="+", metavar="ROW", help=f"only these rows ({' '.join(r.name for r in ROWS)})")
    p.add_argument("--classifier", type=Path, help="classifier weights (default: runs/cifar-classifier[-quick]/"
                   "classifier.safetensors)")
    p.add_argument("--runs", type=Path, help="run folders (default runs/perceptual_loss[_quick])")
    p.add_argument("--out", type=Path, help="report folder (default benchmarks/results; --quick: the runs folder)")
    p.add_argument("--steps", type=int, help="another number of steps per row")
    args = p.parse_args(argv)
    start = time.perf_counter()
    budget = QUICK if args.quick else FULL
    if args.steps:
        budget = replace(budget, steps=args.steps)
    torch.set_num_threads(budget.threads)
    rows = tuple(r for r in ROWS if not args.rows or r.name in args.rows)
    base = repo_root() or Path.cwd()
    suffix = "_quick" if args.quick else ""
    runs = args.runs or base / "runs" / f"perceptual_loss{suffix}"
    out = args.out or (runs if args.quick else base / "benchmarks" / "results")
    classifier_path = args.classifier or base / "runs" / f"cifar-classifier{suffix.replace('_', '-')}" / \
        "classifier.safetensors"
    command = "python benchmarks/perceptual_loss.py" + "".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:]))
    try:
        if args.rows and len(rows) != len(args.rows):
            raise InputError(f"unknown row in {args.rows}; rows: {[r.name for r in ROWS]}")
        root = data_root()
        if root is None or not (root / TRAIN_SET).is_dir():
            raise InputError(f"{TRAIN_SET} not found: set DENOISE_DATA to the image data folder")
        pixel_only = all(not r.feature for r in rows)
        if pixel_only and not classifier_path.is_file():
            classifier, classifier_id = None, None  # rows without a feature term; no report
        else:
            classifier, _ = load_classifier(classifier_path)
            classifier_id = file_digest(classifier_path)
        cache: list = []

        def images():
            if not cache:
                cache.append(load_folder(root / TRAIN_SET, gray=False)[1])
            return cache[0]

        sets = test_sets(budget)
        results, outputs = {}, {}
        for i, row in enumerate(rows, 1):
            t = time.perf_counter()
            results[row.name], outputs[row.name] = run_row(row, budget, runs, root / TRAIN_SET, images, classifier,
                                                           classifier_id, sets)
            write_json(runs / row.name / "scores.json", results[row.name])
            shown = ", ".join(f"{k} {v['psnr']:.2f} dB / {v['ssim']:.4f} / mean {v['mean_out']:.3f}"
                              for k, v in results[row.name]["sets"].items())
            print(f"[{i}/{len(rows)}] {row.name}: {shown} ({time.perf_counter() - t:.0f} s)", flush=True)
        if classifier is None:
            print(f"no classifier at {classifier_path} (python benchmarks/cifar_classifier.py): rows trained and "
                  "scored, report not written", flush=True)
            return 0
        out.mkdir(parents=True, exist_ok=True)
        figure(out / "perceptual_loss.png", results, outputs, sets, runs, FIGURE_IMAGES)
        label = next(iter(sets))
        trivial = landscape(classifier, budget.layers, next(iter(results.values()))["calibration"], sets[label],
                            outputs)
        write_report(out / "perceptual_loss.md", results, budget, classifier_path.relative_to(base)
                     if classifier_path.is_relative_to(base) else classifier_path, command,
                     time.perf_counter() - start, "perceptual_loss.png", trivial, label)
    except DenoiseError as exc:
        print(f"perceptual_loss: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out / 'perceptual_loss.md'} and {out / 'perceptual_loss.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
