"""``denoise fit`` measured on PolyU: PSNR of the fitted model against the CPU minutes of fitting.

PolyU holds real noisy photos of 5 cameras, each with a clean reference (the mean of many
shots of the static scene; pairs share a file name under ``clean/`` and ``noisy/``). Each
camera's noisy photos stand for one user's folder: the model is fitted on them alone,
from the noisy photos alone (:func:`denoise.training.fit.fit`, what ``denoise fit`` runs, with
its defaults: crops, batch, learning rate; the objective of ``--self-mode``, default pseudo), and the clean references serve only
to score the fitted model on those same noisy photos (PSNR of the output clipped to
[0, 1], not quantised, mean over the camera's photos; "mean" is the mean over all photos).

The budgets are cumulative CPU minutes of training (``time.process_time`` of this process,
on ``--threads`` threads, default 1: with one thread, CPU minutes are the minutes of one
free core whatever else loads the machine): the fit runs to the first budget, is scored,
resumed to the next, and so on; budget 0 is the base model as it is. Loading and scoring
are not counted. The fits live in a temporary model folder, removed at the end.

Writes ``benchmarks/results/fit_polyu.md`` and ``fit_polyu.png`` (PSNR against CPU
minutes, per camera and mean), both atomically::

    python benchmarks/fit_polyu.py                                  # real-color, 0/2/5/10 min
    python benchmarks/fit_polyu.py --model runs/real-color          # a run folder as the base
    python benchmarks/fit_polyu.py --every 20 --minutes 0,0.2 --out /tmp/fit   # a quick look

``--every N`` uses every N-th pair (sorted by name) only.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from denoise.errors import DenoiseError, InputError
from denoise.evaluation.report import markdown_table
from denoise.evaluation.testsets import data_root, photo_pairs, repo_root
from denoise.inference import restore
from denoise.io import read_image
from denoise.metrics import psnr
from denoise.models.registry import create_model
from denoise.training.build import init_weights
from denoise.training.fit import BATCH, CROP, LR, fit, resolve_base
from denoise.training.trainer import Trainer
from denoise.utils import output_file, write_text


def budgets_arg(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated minutes such as 0,2,5,10, got {text!r}") from None
    if any(not v >= 0 for v in values) or values != sorted(set(values)):
        raise argparse.ArgumentTypeError(f"budgets must be increasing minutes >= 0, got {text}")
    return values


def base_model(name: str) -> torch.nn.Module:
    """The model a fit of ``name`` starts from (budget 0), in eval mode."""
    base = resolve_base(name, 3)
    net = create_model(base.model, pretrained=False, **{"channels": 3, **base.model_kwargs})
    if base.init is not None:
        init_weights(net, base.init, what=base.model)
    return net.eval()


def score(model: torch.nn.Module, photos: list[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    """PSNR (dB) of the model's output on each noisy photo against its clean reference."""
    model.eval()
    return [float(psnr(restore(noisy, model, tile=None).output, clean, data_range=1.0))
            for clean, noisy in photos]


def run_camera(camera: str, photos, budgets: list[float], args, base: torch.nn.Module) -> dict:
    """Scores and steps of one camera's fit at each budget."""
    out = {"psnr": {}, "steps": {}, "input": [float(psnr(n, c, data_range=1.0)) for c, n in photos]}
    done = 0.0
    for budget in budgets:
        if budget == 0:
            out["psnr"][budget], out["steps"][budget] = score(base, photos), 0
        else:
            result = fit([noisy for _, noisy in photos], minutes=budget - done, model=args.model,
                         name=f"polyu-{camera}", resume=done > 0, self_mode=args.self_mode, seed=args.seed,
                         threads=args.threads, device="cpu", progress=not args.quiet,
                         command="python benchmarks/fit_polyu.py")
            done = budget
            out["psnr"][budget], out["steps"][budget] = score(result.model, photos), result.steps
        mean = sum(out["psnr"][budget]) / len(photos)
        print(f"{camera}: {budget:g} CPU min, {out['steps'][budget]} steps: {mean:.2f} dB "
              f"(input {sum(out['input']) / len(photos):.2f} dB)", flush=True)
    return out


