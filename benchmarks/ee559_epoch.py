"""One EE-559 training epoch: its time, and the PSNR it reaches on the course data.

    python benchmarks/ee559_epoch.py --project 1 --data DIR [--pretrained] [--threads 2]
        [--pairs N] [--json FILE]

Trains ``denoise.ee559.projectN.Model`` for one epoch on ``DIR/train_data.pkl`` (all
pairs, or the first ``--pairs``), from scratch or from the shipped weights, as the course
does, then scores ``DIR/val_data.pkl`` (mean per-image PSNR, outputs clipped to [0, 255]).

Shared machines make wall time unreliable, so the script reports three times: wall
seconds, the process's CPU seconds (with ``--threads 1`` this is the time one dedicated
core would need: an upper bound for two cores), and the load average before and after.
As a reference measured in the same run it also times the bare optimisation steps of the
same network on random batches (no data handling), and prints the ratio: the overhead of
the course loop (conversion, shuffling, augmentation).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from denoise.ee559.data import TRAIN_FILE, VAL_FILE, course_psnr, load_course_pair
from denoise.ee559.pretrain import project_model, score


def bare_steps(model, batches: int) -> float:
    """CPU seconds per image of ``batches`` bare optimisation steps on random batches."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(model.batch_size, 3, 32, 32, generator=g, device=model.device)
    y = torch.rand(model.batch_size, 3, 32, 32, generator=g, device=model.device)
    model._set_mode(training=True)
    model._train_step(x, y, model.lr)  # warm-up
    start = time.process_time()
    for _ in range(batches):
        model._train_step(x, y, model.lr)
    return (time.process_time() - start) / (batches * model.batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=int, choices=(1, 2), required=True)
    parser.add_argument("--data", type=Path, required=True, help="folder of the course .pkl files")
    parser.add_argument("--pretrained", action="store_true", help="start from the shipped weights")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--pairs", type=int, default=None, help="train on the first N pairs only")
    parser.add_argument("--reference-batches", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    inputs, targets = load_course_pair(args.data / TRAIN_FILE)
    if args.pairs:
        inputs, targets = inputs[:args.pairs], targets[:args.pairs]
    val_noisy, val_clean = load_course_pair(args.data / VAL_FILE)
    model = project_model(args.project)
    if args.pretrained:
        model.load_pretrained_model()
    before = score(model, val_noisy, val_clean)

    load_before = os.getloadavg()
    wall, cpu = time.perf_counter(), time.process_time()
    model.train(inputs, targets, 1)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    load_after = os.getloadavg()
    after = score(model, val_noisy, val_clean)
    reference = bare_steps(project_model(args.project), args.reference_batches)

    n = inputs.shape[0]
    result = {
        "project": args.project, "start": "pretrained" if args.pretrained else "scratch",
        "pairs": n, "threads": args.threads,
        "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "cpu_s_per_50000": round(cpu / n * 50_000, 1),
        "loadavg_before": load_before, "loadavg_after": load_after,
        "reference_cpu_s_per_50000": round(reference * 50_000, 1),
        "loop_overhead_ratio": round(cpu / n / reference, 3),
        "val_noisy_psnr_db": round(course_psnr(val_noisy, val_clean), 3),
        "val_psnr_before_db": round(before, 3), "val_psnr_after_db": round(after, 3),
    }
    print(f"project {args.project}, one epoch of {n} pairs from {result['start']}, "
          f"{args.threads} thread(s): {wall:.0f} s wall, {cpu:.0f} s CPU "
          f"({result['cpu_s_per_50000']:.0f} CPU-s per 50,000 pairs; bare steps "
          f"{result['reference_cpu_s_per_50000']:.0f}, ratio {result['loop_overhead_ratio']:.2f}); "
          f"load average {load_before[0]:.1f} -> {load_after[0]:.1f}")
    print(f"val_data.pkl PSNR: noisy input {result['val_noisy_psnr_db']:.2f} dB, before "
          f"{before:.2f} dB, after the epoch {after:.2f} dB")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
