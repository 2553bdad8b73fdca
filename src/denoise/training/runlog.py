"""A run folder's files: the log (log.csv), its curves (curves.png), the file names."""
from __future__ import annotations

import csv
from pathlib import Path

from ..utils import atomic_path

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
LOG = "log.csv"
VALIDATION = "VALIDATION.txt"
CURVES = "curves.png"
LOG_FIELDS = ["step", "loss", "lr", "images_per_s", "wall_s", "val_psnr"]

# --------------------------------------------------------------------------- files


def append_log(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS, lineterminator="\n")
        if new:
            w.writeheader()
        w.writerow({k: ("" if row[k] is None else row[k]) for k in LOG_FIELDS})


def read_log(path: Path) -> list[dict]:
    """Rows of ``log.csv`` as dicts of floats (val_psnr None where not measured)."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: (float(v) if v != "" else None) for k, v in r.items()} for r in csv.DictReader(f)]


def truncate_log(path: Path, step: int) -> None:
    """Drop log rows written after the checkpoint at ``step`` (a run killed between two
    checkpoints logged steps that the resumed run repeats)."""
    rows = [r for r in read_log(path) if r["step"] <= step]
    if not path.exists():
        return
    with atomic_path(path, overwrite=True) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=LOG_FIELDS, lineterminator="\n")
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if r[k] is None else (int(r[k]) if k == "step" else r[k])) for k in LOG_FIELDS})


def plot_curves(log_path: Path, png_path: Path) -> None:
    """Plot the loss and validation PSNR curves of ``log.csv`` into a PNG."""
    from matplotlib.figure import Figure

    rows = read_log(log_path)
    if not rows:
        return
    fig = Figure(figsize=(10, 3.5))
    a, b = fig.subplots(1, 2)
    a.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=0.8)
    a.set(xlabel="step", ylabel="training loss", yscale="log", title="loss")
    val = [r for r in rows if r["val_psnr"] is not None]
    b.plot([r["step"] for r in val], [r["val_psnr"] for r in val], "o-", ms=3)
    b.set(xlabel="step", ylabel="PSNR (dB)", title="validation PSNR (held-out training images)")
    fig.tight_layout()
    with atomic_path(png_path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def validation_note(noisy_reference: bool) -> str:
    """What the run's validation PSNR means (written into the run folder)."""
    if not noisy_reference:
        return ("Validation PSNR (log.csv, val_psnr): the mean PSNR in dB of the model's outputs, "
                "clipped to [0, 1], against clean references of held-out images. Higher is better.")
    return ("Validation PSNR (log.csv, val_psnr; 'val_psnr_vs_noisy' on the progress bar) is measured "
            "against the held-out pairs' second noisy view, not against a clean image. That reference "
            "carries its own noise, so the figure sits well below what the model reaches against a "
            "clean image, and even below the PSNR the noisy input would score against a clean one: "
            "a perfect denoiser scores about 10*log10(1/noise variance) of the target view. Watch its "
            "trend (it rises as the model improves), not its level. To measure against clean images, "
            "put a few clean versions of held-out inputs, named like them, in a folder and pass "
            "--val-clean FOLDER.")