def report(results: dict[str, dict], budgets: list[float], command: str, seconds: float, model: str,
           mode: str = "pseudo") -> str:
    def mean(values):
        return sum(values) / len(values)

    everything = [v for r in results.values() for v in r["input"]]
    header = ["camera", "photos", "input", *(f"{b:g} min" for b in budgets)]
    rows = []
    for camera, r in results.items():
        rows.append([camera, len(r["input"]), f"{mean(r['input']):.2f}",
                     *(f"{mean(r['psnr'][b]):.2f}" for b in budgets)])
    rows.append(["mean", len(everything), f"{mean(everything):.2f}",
                 *(f"{mean([v for r in results.values() for v in r['psnr'][b]]):.2f}" for b in budgets)])
    steps = [[camera, *(r["steps"][b] for b in budgets)] for camera, r in results.items()]
    intro = (f"`{command}` ({seconds / 60:.1f} min in all). Base model: `{model}`. Each camera's noisy "
             f"photos are fitted on alone (`denoise fit`'s defaults, {mode} objective, "
             f"crops {CROP}, batch {BATCH}, Adam at {LR:g}, batch-norm statistics frozen); the clean "
             "references only score the fitted model on those same photos. PSNR in dB of the output "
             "clipped to [0, 1]; *input*: the noisy photos themselves; budgets in cumulative CPU minutes "
             f"of training (process time, {torch.get_num_threads()} thread(s)); 0 is the base model. See "
             "the script's docstring.")
    lines = ["# `denoise fit` on PolyU: PSNR against CPU minutes of fitting", "", intro, "",
             markdown_table(header, rows), "", "Steps reached:", "",
             markdown_table(["camera", *(f"{b:g} min" for b in budgets)], steps), "",
             "![PSNR against CPU minutes](fit_polyu.png)", ""]
    return "\n".join(lines)


def plot(path: Path, results: dict[str, dict], budgets: list[float]) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    every = defaultdict(list)
    for i, (camera, r) in enumerate(results.items()):
        ys = [sum(r["psnr"][b]) / len(r["psnr"][b]) for b in budgets]
        ax.plot(budgets, ys, marker="o", ms=3, color=f"C{i}", label=camera)
        for b in budgets:
            every[b] += r["psnr"][b]
    ax.plot(budgets, [sum(every[b]) / len(every[b]) for b in budgets], color="black", lw=2.5, marker="s",
            label="mean")
    inputs = [v for r in results.values() for v in r["input"]]
    ax.axhline(sum(inputs) / len(inputs), color="gray", ls="--", lw=1, label="noisy input (mean)")
    ax.set_xlabel("CPU minutes of fitting")
    ax.set_ylabel("PSNR (dB) vs the clean reference")
    ax.set_title("denoise fit on PolyU (each camera's noisy photos)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with output_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="real-color",
                   help="the base: a blind model name with weights, a user model, a .safetensors file or a "
                        "training run folder (default real-color)")
    p.add_argument("--minutes", type=budgets_arg, default=[0.0, 2.0, 5.0, 10.0], metavar="B,B,...",
                   help="cumulative CPU-minute budgets (default 0,2,5,10)")
    p.add_argument("--self-mode", choices=("pseudo", "pd", "n2n"), default="pseudo",
                   help="the objective (default pseudo, as denoise fit)")
    p.add_argument("--data", type=Path, help="the PolyU folder (default: PolyU in the data folder)")
    p.add_argument("--every", type=int, default=1, help="use every N-th pair (default: all)")
    p.add_argument("--out", type=Path, help="report folder (default: benchmarks/results)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fits (default 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    Trainer.clock = staticmethod(time.process_time)  # the budgets are CPU minutes
    try:
        root = data_root()
        folder = args.data or (root / "PolyU" if root is not None else None)
        if folder is None or not folder.is_dir():
            raise InputError("PolyU not found: pass --data or set DENOISE_DATA to the image data folder")
        cameras: dict[str, list] = defaultdict(list)
        for camera, clean_path, noisy_path in photo_pairs(folder)[::max(1, args.every)]:
            clean, noisy = read_image(clean_path)[0], read_image(noisy_path)[0]
            if clean.shape != noisy.shape or clean.shape[1] != 3:
                raise InputError(f"{clean_path.name}: clean and noisy must be color photos of one size")
            cameras[camera].append((clean, noisy))
        base = base_model(args.model)
        results = {}
        saved = os.environ.get("DENOISE_MODELS")
        with tempfile.TemporaryDirectory(prefix="fit_polyu-") as models:
            os.environ["DENOISE_MODELS"] = models  # the fits never touch the user's model folder
            try:
                for camera in sorted(cameras):
                    results[camera] = run_camera(camera, cameras[camera], args.minutes, args, base)
            finally:
                if saved is None:
                    os.environ.pop("DENOISE_MODELS", None)
                else:
                    os.environ["DENOISE_MODELS"] = saved
        out = args.out or (repo_root() or Path.cwd()) / "benchmarks" / "results"
        out.mkdir(parents=True, exist_ok=True)
        command = "python benchmarks/fit_polyu.py" + "".join(
            f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv))
        plot(out / "fit_polyu.png", results, args.minutes)
        write_text(out / "fit_polyu.md", report(results, args.minutes, command, time.perf_counter() - start,
                                                args.model, args.self_mode))
    except DenoiseError as exc:
        print(f"fit_polyu: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out / 'fit_polyu.md'} and {out / 'fit_polyu.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
