"""The results report's cells, kept between runs.

A cell is one model on one test set at one noise level (:class:`Measured`). The full report
is many CPU-hours (BM3D alone costs about 650 CPU-seconds per megapixel), so each cell is
written to a cache folder as it progresses (:class:`CellStore`: one JSON file per cell,
rewritten atomically at least every :data:`SAVE_EVERY` seconds and when the cell is done).
A later run of the same command reuses the finished cells and continues the unfinished
ones where they stopped; several runs on different sets or models may share one folder.

A cell is reused only when everything its figures depend on is unchanged: the model's
fingerprint (:func:`fingerprint`: its weights, or the source of a classical algorithm and
the version of its optional package), the images (their names and pixels), the noise
level and seed, and the benchmark's protocol text.

Costs stay comparable across runs: every run that measures images of a set first times
the published FFDNet architecture (random weights) on that set, and each image keeps the
CPU seconds that architecture took for the same pixels in the same run
(:attr:`Measured.ceiling_seconds`); a model's cost ratio is its CPU seconds over those.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..errors import InputError, ModelError, OutputError
from ..inference import parse_model_name, restore
from ..utils import write_json
from .bench import PROTOCOL, WARM_UP_SIZE, ImageScore, SetResult, add_noise, score_image

#: Cost references: label -> registered architecture; the label is also the method's
#: name in the published tables.
REFERENCES = {"FFDNet": "ffdnet", "DnCNN": "dncnn"}
#: The reference every cost is compared with (the issue's cost bar: at most its CPU time).
CEILING = "FFDNet"
#: Seconds between two writes of an unfinished cell.
SAVE_EVERY = 30.0
#: The cell files' format; a file of another version is measured again.
CELL_VERSION = 1
#: The folder of the cost references' timings inside a cell folder.
REFERENCE_DIR = "_references"


def reference_label(label: str) -> str:
    """How a cost reference is shown: ``"FFDNet arch."``."""
    return f"{label} arch."


@dataclass
class Measured(SetResult):
    """One model on one set at one noise level; image seconds are CPU seconds.

    ``ceiling_seconds`` is the CPU time the published FFDNet architecture took for the same
    pixels, timed in the run that measured each image (the cost ratio's denominator)."""

    channels: int = 1
    wall_seconds: float = 0.0
    reference: bool = False  # a published architecture with random weights: timed only
    ceiling_seconds: float = 0.0

    def to_dict(self) -> dict:
        return {**super().to_dict(), "channels": self.channels, "cpu_seconds": self.seconds,
                "cpu_s_per_mp": self.sec_per_mp, "wall_seconds": self.wall_seconds,
                "reference": self.reference, "ceiling_cpu_seconds": self.ceiling_seconds}

    @classmethod
    def from_dict(cls, d: dict) -> "Measured":
        images = [ImageScore(s["name"], _number(s["psnr"]), _number(s["ssim"]), s["seconds"], s["pixels"])
                  for s in d["per_image"]]
        return cls(d["set"], d["sigma"], d["model"], images, channels=d["channels"],
                   wall_seconds=d["wall_seconds"], reference=d["reference"],
                   ceiling_seconds=d.get("ceiling_cpu_seconds") or 0.0)


def _number(value) -> float:
    return math.nan if value is None else float(value)


def reference_model(label: str, channels: int, seed: int = 0) -> nn.Module:
    """The published architecture ``label`` for ``channels`` channels, with seeded random
    initial weights (no weights loaded), in eval mode."""
    from ..models.registry import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_model(REFERENCES[label], pretrained=False, channels=channels)


def timed_restore(model: str | nn.Module, noisy: torch.Tensor, level) -> tuple[torch.Tensor, float, float]:
    """``(clipped output, CPU seconds, wall seconds)`` of one forward pass, untiled, on the
    CPU, after an untimed warm-up on a crop."""
    restore(noisy[..., :WARM_UP_SIZE, :WARM_UP_SIZE], model, level, tile=None, device="cpu",
            warn_ignored_sigma=False)
    start = time.process_time()
    result = restore(noisy, model, level, tile=None, device="cpu", warn_ignored_sigma=False)
    return result.output, time.process_time() - start, result.seconds


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def fingerprint(model: str) -> str:
    """What a model's outputs depend on: the sha256 of its weights file (learned models,
    user models and paths), else of the source file of its algorithm, plus the version of
    its optional package; ``+x8`` marked."""
    from ..models.registry import get_entry

    parsed = parse_model_name(model)
    suffix = "+x8" if parsed.ensemble else ""
    path = Path(parsed.base)
    if path.is_file():
        return "file:" + _sha(path.read_bytes()) + suffix
    try:
        entry = get_entry(parsed.base)
    except ModelError:
        return "unknown:" + parsed.base + suffix
    if entry.pretrained:
        if not entry.has_weights():
            return "no-weights:" + entry.name + suffix
        return "weights:" + _sha(entry.weights_path.read_bytes()) + suffix
    try:
        source = Path(inspect.getsourcefile(entry.factory)).read_bytes()
    except (TypeError, OSError):
        source = entry.name.encode()
    extra = ""
    if entry.requires:
        try:
            extra = f"+{entry.requires}=={importlib.metadata.version(entry.requires)}"
        except importlib.metadata.PackageNotFoundError:
            extra = f"+{entry.requires}"
    return "source:" + _sha(source) + extra + suffix


def images_digest(images: Sequence[tuple[str, torch.Tensor]]) -> str:
    """The sha256 of a set's image names and pixels."""
    h = hashlib.sha256()
    for name, x in images:
        h.update(name.encode() + b"\0" + str(tuple(x.shape)).encode())
        h.update(x.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def cell_key(model: str, label: str, images_id: str, sigma: float, seed: int) -> dict:
    """Everything a cell's figures depend on (a cached cell is reused only when equal)."""
    return {"version": CELL_VERSION, "model": model, "fingerprint": fingerprint(model), "set": label,
            "images": images_id, "sigma": float(sigma), "seed": int(seed),
            "protocol": _sha(PROTOCOL.encode())}


def _safe(name: str) -> str:
    """A name as a file name (a model may be a path)."""
    return re.sub(r"[^\w.+-]+", "_", str(name)).strip("_") or "_"


def _write(path: Path, content: dict) -> None:
    """Write a cell file atomically, creating its folder."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the cell folder {path.parent}: {exc.strerror or exc}") from None
    write_json(path, content)


class CellStore:
    """A folder of cells (``None``: nothing kept; every cell is measured)."""

    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root is not None else None

    def _path(self, key: dict) -> Path:
        return self.root / _safe(key["model"]) / f"{_safe(key['set'])}-sigma{key['sigma']:g}-seed{key['seed']}.json"

    def load(self, key: dict) -> tuple[Measured | None, bool]:
        """``(cell, done)`` for ``key``: the cached cell (possibly unfinished) or None."""
        if self.root is None:
            return None, False
        path = self._path(key)
        try:
            data = json.loads(path.read_text())
            if data.get("key") != key:
                return None, False
            return Measured.from_dict(data["result"]), bool(data.get("done"))
        except FileNotFoundError:
            return None, False
        except (OSError, ValueError, KeyError, TypeError):  # unreadable: measure it again
            return None, False

    def save(self, key: dict, cell: Measured, done: bool, run: str) -> None:
        if self.root is None:
            return
        path = self._path(key)
        try:
            old = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            old = {}
        runs = list(dict.fromkeys([*(old.get("runs", []) if old.get("key") == key else []), run]))
        _write(path, {"key": key, "done": done, "runs": runs, "result": cell.to_dict()})

    def reference_path(self, label: str) -> Path:
        return self.root / REFERENCE_DIR / f"{_safe(label)}.json"

    def save_references(self, label: str, references: list[Measured], run: str) -> None:
        if self.root is not None:
            _write(self.reference_path(label), {"run": run, "references": [r.to_dict() for r in references]})

    def load_references(self, label: str) -> list[Measured]:
        if self.root is None:
            return []
        try:
            data = json.loads(self.reference_path(label).read_text())
            return [Measured.from_dict(d) for d in data["references"]]
        except (OSError, ValueError, KeyError, TypeError):
            return []


    def save_training(self, rows: list[dict], run: str) -> None:
        """The training cost of the reference architectures, measured in run ``run``."""
        if self.root is not None:
            _write(self.root / REFERENCE_DIR / "training.json", {"run": run, "training_cost": rows})

    def load_training(self) -> list[dict]:
        if self.root is None:
            return []
        try:
            return list(json.loads((self.root / REFERENCE_DIR / "training.json").read_text())["training_cost"])
        except (OSError, ValueError, KeyError, TypeError):
            return []


def time_references(label: str, images: list, channels: int, sigma: float, seed: int,
                    bar) -> list[Measured]:
    """The published architectures (random weights) timed on the set's noisy images."""
    noisy = [add_noise(x, sigma, seed, i) for i, (_, x) in enumerate(images)]
    out = []
    for ref in REFERENCES:
        bar.set_postfix_str(f"{label} {reference_label(ref)} (random weights)")
        net = reference_model(ref, channels, seed)
        result = Measured(label, sigma, reference_label(ref), channels=channels, reference=True)
        for (name, clean), (y, level) in zip(images, noisy):
            _, cpu, wall = timed_restore(net, y, level)
            result.images.append(ImageScore(name, math.nan, math.nan, cpu, clean.shape[-2] * clean.shape[-1]))
            result.wall_seconds += wall
            bar.update()
        out.append(result)
    return out


def measure_cell(store: CellStore, key: dict, start: Measured | None, images: list, noisy: list,
                 ceiling_s_per_mp: float, run: str, bar) -> Measured:
    """Run one model on the images not yet in ``start`` (a cached unfinished cell, or None),
    saving the cell as it goes; returns the finished cell."""
    cell = start or Measured(key["set"], key["sigma"], key["model"], channels=images[0][1].shape[1])
    if [s.name for s in cell.images] != [name for name, _ in images[:len(cell.images)]]:
        raise InputError(f"the cached cell of {key['model']} on {key['set']} does not match its images")
    saved = time.monotonic()
    for (name, clean), (y, level) in list(zip(images, noisy))[len(cell.images):]:
        output, cpu, wall = timed_restore(key["model"], y, level)
        cell.images.append(score_image(name, output, clean, cpu))
        cell.wall_seconds += wall
        cell.ceiling_seconds += ceiling_s_per_mp * clean.shape[-2] * clean.shape[-1] / 1e6
        bar.update()
        if time.monotonic() - saved >= SAVE_EVERY and len(cell.images) < len(images):
            store.save(key, cell, False, run)
            saved = time.monotonic()
    store.save(key, cell, True, run)
    return cell
