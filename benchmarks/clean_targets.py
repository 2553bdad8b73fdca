"""Pseudo-clean training targets: a folder of clean images passed through a denoiser.

The clean training images of ``configs/real-color-*.json`` (CBSD432: BSDS500 photos,
scanned from film and stored as JPEG) carry film grain and compression artefacts of their
own, which a model trained on them learns to keep. This writes each image of ``SRC``,
restored by ``MODEL`` (a registered name or a path: a run folder, a checkpoint, a
.safetensors file) with no noise added, to ``DST`` as a lossless PNG of the same stem (the
sorted order, hence the held-out validation split, is kept). Existing outputs are skipped,
so an interrupted run resumes::

    python benchmarks/clean_targets.py ../shared/data/CBSD432 runs/cbsd432-clean \\
        --model training-state/real-color-w80-low
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from denoise.errors import DenoiseError
from denoise.inference import restore
from denoise.io import list_images, read_image, write_image
from denoise.models.user import looks_like_path, model_from_path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path, help="folder of clean images")
    p.add_argument("dst", type=Path, help="output folder (created; PNG files)")
    p.add_argument("--model", required=True, help="the denoiser: a registered name or a path")
    args = p.parse_args(argv)
    try:
        model = model_from_path(args.model)[1] if looks_like_path(args.model) else args.model
        if isinstance(model, torch.nn.Module):
            model.eval()
        paths = list_images(args.src)
        args.dst.mkdir(parents=True, exist_ok=True)
        for path in tqdm(paths, desc="clean_targets", unit="image"):
            out = args.dst / f"{path.stem}.png"
            if out.exists():
                continue
            x = read_image(path)[0]
            with torch.no_grad():
                y = restore(x, model, None, tile=None, warn_ignored_sigma=False).output
            write_image(out, y)
    except DenoiseError as exc:
        print(f"clean_targets: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
