"""Peak memory and time of denoising a 40-megapixel RGB photo, tiled or in one piece.

The test image is scikit-image's astronaut photo (512x512) mirrored over 7744x5164
pixels (40.0 MP, the size of a full-frame camera's raw), with unclipped Gaussian noise.
Each mode should run in a fresh process, since the peak resident set size
(``ru_maxrss``) never goes down:

    python benchmarks/tiling_memory.py                  # dct, 512-pixel tiles
    python benchmarks/tiling_memory.py --tile 0         # dct in one piece (bands of rows)

Prints the resident memory after start-up, with the input in memory, and at the peak,
the wall and CPU seconds of the denoising, and the PSNR as a sanity check. The clean
image is kept as 8-bit (120 MB) so that the PSNR costs no float copy.
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

import denoise

ROWS_PER_CHUNK = 256


def rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def clean_photo(height: int, width: int) -> np.ndarray:
    """The astronaut photo mirrored over (height, width, 3), uint8."""
    from skimage import data

    photo = data.astronaut()
    pad = ((0, max(height - photo.shape[0], 0)), (0, max(width - photo.shape[1], 0)), (0, 0))
    return np.ascontiguousarray(np.pad(photo, pad, mode="symmetric")[:height, :width])


def to_tensor_chunked(clean: np.ndarray, sigma: float, seed: int) -> torch.Tensor:
    """Noisy float32 tensor (1, 3, H, W) built band by band, without full-size temporaries."""
    h, w, _ = clean.shape
    x = torch.empty(1, 3, h, w)
    generator = torch.Generator().manual_seed(seed)
    for r in range(0, h, ROWS_PER_CHUNK):
        band = torch.from_numpy(clean[r:r + ROWS_PER_CHUNK]).permute(2, 0, 1).float().div_(255)
        band += sigma * torch.randn(band.shape, generator=generator)
        x[0, :, r:r + ROWS_PER_CHUNK] = band
    return x


def psnr_chunked(y: torch.Tensor, clean: np.ndarray) -> float:
    """PSNR (data range 1) of y (1, 3, H, W) against the uint8 clean image, band by band."""
    squared = 0.0
    for r in range(0, clean.shape[0], ROWS_PER_CHUNK):
        ref = torch.from_numpy(clean[r:r + ROWS_PER_CHUNK]).permute(2, 0, 1)[None].double().div_(255)
        squared += float((y[:, :, r:r + ROWS_PER_CHUNK].double() - ref).square().sum())
    return float(10 * np.log10(clean.size / squared))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="dct")
    p.add_argument("--width", type=int, default=7744)
    p.add_argument("--height", type=int, default=5164)
    p.add_argument("--sigma", type=float, default=25, help="0-255 scale")
    p.add_argument("--tile", type=int, default=512, help="tile side in pixels; 0 = one piece")
    p.add_argument("--estimate", action="store_true", help="estimate sigma instead of passing it")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    start_mb = rss_mb()
    clean = clean_photo(args.height, args.width)
    x = to_tensor_chunked(clean, args.sigma / 255, args.seed)
    input_mb = rss_mb()
    sigma = None if args.estimate else args.sigma / 255
    wall, cpu = time.perf_counter(), cpu_seconds()
    y = denoise.denoise(x, args.model, sigma, tile=args.tile or None)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    peak_mb = rss_mb()

    mp = args.width * args.height / 1e6
    print(f"{args.model}, {args.width}x{args.height} RGB ({mp:.1f} MP), sigma {args.sigma:g}, "
          f"{'tile ' + str(args.tile) if args.tile else 'one piece'}, {torch.get_num_threads()} threads")
    print(f"resident memory: start {start_mb:.0f} MB, with input {input_mb:.0f} MB, "
          f"peak {peak_mb:.0f} MB (input and output: {2 * x.numel() * 4 / 2**20:.0f} MB)")
    print(f"time: {wall:.1f} s wall, {cpu:.1f} s CPU ({wall / mp:.2f} s/MP wall)")
    print(f"PSNR: noisy {psnr_chunked(x, clean):.2f} dB, denoised {psnr_chunked(y, clean):.2f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
