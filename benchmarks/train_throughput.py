"""Training throughput of the Noise2Noise U-Net on this machine, per precision/layout variant.

Prints images/s (random crops, Adam steps) for float32, bfloat16 autocast, channels_last
and torch.compile, each as a ratio to float32 measured in the same run, and optionally
(``--psnr-steps N``) the validation PSNR after N equal training steps on real data for
float32 and bfloat16 autocast, to check the cheaper variant costs at most 0.05 dB.

    python benchmarks/train_throughput.py --threads 1 --crop 64 --batch 16
"""
from __future__ import annotations

import argparse
import contextlib
import tempfile
import time

import torch

from denoise.models.unet import N2NUNet
from denoise.training.losses import l2_loss

VARIANTS = ("float32", "bfloat16", "channels_last", "compile")


def make_step(variant: str, channels: int):
    """A (model, step(x, y)) pair for one variant."""
    torch.manual_seed(0)
    model = N2NUNet(channels=channels)
    if variant == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    fwd = torch.compile(model) if variant == "compile" else model
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if variant == "bfloat16" \
        else contextlib.nullcontext

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        if variant == "channels_last":
            x, y = x.contiguous(memory_format=torch.channels_last), y.contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        with autocast():
            out = fwd(x)
        loss = l2_loss(out.float(), y)
        loss.backward()
        opt.step()
        return loss.item()

    return model, step


def images_per_second(variant: str, *, channels: int, crop: int, batch: int, seconds: float,
                      warmup: int) -> float:
    """Measure training images/s for ``seconds`` after ``warmup`` steps."""
    _, step = make_step(variant, channels)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, channels, crop, crop, generator=g)
    y = x + 0.1 * torch.randn(x.shape, generator=g)
    for _ in range(warmup):
        step(x, y)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step(x, y)
        n += 1
    return n * batch / (time.perf_counter() - t0)


def psnr_after_steps(variant: str, steps: int, *, channels: int, crop: int, batch: int) -> float:
    """Validation PSNR (held-out Train400/CBSD432 images, sigma 25) after ``steps`` equal
    training steps of one variant (same seed, same batches)."""
    from denoise.evaluation.testsets import data_root
    from denoise.training.trainer import TrainConfig, Trainer

    root = data_root()
    if root is None:
        raise SystemExit("the PSNR check needs the training images: set DENOISE_DATA or place them in ../shared/data")
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(model="n2n-unet", train_dir=str(root / ("Train400" if channels == 1 else "CBSD432")),
                          gray=channels == 1, noise="gaussian:0-50", val_noise="gaussian:25", val_count=8,
                          val_crop=96, crop=crop, batch_size=batch, steps=steps, lr=6e-4, schedule="constant",
                          checkpoint_every=steps, log_every=steps, out=out, progress=False, plot=False,
                          channels_last=variant == "channels_last", amp="bf16" if variant == "bfloat16" else "none",
                          compile=variant == "compile", threads=torch.get_num_threads())
        return Trainer(cfg).fit().val_psnr


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seconds", type=float, default=20.0, help="timed seconds per variant")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--psnr-steps", type=int, default=0,
                   help="also train each variant this many equal steps on real images and compare PSNR")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"N2N U-Net training, {args.channels} ch, {args.batch}x{args.crop}x{args.crop}, "
          f"{args.threads} thread(s), torch {torch.__version__}")
    ref = None
    for variant in args.variants.split(","):
        try:
            ips = images_per_second(variant, channels=args.channels, crop=args.crop, batch=args.batch,
                                    seconds=args.seconds, warmup=args.warmup + (3 if variant == "compile" else 0))
        except Exception as exc:  # a variant unsupported on this machine is reported, not fatal
            print(f"{variant:14s} failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            continue
        ref = ips if variant == "float32" else ref
        ratio = f"{ips / ref:5.2f}x float32" if ref else ""
        print(f"{variant:14s} {ips:8.2f} images/s  {ratio}", flush=True)
    if args.psnr_steps:
        print(f"validation PSNR after {args.psnr_steps} equal steps (sigma 25, held-out training images):")
        ref_psnr = None
        for variant in args.variants.split(","):
            value = psnr_after_steps(variant, args.psnr_steps, channels=args.channels, crop=args.crop,
                                     batch=args.batch)
            ref_psnr = value if variant == "float32" else ref_psnr
            delta = f"{value - ref_psnr:+.3f} dB vs float32" if ref_psnr is not None else ""
            print(f"{variant:14s} {value:7.3f} dB  {delta}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
