"""The README's "your own model" workflow, end to end, timed: two folders of noisy shots ->
``denoise train`` -> ``denoise export-weights`` -> ``denoise run -m NAME``.

The noisy shots are made here from training images (CBSD432 crops, two independent
Gaussian draws of sigma 25 per scene: a stand-in for two exposures of a static scene);
the trained model is then run on noisy versions of test images it never saw (the first
images of CBSD68) and scored against their clean originals, beside the noisy input and
``dct`` with the true sigma. Every step is a ``denoise`` command, printed as it runs.

    python benchmarks/user_workflow.py --scenes 40 --steps 400 --out benchmarks/results/user_workflow.md
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from denoise.evaluation.testsets import data_root, load_set
from denoise.io import read_image, write_image
from denoise.metrics import psnr
from denoise.utils import write_text


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenes", type=int, default=40, help="training scenes (CBSD432 crops)")
    p.add_argument("--crop", type=int, default=128, help="side of each scene's centre crop")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--test-images", type=int, default=5, help="first N images of CBSD68")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="also write the markdown report here")
    return p.parse_args(argv)


def sh(args: list[str], env: dict) -> float:
    """Run a denoise command, echo it, return its wall time."""
    print("$ " + shlex.join(args), flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "denoise", *args[1:]], check=True, env=env)
    return time.perf_counter() - start


def main(argv=None) -> int:
    args = parse_args(argv)
    root = data_root()
    if root is None:
        print("real images not found (DENOISE_DATA or ../shared/data); nothing to do")
        return 0
    work = Path(tempfile.mkdtemp(prefix="denoise-workflow-"))
    env = {**os.environ, "DENOISE_MODELS": str(work / "models"), "OMP_NUM_THREADS": str(args.threads)}
    g = torch.Generator().manual_seed(0)
    for side in ("shots_a", "shots_b"):
        (work / side).mkdir()
    for i, (name, clean) in enumerate(load_set(root / "CBSD432")[: args.scenes]):
        h, w = clean.shape[-2:]
        c = args.crop
        clean = clean[..., (h - c) // 2:(h - c) // 2 + c, (w - c) // 2:(w - c) // 2 + c]
        for side in ("shots_a", "shots_b"):
            write_image(work / side / f"{Path(name).stem}.png",
                        (clean + 25 / 255 * torch.randn(clean.shape, generator=g)).clamp(0, 1))
    (work / "test_noisy").mkdir()
    tests = load_set(root / "CBSD68")[: args.test_images]
    for i, (name, clean) in enumerate(tests):
        noise = 25 / 255 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(100 + i))
        write_image(work / "test_noisy" / f"{Path(name).stem}.png", (clean + noise).clamp(0, 1))
    train = ["denoise", "train", "--data", "pairs", "--train-dir", str(work / "shots_a"),
             "--target-dir", str(work / "shots_b"), "--model", "n2n-unet", "--model-kwargs",
             '{"residual": true}', "--steps", str(args.steps), "--lr", "6e-4", "--threads", str(args.threads),
             "--out", str(work / "runs" / "mine"), "--no-progress"]
    t_train = sh(train, env)
    t_export = sh(["denoise", "export-weights", str(work / "runs" / "mine"), "my-camera"], env)
    t_run = sh(["denoise", "run", str(work / "test_noisy"), "-o", str(work / "clean_mine"), "--mkdir",
                "-m", "my-camera", "-q"], env)
    sh(["denoise", "run", str(work / "test_noisy"), "-o", str(work / "clean_dct"), "--mkdir", "-m", "dct",
        "--sigma", "25", "-q"], env)
    scores = {"noisy input": [], "my-camera (trained here)": [], "dct (true sigma)": []}
    for name, clean in tests:
        stem = Path(name).stem + ".png"
        for label, folder in (("noisy input", "test_noisy"), ("my-camera (trained here)", "clean_mine"),
                              ("dct (true sigma)", "clean_dct")):
            scores[label].append(float(psnr(read_image(work / folder / stem)[0], clean)[0]))
    rows = [f"| {k} | {sum(v) / len(v):.2f} |" for k, v in scores.items()]
    report = "\n".join([
        "# Your own model from noisy pairs: the workflow, timed",
        "",
        f"{args.scenes} scenes ({args.crop}x{args.crop} crops of CBSD432), two noisy shots each "
        f"(Gaussian sigma 25, independent draws); `denoise train` {args.steps} steps on {args.threads} "
        f"thread(s): {t_train:.0f} s; export {t_export:.1f} s; `denoise run` on {len(tests)} CBSD68 images "
        f"(noise seeds 100+): {t_run:.1f} s. Mean PSNR (dB) against the clean images, outputs as written "
        "to 8-bit PNG:",
        "",
        "| method | PSNR |",
        "|---|---:|",
        *rows,
        "",
        f"Command: `python benchmarks/user_workflow.py --scenes {args.scenes} --steps {args.steps} "
        f"--threads {args.threads}`",
    ])
    print(report)
    if args.out:
        write_text(args.out, report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
