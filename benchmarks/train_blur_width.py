"""Train the learned blur-width estimator (:mod:`denoise.blur_width`) and ship its weights.

One command reproduces the shipped run (one CPU core, one thread; about 35 minutes)::

    taskset -c 1 env OMP_NUM_THREADS=1 nice -n 5 python benchmarks/train_blur_width.py --export

Data: ``<data>/CBSD432`` (``DENOISE_DATA`` or ``../shared/data``), sorted by file name; the
last ``--holdout`` (20) images are held out for validation, the rest are the training set.
No test set (Set5, Set14, ...) is read. Each training sample: a random 128x128 crop (random
flip and 90-degree rotation) of a training image, a Gaussian blur of width ``w`` drawn
log-uniformly in [``--min-width``, ``--max-width``] = [0.3, 3.0] HR pixels then phase-0 x2
decimation (:func:`denoise.degrade.blur_decimate`, float64), rounded to 8 bits as
``benchmarks/blur_estimation.py`` rounds its inputs (:func:`denoise.degrade.round_8bit`), then luma Y
(:func:`denoise.degrade.rgb_to_y`): a 64x64 LR window. Loss: Laplace negative log-likelihood of
``log w`` (``|log w - mu| exp(-s) + s``, the network predicting ``mu`` and ``s``). Adam, batch
32, learning rate 2e-3 with a cosine decay to 0 over ``--steps`` (9000).

Validation (every ``--val-every`` steps and at the end), on the held-out images only: (a) the
loss on fixed random windows; (b) the benchmark's protocol on them: the centre 128x128 crop,
widths 0.8, 1.0, 1.2, 1.6, 2.0, :func:`denoise.blur_width.estimate_width` (the windows and
flips/rotations of inference), mean absolute relative error and the share within 10%.
The shipped weights are the final step's (no selection).

Writes, in ``--out`` (default ``runs/blur-width``, git-ignored): ``checkpoint.pt`` (model,
optimizer, generator state, step; written every ``--ckpt-every`` steps, and a rerun of the
command resumes from it), ``log.jsonl`` (training loss every 100 steps, validation rows),
``final.safetensors``; then, with ``--export`` only, the shipped weights
``src/denoise/weights/blur-width-x2.safetensors`` and their card ``blur-width-x2.json``
(data, held-out set, widths, steps, wall time, validation error, this command).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from denoise.blur_width import NAME, BlurWidthNet, estimate_width
from denoise.degrade import blur_decimate, rgb_to_y, round_8bit
from denoise.evaluation.testsets import data_root, load_set
from denoise.models.registry import WEIGHTS_DIR, save_weights
from denoise.symmetries import transform
from denoise.training.data import center_crop
from denoise.utils import atomic_path, write_json

REPO = Path(__file__).resolve().parents[1]
COMMAND = "taskset -c 1 env OMP_NUM_THREADS=1 nice -n 5 python benchmarks/train_blur_width.py --export"
VAL_WIDTHS = (0.8, 1.0, 1.2, 1.6, 2.0)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="the training folder (default <data>/CBSD432)")
    p.add_argument("--holdout", type=int, default=20, help="last images held out for validation")
    p.add_argument("--out", default=str(REPO / "runs" / "blur-width"))
    p.add_argument("--steps", type=int, default=9000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--crop", type=int, default=128, help="HR crop side (the LR window is half)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-width", type=float, default=0.3)
    p.add_argument("--max-width", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-every", type=int, default=1000)
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--max-minutes", type=float, default=45.0,
                   help="stop early (recorded on the card) past this much wall time")
    p.add_argument("--export", action="store_true", help="write the result over the shipped weights and "
                   "card (src/denoise/weights/blur-width-x2.*; maintainers); without it only the run folder")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def degrade(hr: torch.Tensor, width: float) -> torch.Tensor:
    """HR crop (1, 3, H, W) in [0, 1] -> the LR luma (1, 1, H/2, W/2) float32 the network reads."""
    lr = round_8bit(blur_decimate(hr.double(), 2, width))
    return rgb_to_y(lr).float()


def load_images(args) -> tuple[list[tuple[str, torch.Tensor]], list[tuple[str, torch.Tensor]]]:
    folder = args.data or (data_root() / "CBSD432" if data_root() else None)
    if folder is None:
        sys.exit("the image data folder was not found (set DENOISE_DATA)")
    images = [(stem, (x * 255).round().to(torch.uint8)) for stem, x in load_set(folder, gray=False)]
    return images[:-args.holdout], images[-args.holdout:]


def sample(images, args, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of LR luma windows (B, 1, c/2, c/2) and their log widths (B,)."""
    lo, hi = math.log(args.min_width), math.log(args.max_width)
    xs, ts = [], []
    for _ in range(args.batch):
        img = images[int(torch.randint(len(images), (1,), generator=gen))][1]
        h, w = img.shape[-2:]
        top = int(torch.randint(h - args.crop + 1, (1,), generator=gen))
        left = int(torch.randint(w - args.crop + 1, (1,), generator=gen))
        hr = img[..., top:top + args.crop, left:left + args.crop].double() / 255
        hr = transform(hr, int(torch.randint(8, (1,), generator=gen)))
        t = lo + (hi - lo) * float(torch.rand((), generator=gen, dtype=torch.float64))
        xs.append(degrade(hr, math.exp(t)))
        ts.append(t)
    return torch.cat(xs, 0), torch.tensor(ts, dtype=torch.float32)


