"""CIFAR10 classification: the labelled image folder, augmentation, and a training loop.

* :func:`load_cifar` reads ``CIFAR10/<split>/<class>/<index>_<class>.png`` (see the data
  folder's README) once per process into a uint8 tensor (N, 3, 32, 32), sorted by class,
  then by the image's index in the original CIFAR-10 set;
* :func:`per_class_split` draws a seeded, class-balanced subset (a held-out validation part
  of train/, or a small labelled subset such as 100 images per class);
* :func:`augment` is the usual CIFAR augmentation: a random 32x32 crop of the image padded
  by 4 pixels (zeros), and a horizontal flip with probability 1/2, drawn from an explicit
  ``torch.Generator``;
* :func:`train_classifier` trains with SGD (Nesterov momentum, weight decay, label
  smoothing) under a one-cycle schedule (linear warm-up, then a cosine to zero), scores the
  given evaluation sets every ``eval_every`` epochs, and checkpoints atomically after every
  epoch; called again on the same folder it resumes exactly (same batches, same result).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ImageReadError, InputError, TrainingError
from ..utils import atomic_path, write_json

#: The CIFAR-10 classes in their usual label order 0-9.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CHECKPOINT = "checkpoint.pt"
#: A finished run's record: its card (what defines the run) and its per-epoch history.
HISTORY = "history.json"
CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class LabelledImages:
    """Images (N, C, H, W) uint8, their labels (N,) int64, and the class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor) -> LabelledImages:
        """The images at ``index`` (a tensor of positions), in that order."""
        return LabelledImages(self.images[index], self.labels[index], self.classes)

    def counts(self) -> list[int]:
        """Images per class, in label order."""
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()


def _image_index(path: Path) -> int:
    """The original CIFAR-10 index in ``<index>_<class>.png`` (InputError otherwise)."""
    head = path.stem.split("_", 1)[0]
    if not head.isdigit():
        raise InputError(f"unexpected CIFAR10 file name {path.name}: expected <index>_<class>.png")
    return int(head)


@functools.lru_cache(maxsize=8)
def _load(folder: str, per_class: int | None) -> LabelledImages:
    from PIL import Image

    root = Path(folder)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = [p.name for p in class_dirs]
    classes = CIFAR10_CLASSES if sorted(names) == sorted(CIFAR10_CLASSES) else tuple(names)
    if len(classes) < 2:
        raise InputError(f"{root} must hold one folder of images per class, found {names}")
    arrays, labels = [], []
    for label, name in enumerate(classes):
        files = sorted((root / name).glob("*.png"), key=_image_index)[:per_class]
        if not files:
            raise InputError(f"class folder {root / name} holds no PNG images")
        for path in files:
            try:
                with Image.open(path) as im:
                    arrays.append(np.asarray(im.convert("RGB")))
            except OSError as exc:
                raise ImageReadError(f"cannot read {path}: {exc}") from None
            labels.append(label)
    sizes = {a.shape for a in arrays}
    if len(sizes) != 1:
        raise InputError(f"the images of {root} differ in size: {sorted(sizes)[:3]}")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return LabelledImages(images, torch.tensor(labels, dtype=torch.int64), classes)


def load_cifar(root: str | Path, split: str = "train", *, per_class: int | None = None) -> LabelledImages:
    """The images of ``root/<split>`` (``root``: the CIFAR10 folder, e.g.
    ``denoise.evaluation.testsets.data_root() / "CIFAR10"``) as uint8 (N, 3, 32, 32), with
    labels in the CIFAR-10 order (or the sorted folder names for another labelled folder);
    with ``per_class``, only the first that many of each class. Read once per process."""
    if split not in ("train", "test"):
        raise InputError(f"split must be 'train' or 'test', got {split!r}")
    if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1):
        raise InputError(f"per_class must be a positive integer or None, got {per_class!r}")
    folder = Path(root) / split
    if not folder.is_dir():
        raise InputError(f"CIFAR10 split folder not found: {folder}")
    return _load(str(folder.resolve()), per_class)


