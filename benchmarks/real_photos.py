"""Real photos: PolyU per camera (input, AWGN models, real-*, fitted) and an RNI15 figure.

PolyU (100 real noisy photos of static scenes from 5 cameras, 512x512 crops, each with a
clean reference averaged from many shots; pairs share a file name under ``clean/`` and
``noisy/``) is a test set: nothing is trained or tuned on it here (the stages of the
``real-*`` training chains were compared on it, each stage's card says which; that choice
among a few candidates makes the chosen stage's figure slightly optimistic). Every model
runs once per photo, untiled, on one CPU thread, on the noisy photo alone (models that
take a noise level get the package's estimate, as ``denoise run`` does); PSNR and SSIM
against the clean reference, per camera and over all photos. The gray table uses the same
photos turned gray (PIL's ITU-R 601-2 luma, as a user's gray conversion would), scored
against the clean reference turned gray the same way.

Cost: CPU-seconds per megapixel of each model, beside the published FFDNet architecture
for the same channel count (this package's code with random weights: its cost only),
timed on the same photos in the same run; ``cost / FFDNet`` is the ratio.

RNI15 (real noisy photos without a clean version): a figure of centre crops, noisy and
after the first real-photo model (a model path or name containing "real") of each channel
count (photos whose three channels are equal are treated as gray when there is a gray one;
else every photo goes through the colour model; with a gray real-photo model only, every
photo is turned gray and goes through it).

Writes real_photos.md, real_photos.json and real_photos_rni15.png, atomically:

    python benchmarks/real_photos.py                                  # all 100 pairs
    python benchmarks/real_photos.py --every 10 --out /tmp/real       # a quick look
    python benchmarks/real_photos.py --color dct,runs/real-color --gray dct,runs/real-gray

A model is a registered name or a path (a training run folder, a checkpoint, a
.safetensors file; :func:`denoise.models.user.model_from_path`).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from denoise.errors import DenoiseError, InputError
from denoise.evaluation import testsets as datasets
from denoise.evaluation.results import reference_model, timed_restore
from denoise.evaluation.testsets import photo_pairs
from denoise.inference import restore, supports_channels
from denoise.metrics import psnr, ssim
from denoise.models.registry import get_entry
from denoise.models.user import looks_like_path, model_from_path
from denoise.utils import output_file, write_json, write_text

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_COLOR = ("dct", "n2n-unet-color", "ffdnet-color", "real-color")
DEFAULT_GRAY = ("dct", "n2n-unet-gray", "ffdnet-gray", "real-gray")
#: Centre-crop size of the RNI15 figure.
CROP = 160


def camera_of(name: str) -> str:
    """The camera of a PolyU file name (its first underscore-separated field)."""
    return name.split("_")[0]


def to_tensor(im: Image.Image) -> torch.Tensor:
    a = np.asarray(im, dtype=np.float32) / 255.0
    a = a[..., None] if a.ndim == 2 else a
    return torch.from_numpy(a.copy()).permute(2, 0, 1)[None]


def load_pairs(folder: Path, every: int) -> list[tuple[str, Image.Image, Image.Image]]:
    pairs = []
    for _, clean, noisy in photo_pairs(folder)[::every]:
        with Image.open(noisy) as n, Image.open(clean) as c:
            pairs.append((noisy.name, n.convert("RGB"), c.convert("RGB")))
    return pairs


def resolve(models: list[str], channels: int) -> list[tuple[str, object, str]]:
    """``(label, model name or module, why skipped or "")`` for each requested model."""
    out = []
    for name in models:
        if looks_like_path(name):
            label, module = model_from_path(ROOT / name if not Path(name).is_absolute() else name)
            out.append((name, module, ""))
            continue
        entry = get_entry(name)
        why = "" if entry.available() else "weights not shipped in this build"
        if not why and not supports_channels(name, channels):
            why = f"takes no {channels}-channel images"
        out.append((name, name, why))
    return out


def evaluate(pairs, models, gray: bool, progress=None) -> dict:
    """Per-photo scores of each model, the noisy input and the FFDNet cost reference."""
    channels = 1 if gray else 3
    runnable = [(label, m) for label, m, why in models if not why]
    ref = reference_model("FFDNet", channels)
    photos = []
    for name, noisy_im, clean_im in pairs:
        noisy = to_tensor(noisy_im.convert("L") if gray else noisy_im)
        clean = to_tensor(clean_im.convert("L") if gray else clean_im)
        mp = noisy.shape[-1] * noisy.shape[-2] / 1e6
        row = {"photo": name, "camera": camera_of(name),
               "psnr": {"noisy": float(psnr(noisy, clean)[0])}, "ssim": {"noisy": float(ssim(noisy, clean)[0])},
               "cpu_s_per_mp": {}}
        for label, model in runnable:
            y, cpu, _ = timed_restore(model, noisy, None)
            row["psnr"][label] = float(psnr(y, clean)[0])
            row["ssim"][label] = float(ssim(y, clean)[0])
            row["cpu_s_per_mp"][label] = cpu / mp
        _, cpu, _ = timed_restore(ref, noisy, 10 / 255)
        row["cpu_s_per_mp"]["FFDNet architecture"] = cpu / mp
        photos.append(row)
        if progress is not None:
            progress()
    return {"channels": channels, "models": [label for label, _ in runnable],
            "skipped": {label: why for label, _, why in models if why}, "photos": photos}


def summarise(result: dict) -> dict:
    """Mean PSNR/SSIM per camera and overall, and mean cost per model."""
    groups = defaultdict(list)
    for row in result["photos"]:
        groups[row["camera"]].append(row)
    groups["all"] = result["photos"]
    columns = ["noisy", *result["models"]]
    table = {}
    for cam, rows in groups.items():
        table[cam] = {"n": len(rows),
                      "psnr": {c: float(np.mean([r["psnr"][c] for r in rows])) for c in columns},
                      "ssim": {c: float(np.mean([r["ssim"][c] for r in rows])) for c in columns}}
    costs = {c: float(np.mean([r["cpu_s_per_mp"][c] for r in result["photos"]]))
             for c in [*result["models"], "FFDNet architecture"]}
    return {"table": table, "cost": costs}


def markdown(results: dict[str, dict], command: str, seconds: float) -> str:
    lines = ["# Real photos: PolyU per camera", "",
             f"`{command}` ({seconds / 60:.1f} min). PolyU is a test set: nothing was trained or tuned "
             "on it (the real-* chains' stages were compared on it: see their cards). Mean PSNR (dB) / SSIM against the clean references; models run on "
             "the noisy photo alone, untiled, one CPU thread; models that take a noise level get the "
             "package's estimate. CPU-s/MP: CPU seconds per megapixel; */ FFDNet*: that cost over "
             "the published FFDNet architecture's (our code, random weights) on the same photos in "
             "the same run. See the script's docstring.", ""]
    for kind, result in results.items():
        summary = result["summary"]
        columns = ["noisy", *result["models"]]
        lines += [f"## {kind.capitalize()} ({'photos turned gray' if kind == 'gray' else 'RGB'})", "",
                  "| camera | photos | " + " | ".join(columns) + " |",
                  "|---|---|" + "---|" * len(columns)]
        for cam, t in sorted(summary["table"].items(), key=lambda kv: (kv[0] == "all", kv[0])):
            best = max(result["models"], key=lambda c: t["psnr"][c], default=None)
            cells = [(f"**{t['psnr'][c]:.2f}**" if c == best else f"{t['psnr'][c]:.2f}") + f" / {t['ssim'][c]:.4f}"
                     for c in columns]
            lines.append(f"| {'**all**' if cam == 'all' else cam} | {t['n']} | " + " | ".join(cells) + " |")
        ref = summary["cost"]["FFDNet architecture"]
        lines.append("| CPU-s/MP (/ FFDNet) | | | " + " | ".join(
            f"{summary['cost'][c]:.2f} ({summary['cost'][c] / ref:.2f}x)" for c in result["models"]) + " |")
        lines += ["", f"FFDNet architecture ({result['channels']} channel{'s' if result['channels'] > 1 else ''}): "
                      f"{ref:.2f} CPU-s/MP in this run."]
        if result["skipped"]:
            lines.append("Not run: " + "; ".join(f"{m} ({why})" for m, why in result["skipped"].items()) + ".")
        lines.append("")
    return "\n".join(lines)


def rni15_figure(path: Path, folder: Path, color_model, gray_model) -> None:
    from matplotlib.figure import Figure

    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif"))
    if not photos:
        raise InputError(f"no photos in {folder}")
    fig = Figure(figsize=(2 * 4, 2.1 * ((len(photos) + 1) // 2)))
    axes = fig.subplots((len(photos) + 1) // 2, 4, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, p in enumerate(photos):
        with Image.open(p) as im:
            a = np.asarray(im.convert("RGB"))
        is_gray = gray_model is not None and (color_model is None or bool(
            (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()))
        x = to_tensor(Image.fromarray(a).convert("L") if is_gray else Image.fromarray(a))
        h, w = x.shape[-2:]
        top, left = max(0, (h - CROP) // 2), max(0, (w - CROP) // 2)
        x = x[..., top:top + CROP, left:left + CROP]
        label, model = gray_model if is_gray else color_model
        y = restore(x, model, tile=None, device="cpu", warn_ignored_sigma=False).output
        for j, (img, title) in enumerate(((x, f"{p.stem} (noisy)"), (y, label))):
            ax = axes[i // 2, 2 * (i % 2) + j]
            arr = img[0].permute(1, 2, 0).clamp(0, 1).numpy()
            ax.imshow(arr[..., 0] if arr.shape[-1] == 1 else arr, cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_title(title, fontsize=7)
    fig.tight_layout()
    with output_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, help="the data folder holding PolyU and RNI15 (default: DENOISE_DATA "
                                             "or ../shared/data)")
    p.add_argument("--every", type=int, default=1, help="use every N-th PolyU pair (default: all)")
    p.add_argument("--color", default=",".join(DEFAULT_COLOR), help="comma-separated color models")
    p.add_argument("--gray", default=",".join(DEFAULT_GRAY), help="comma-separated gray models ('' skips)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="output folder")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = p.parse_args(argv)
    if args.every < 1:
        p.error("--every must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        from tqdm import tqdm

        torch.set_num_threads(args.threads)
        root = args.data or datasets.data_root()
        if root is None or not (Path(root) / "PolyU").is_dir():
            raise InputError("PolyU not found: pass --data or set DENOISE_DATA to the image data folder")
        pairs = load_pairs(Path(root) / "PolyU", args.every)
        wanted = {"color": [m for m in args.color.split(",") if m], "gray": [m for m in args.gray.split(",") if m]}
        models = {kind: resolve(names, 1 if kind == "gray" else 3) for kind, names in wanted.items() if names}
        start = time.time()
        results = {}
        with tqdm(total=len(pairs) * len(models), desc="real_photos", unit="photo") as bar:
            for kind, ms in models.items():
                results[kind] = evaluate(pairs, ms, kind == "gray", progress=lambda: bar.update(1))
                results[kind]["summary"] = summarise(results[kind])
        command = "python benchmarks/real_photos.py" + "".join(
            f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv))
        seconds = time.time() - start
        args.out.mkdir(parents=True, exist_ok=True)
        text = markdown(results, command, seconds)
        real = {kind: next(((label, m) for label, m, why in ms if not why and "real" in label), None)
                for kind, ms in models.items()}
        if (Path(root) / "RNI15").is_dir() and (real.get("color") or real.get("gray")):
            rni15_figure(args.out / "real_photos_rni15.png", Path(root) / "RNI15", real.get("color"), real.get("gray"))
            text += "\n## RNI15 (no clean version): centre crops, noisy and restored\n\n" \
                    "![RNI15 before and after](real_photos_rni15.png)\n"
        write_text(args.out / "real_photos.md", text)
        write_json(args.out / "real_photos.json", {"command": command, "seconds": seconds, **results})
    except (DenoiseError, OSError) as exc:
        print(f"real_photos: error: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