def nll(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    mu, s = out[:, 0], out[:, 1]
    return ((mu - target).abs() * torch.exp(-s) + s).mean()


def validate(net: BlurWidthNet, fixed, held, args) -> dict:
    """(a) loss and L1 of log width on ``fixed`` windows; (b) the benchmark's protocol on the
    held-out images (centre crop, :data:`VAL_WIDTHS`, ``estimate_width``)."""
    net.eval()
    with torch.no_grad():
        out = torch.cat([net(x) for x, _ in fixed])
        target = torch.cat([t for _, t in fixed])
        loss, l1 = float(nll(out, target)), float((out[:, 0] - target).abs().mean())
    errors = {}
    for width in VAL_WIDTHS:
        errs = []
        for _, img in held:
            hr = center_crop(img.double() / 255, min(args.crop, *img.shape[-2:]) // 2 * 2)
            lr = round_8bit(blur_decimate(hr, 2, width)).float()
            errs.append((estimate_width(lr, 2, net=net) - width) / width)
        errors[width] = errs
    flat = [abs(e) for errs in errors.values() for e in errs]
    net.train()
    return {"val_loss": loss, "val_l1_log_width": l1, "val_windows": int(target.numel()),
            "protocol_cases": len(flat), "protocol_mean_abs_rel_error": statistics.fmean(flat),
            "protocol_within_10pct": sum(e < 0.1 for e in flat),
            "protocol_by_width": {f"{w:g}": {"mean_rel_error": statistics.fmean(e),
                                             "mean_abs_rel_error": statistics.fmean(abs(v) for v in e),
                                             "within_10pct": sum(abs(v) < 0.1 for v in e)}
                                  for w, e in errors.items()}}


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, held = load_images(args)
    print(f"{len(train)} training images, {len(held)} held out ({held[0][0]} .. {held[-1][0]})", flush=True)
    torch.manual_seed(args.seed)
    net = BlurWidthNet()
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    val_gen = torch.Generator().manual_seed(args.seed + 1)
    fixed = [sample(held, args, val_gen) for _ in range(8)]  # 256 fixed held-out windows
    step, elapsed, log = 0, 0.0, out / "log.jsonl"
    ckpt = out / "checkpoint.pt"
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        step, elapsed = int(state["step"]), float(state["elapsed"])
        print(f"resumed at step {step} ({elapsed / 60:.1f} min)", flush=True)
    elif log.exists():
        log.unlink()

    def write_log(row: dict) -> None:
        with log.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def save_ckpt() -> None:
        with atomic_path(ckpt, overwrite=True) as tmp:
            torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
                        "step": step, "elapsed": elapsed}, tmp)

    start = time.perf_counter() - elapsed
    net.train()
    running, stopped_early, last_val = [], False, None
    while step < args.steps:
        for group in opt.param_groups:
            group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        x, t = sample(train, args, gen)
        loss = nll(net(x), t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        running.append(float(loss.detach()))
        elapsed = time.perf_counter() - start
        if step % 100 == 0:
            row = {"step": step, "loss": statistics.fmean(running), "minutes": elapsed / 60}
            running = []
            write_log(row)
            print(json.dumps(row), flush=True)
        if step % args.val_every == 0 or step == args.steps:
            last_val = {"step": step, **validate(net, fixed, held, args)}
            write_log(last_val)
            print(json.dumps({k: v for k, v in last_val.items() if k != "protocol_by_width"}), flush=True)
        if step % args.ckpt_every == 0 or step == args.steps:
            save_ckpt()
        if elapsed > args.max_minutes * 60 and step < args.steps:
            stopped_early = True
            print(f"stopping early at step {step}: past {args.max_minutes} min", flush=True)
            last_val = {"step": step, **validate(net, fixed, held, args)}
            write_log(last_val)
            save_ckpt()
            break

    save_weights(out / "final.safetensors", net.state_dict())
    if not args.export:
        print(f"weights -> {out / 'final.safetensors'} (the shipped ones are replaced only with --export)")
        return 0
    n_params = sum(p.numel() for p in net.parameters())
    card = {
        "name": NAME,
        "architecture": "BlurWidthNet (denoise.blur_width): 6 unpadded 3x3 convs (24, 24, 48 s2, 48, "
                        "64 s2, 64 channels), ReLU, spatial mean + log(std) -> MLP 65-64-2",
        "parameters": n_params,
        "task": "regress log(Gaussian blur width, HR pixels) of an LR image for x2: Gaussian blur then "
                "phase-0 decimation (denoise.degrade.blur_decimate), 8-bit rounding",
        "input": "luma Y (BT.601, rgb_to_y) of 64x64 LR windows, per window mean removed and divided "
                 "by its std (>= 1/255); log(std) fed to the head",
        "scale": 2,
        "data": "CBSD432 (../shared/data/CBSD432, sorted by name) minus the last "
                f"{args.holdout} images held out for validation: {len(train)} training images",
        "held_out": f"the last {args.holdout} images of sorted CBSD432 ({held[0][0]} .. {held[-1][0]})",
        "degradation": {"crop_hr": args.crop, "augmentation": "random crops, flips, 90-degree rotations",
                        "width_distribution": f"log-uniform in [{args.min_width}, {args.max_width}] HR pixels",
                        "decimation": "blur_decimate(x, 2, width) in float64, phase 0",
                        "rounding": "floor(255 x + 0.5) / 255 on RGB, then Y"},
        "training": {"loss": "Laplace NLL of log width: |log w - mu| exp(-s) + s", "optimizer": "Adam",
                     "batch_size": args.batch, "lr": args.lr, "schedule": "cosine to 0",
                     "planned_steps": args.steps, "steps": step, "seed": args.seed,
                     "stopped_early": stopped_early},
        "validation": {**(last_val or {}),
                       "protocol": "held-out images, centre 128x128 crop, widths "
                                   f"{', '.join(f'{w:g}' for w in VAL_WIDTHS)}, estimate_width "
                                   "(windows and flips/rotations of inference); relative error of the width"},
        "hardware": f"CPU {platform.processor() or platform.machine()}, {args.threads} thread(s), "
                    f"torch {torch.__version__}",
        "torch": torch.__version__,
        "wall_time_s": round(elapsed, 1),
        "reproduce": COMMAND,
        "status": "final" if not stopped_early else "stopped early",
    }
    save_weights(WEIGHTS_DIR / f"{NAME}.safetensors", net.state_dict(), metadata={"name": NAME})
    write_json(WEIGHTS_DIR / f"{NAME}.json", card, sort_keys=True)
    print(f"weights -> {WEIGHTS_DIR / (NAME + '.safetensors')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
