"""How much averaging a real-photo model over mirrored and rotated copies adds on PolyU.

The geometric self-ensemble (``+x8``) runs a model on the eight flips and rotations of a
photo and averages the outputs mapped back. Its smaller subsets cost less: one mirror
(x2 time), a half turn (x2), the four of {identity, half turn, mirror, mirrored half turn}
(x4). This prints the mean PSNR over PolyU's photos (clean references averaged from many
shots; a test set, nothing is tuned on it) of each subset, per camera and over all, so
that the gain can be weighed against the cost bar of the ``real-*`` models (no more CPU
time than the published FFDNet architecture). One thread, untiled, outputs clipped to
[0, 1]::

    python benchmarks/polyu_symmetries.py training-state/real-color-sharp
    python benchmarks/polyu_symmetries.py runs/real-color --every 10      # a quick look

A model is a registered name or a path (a training run folder, a checkpoint, a
.safetensors file). Writes the table to ``--out`` too when given (atomically).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from denoise.errors import DenoiseError, InputError
from denoise.estimate import estimate_sigma
from denoise.evaluation.report import markdown_table
from denoise.evaluation.testsets import data_root, photo_pairs
from denoise.inference import restore
from denoise.io import read_image
from denoise.metrics import psnr
from denoise.models.user import looks_like_path, model_from_path
from denoise.symmetries import inverse, transform
from denoise.utils import write_text

#: The subsets of the eight symmetries (see :mod:`denoise.symmetries`) and their cost.
SUBSETS = {"single (x1)": (0,), "mirror (x2)": (0, 4), "half turn (x2)": (0, 2),
           "x4": (0, 2, 4, 6), "all eight (x8)": tuple(range(8))}


def scores(model, pairs) -> dict[str, dict[str, list[float]]]:
    """PSNR per subset, per camera (and "all"), one value per photo."""
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for camera, clean_path, noisy_path in tqdm(pairs, desc="polyu_symmetries", unit="photo"):
        clean, noisy = read_image(clean_path)[0], read_image(noisy_path)[0]
        # the noise level (for models that take one) is estimated once, on the photo as it
        # is, as the ``+x8`` ensemble does; blind models ignore it
        level = estimate_sigma(noisy)
        outputs = {s: inverse(restore(transform(noisy, s), model, level, tile=None, device="cpu",
                                      warn_ignored_sigma=False).output, s) for s in range(8)}
        for name, subset in SUBSETS.items():
            mean = torch.stack([outputs[s] for s in subset]).mean(0).clamp(0, 1)
            value = float(psnr(mean, clean)[0])
            out[name][camera].append(value)
            out[name]["all"].append(value)
    return out


def table(result) -> str:
    """Mean PSNR per subset (rows) and camera (columns, photo counts in the header)."""
    counts = {c: len(v) for c, v in next(iter(result.values())).items()}
    cameras = sorted(counts, key=lambda c: (c == "all", c))
    rows = [[name, *(f"{np.mean(result[name][c]):.2f}" for c in cameras)] for name in SUBSETS]
    return markdown_table(["PolyU, mean PSNR (dB)", *(f"{c} ({counts[c]})" for c in cameras)], rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a registered name or a path to a model")
    p.add_argument("--data", type=Path, help="the data folder holding PolyU (default: DENOISE_DATA or ../shared/data)")
    p.add_argument("--every", type=int, default=1, help="use every N-th PolyU pair (default: all)")
    p.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = p.parse_args(argv)
    if args.every < 1:
        p.error("--every must be >= 1")
    try:
        torch.set_num_threads(1)
        root = args.data or data_root()
        if root is None or not (Path(root) / "PolyU").is_dir():
            raise InputError("PolyU not found: pass --data or set DENOISE_DATA to the image data folder")
        model = model_from_path(args.model)[1] if looks_like_path(args.model) else args.model
        pairs = photo_pairs(Path(root) / "PolyU")[::args.every]
        command = "python benchmarks/polyu_symmetries.py" + "".join(
            f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv))
        text = f"# Symmetry averages on PolyU: {args.model}\n\n`{command}`\n\n{table(scores(model, pairs))}\n"
        if args.out:
            write_text(args.out, text)
    except (DenoiseError, OSError) as exc:
        print(f"polyu_symmetries: error: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