def per_class_split(labels: torch.Tensor, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(chosen, rest)``: ``per_class`` positions of each class drawn at random (seeded)
    and all the others, each sorted. InputError when a class has too few images."""
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in range(int(labels.max()) + 1 if labels.numel() else 0):
        where = torch.nonzero(labels == c).flatten()
        if where.numel() < per_class:
            raise InputError(f"class {c} has {where.numel()} images, fewer than the {per_class} asked for")
        chosen.append(where[torch.randperm(where.numel(), generator=g)[:per_class]])
    mask = torch.zeros(labels.shape[0], dtype=torch.bool)
    picked = torch.cat(chosen) if chosen else torch.zeros(0, dtype=torch.int64)
    mask[picked] = True
    return torch.nonzero(mask).flatten(), torch.nonzero(~mask).flatten()


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1]."""
    return images.float().div_(255.0)


def augment(images: torch.Tensor, generator: torch.Generator, *, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crops of the images zero-padded by ``pad`` pixels (same size as the input)
    and random horizontal flips, as float32 in [0, 1]; every draw comes from ``generator``."""
    x = to_float(images)
    n, _, h, w = x.shape
    top = torch.randint(2 * pad + 1, (n,), generator=generator)
    left = torch.randint(2 * pad + 1, (n,), generator=generator)
    mirror = torch.rand(n, generator=generator) < 0.5
    if pad:
        x = F.pad(x, (pad, pad, pad, pad))
    rows = top[:, None] + torch.arange(h)  # (N, h)
    cols = left[:, None] + torch.arange(w)  # (N, w)
    if flip:
        cols = torch.where(mirror[:, None], cols.flip(1), cols)
    batch = torch.arange(n)[:, None, None]
    return x.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True)
class ClassifierConfig:
    """The optimisation budget of one classifier run."""

    epochs: int = 40
    batch_size: int = 128
    lr: float = 0.1  # peak learning rate
    warmup: float = 0.15  # fraction of the steps with a linear ramp from lr / 25 to lr
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    pad: int = 4  # random-crop padding (0: no crops)
    flip: bool = True
    seed: int = 0  # batches and augmentation (the caller seeds the model's initialisation)
    eval_every: int = 1  # epochs between evaluations (the last epoch is always evaluated)

    def validate(self) -> None:
        ok = (self.epochs >= 1 and self.batch_size >= 2 and self.lr > 0 and 0 <= self.warmup < 1
              and 0 <= self.momentum < 1 and self.weight_decay >= 0 and 0 <= self.label_smoothing < 1
              and self.pad >= 0 and self.eval_every >= 1)
        if not ok:
            raise InputError(f"bad classifier training options: {self}")


def learning_rate(step: int, total: int, config: ClassifierConfig) -> float:
    """One cycle: linear from lr / 25 to lr over the warm-up, then a cosine down to 0."""
    ramp = round(config.warmup * total)
    if step < ramp:
        return config.lr * (1 / 25 + (1 - 1 / 25) * step / ramp)
    p = (step - ramp) / max(1, total - ramp)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(p, 1.0)))


@torch.no_grad()
def evaluate(model: nn.Module, data: LabelledImages, batch_size: int = 500) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` (eval mode) on ``data``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss, correct = 0.0, 0
    for i in range(0, len(data), batch_size):
        x = to_float(data.images[i:i + batch_size]).to(device)
        y = data.labels[i:i + batch_size].to(device)
        logits = model(x).float()
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    model.train(was_training)
    return {"loss": loss / len(data), "accuracy": correct / len(data)}


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    for i in range(0, n, batch_size):
        if n - i >= 2:  # BatchNorm needs two images; a last single one is dropped
            yield order[i:i + batch_size]


def _state(model, optimizer, generator, config, epoch, history, elapsed, n) -> dict:
    return {"format": CHECKPOINT_FORMAT, "config": dataclasses.asdict(config), "train_size": n,
            "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
            "history": history, "elapsed_s": elapsed}


def save_checkpoint(path: Path, state: dict) -> None:
    """Write a checkpoint atomically (the previous one survives a failure)."""
    try:
        with atomic_path(path, overwrite=True) as tmp:
            torch.save(state, tmp)
    except OSError as exc:
        raise TrainingError(f"cannot write checkpoint {path}: {getattr(exc, 'strerror', None) or exc}") from None


def train_classifier(model: nn.Module, train: LabelledImages, config: ClassifierConfig, *,
                     evals: Mapping[str, LabelledImages] | None = None, out: str | Path | None = None,
                     progress: bool = True, stop_after: int | None = None) -> list[dict]:
    """Train ``model`` on ``train``; return one history row per epoch (train loss and
    accuracy on the augmented batches, learning rate, wall time, and ``<set>_loss`` /
    ``<set>_accuracy`` for every evaluation set on the epochs it is scored).

    With ``out``, ``out/checkpoint.pt`` is written after every epoch; a folder that already
    holds one resumes from it (model, optimizer, generator and RNG states; refused when the
    budget or training-set size differ). ``stop_after`` ends after that many epochs without
    changing the schedule (a later call resumes).
    """
    from tqdm.auto import tqdm

    config.validate()
    evals = dict(evals or {})
    device = next(model.parameters()).device
    n = len(train)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                nesterov=config.momentum > 0, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict] = []
    epoch, elapsed = 0, 0.0
    path = Path(out) / CHECKPOINT if out is not None else None
    if path is not None and path.is_file():
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt["config"] != dataclasses.asdict(config) \
                or ckpt["train_size"] != n:
            raise TrainingError(f"cannot resume {path}: it was trained with another budget or training "
                                f"set ({ckpt.get('config')}, {ckpt.get('train_size')} images); use "
                                "another folder")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        generator.set_state(ckpt["generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        epoch, history, elapsed = int(ckpt["epoch"]), list(ckpt["history"]), float(ckpt["elapsed_s"])
    elif path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if n < 2:
        raise InputError(f"a classifier needs at least 2 training images, got {n}")
    per_epoch = sum(1 for i in range(0, n, config.batch_size) if n - i >= 2)
    total = config.epochs * per_epoch
    end = config.epochs if stop_after is None else min(config.epochs, stop_after)
    bar = tqdm(total=end * per_epoch, initial=epoch * per_epoch, desc="classifier", unit="step",
               dynamic_ncols=True, disable=not progress)
    model.train()
    try:
        while epoch < end:
            start = time.perf_counter()
            loss_sum, correct, seen = 0.0, 0, 0
            for k, idx in enumerate(_batches(n, config.batch_size, generator)):
                lr = learning_rate(epoch * per_epoch + k, total, config)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x = augment(train.images[idx], generator, pad=config.pad, flip=config.flip).to(device)
                y = train.labels[idx].to(device)
                logits = model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise TrainingError(f"the loss became {value} in epoch {epoch + 1}; lower the "
                                        "learning rate")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += value * len(idx)
                correct += int((logits.detach().argmax(1) == y).sum())
                seen += len(idx)
                bar.update(1)
            epoch += 1
            elapsed += time.perf_counter() - start
            row = {"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                   "lr": lr, "wall_s": elapsed}
            if epoch % config.eval_every == 0 or epoch == config.epochs:
                for name, data in evals.items():
                    scores = evaluate(model, data)
                    row[f"{name}_loss"], row[f"{name}_accuracy"] = scores["loss"], scores["accuracy"]
            history.append(row)
            bar.set_postfix({k.replace("_accuracy", "_acc"): f"{v:.3f}" for k, v in row.items()
                             if k.endswith(("loss", "accuracy"))}, refresh=False)
            if path is not None:
                save_checkpoint(path, _state(model, optimizer, generator, config, epoch, history, elapsed, n))
    finally:
        bar.close()
    return history


def finished_history(out: str | Path, card: dict) -> list[dict] | None:
    """The history of a finished run in ``out`` whose card matches ``card`` (the same
    budget, data and initialisation), or None: a run is reused only for the same setting.
    Lets finished runs be kept across machines without their checkpoints."""
    import json

    path = Path(out) / HISTORY
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    # JSON round trip: tuples in the card compare equal to the lists read back
    return saved["history"] if {k: saved.get(k) for k in card} == json.loads(json.dumps(card)) else None


def record_history(out: str | Path, card: dict, history: list[dict]) -> None:
    """Write ``out/history.json`` (the card and the history) for :func:`finished_history`."""
    write_json(Path(out) / HISTORY, {**card, "history": history})
