"""One Trainer for denoisers: noisy targets (Noise2Noise) or clean targets.

A run lives in a folder (``config.out``) holding:

* ``config.json``: the resolved configuration (every default filled in);
* ``checkpoint.pt``: the latest checkpoint, written atomically (temp file, then
  ``os.replace``) every ``checkpoint_every`` steps and at exit (end, Ctrl-C or SIGTERM);
* ``log.csv``: step, loss, learning rate, images/s, wall time, validation PSNR;
* ``curves.png``: the loss and validation PSNR curves (redrawn at each checkpoint).

``resume=True`` continues exactly: model, optimizer, data-generator and torch RNG states
come back from the checkpoint, so a resumed run draws the same batches and gives the same
loss curve as an uninterrupted one (same machine, same thread count). The learning-rate
schedule is a pure function of (step, steps), so a run may be resumed with a larger
``steps`` to extend it; the schedule is then the one of the new total from the resume
point on (with ``schedule="rampdown"`` an extension started before the ramp-down is
identical to having asked for the larger total from the start). ``stop_at`` ends a run
early without changing its schedule. Resuming with a different model or training setup
is refused, naming the differences.

Under ``torchrun --nproc_per_node=N`` the model is wrapped in DistributedDataParallel
(gloo on CPU, nccl on GPU). Every process draws the same global batch from the same
generator and trains on its own slice, so N processes compute the same update as one
process with the same global batch.

Validation PSNR (outputs clipped to [0, 1]) is measured on images held out from the
training data (the last ``val_count`` in sorted order), never on a test set.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import platform
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .errors import DenoiseError, InputError, ModelError
from .losses import get_loss, loss_for_noise
from .metrics import psnr
from .utils import atomic_path

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
LOG = "log.csv"
CURVES = "curves.png"
CHECKPOINT_FORMAT = 1
LOG_FIELDS = ["step", "loss", "lr", "images_per_s", "wall_s", "val_psnr"]


class TrainingError(DenoiseError, RuntimeError):
    """Training cannot go on (NaN loss, checkpoint not writable, refused resume)."""


# --------------------------------------------------------------------------- configuration


@dataclass
class TrainConfig:
    """Everything that defines a training run. Paths may be relative to the working folder."""

    # model
    model: str = "n2n-unet"
    model_kwargs: dict = field(default_factory=dict)
    # data: "folder" (clean images + noise), "pairs" (noisy pair images), "pkl" (EE-559 pairs)
    data: str = "folder"
    train_dir: str | None = None
    target_dir: str | None = None
    input_suffix: str = ""
    target_suffix: str = ""
    pkl: str | None = None
    gray: bool | None = None
    noise: str = "gaussian:0-50"
    target: str = "noisy"
    swap: bool = True
    val_count: int = 20
    val_noise: str | None = None
    val_crop: int | None = None
    # optimisation
    crop: int | None = 64
    batch_size: int = 16
    steps: int = 10000
    stop_at: int | None = None
    lr: float = 3e-4
    schedule: str = "rampdown"
    rampdown: float = 0.3
    warmup: int = 0
    beta1: float = 0.9
    beta2: float = 0.99
    loss: str = "auto"
    l0_floor: float = 0.1
    seed: int = 0
    # run
    out: str = "runs/train"
    checkpoint_every: int = 500
    val_every: int | None = None
    log_every: int = 10
    device: str = "auto"
    threads: int | None = None
    channels_last: bool = False
    amp: str = "none"
    compile: bool = False
    progress: bool = True
    plot: bool = True

    # Fields that may change when a run is resumed (run control and data locations).
    RESUMABLE = ("steps", "stop_at", "out", "checkpoint_every", "val_every", "log_every", "device",
                 "threads", "progress", "plot", "train_dir", "target_dir", "pkl", "compile")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"unknown training option(s) {unknown}; known: {sorted(names)}")
        return cls(**d)

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"config file not found: {path}") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read config {path}: {exc}") from None
        if not isinstance(d, dict):
            raise InputError(f"config {path} must hold a JSON object of training options")
        d.pop("_comment", None)
        return cls.from_dict(d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Raise InputError for an option out of range."""
        checks = [
            (self.data in ("folder", "pairs", "pkl"), "data must be 'folder', 'pairs' or 'pkl'"),
            (self.target in ("noisy", "clean"), "target must be 'noisy' or 'clean'"),
            (self.schedule in SCHEDULES, f"schedule must be one of {sorted(SCHEDULES)}"),
            (self.amp in ("none", "bf16"), "amp must be 'none' or 'bf16'"),
            (self.steps > 0 and self.batch_size > 0, "steps and batch_size must be positive"),
            (self.checkpoint_every > 0 and self.log_every > 0, "checkpoint_every and log_every must be positive"),
            (self.lr > 0, "lr must be positive"),
            (0 <= self.rampdown <= 1, "rampdown must be a fraction in [0, 1]"),
            (self.crop is None or self.crop >= 8, "crop must be at least 8 pixels (or null for whole images)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise InputError(f"bad training config: {msg}")
        needed = {"folder": "train_dir", "pairs": "train_dir", "pkl": "pkl"}[self.data]
        if getattr(self, needed) is None:
            raise InputError(f"data={self.data!r} needs {needed}; pass --{needed.replace('_', '-')}")

    def loss_name(self) -> str:
        if self.loss != "auto":
            return self.loss
        if self.data != "folder" or self.target == "clean":
            return "l2"
        from .data import noise_kind

        return loss_for_noise(noise_kind(self.noise))

    def differences(self, other: "TrainConfig") -> list[str]:
        """Options (other than RESUMABLE ones) whose values differ, as 'name: a -> b'."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a[k]!r} (checkpoint) vs {b[k]!r} (now)" for k in a
                if k not in self.RESUMABLE and a[k] != b.get(k)]


#: One line of help per option (the command line shows them).
OPTION_HELP = {
    "model": "registered model name (n2n-unet, n2n-unet-gray, n2n-unet-color, unet-small, ...)",
    "model_kwargs": "extra keyword arguments of the model factory, e.g. {\"features\": 32}",
    "data": "folder (clean images + noise), pairs (noisy pair images) or pkl (EE-559 pair file)",
    "train_dir": "folder of training images (data=folder), or of the input views (data=pairs)",
    "target_dir": "folder of the target views, matched by name (data=pairs; omit for a naming rule)",
    "input_suffix": "name-stem suffix of input views, e.g. _a (naming rule for data=pairs)",
    "target_suffix": "name-stem suffix of target views, e.g. _b (naming rule for data=pairs)",
    "pkl": ".pkl file holding two uint8 tensors (N, 3, 32, 32) (data=pkl)",
    "gray": "train on gray (true) or RGB (false) images; default: gray if all images are gray",
    "noise": "noise model spec (denoise.noise), e.g. gaussian:0-50 (a sigma range is blind, per image)",
    "target": "noisy (Noise2Noise: an independent noise draw) or clean targets (data=folder)",
    "swap": "swap input and target views at random (data=pairs, pkl)",
    "val_count": "number of images/pairs held out (the last ones, sorted) for validation",
    "val_noise": "noise spec for validation (default: the training noise, a sigma range at its midpoint)",
    "val_crop": "center crop of validation images (pixels; null: whole images)",
    "crop": "side of the random training crops (null: whole images)",
    "batch_size": "global batch size (split across processes under torchrun)",
    "steps": "total steps; the schedule is defined on it (may grow on --resume)",
    "stop_at": "stop at this step without changing the schedule",
    "lr": "peak Adam learning rate",
    "schedule": "learning-rate schedule: rampdown (constant, then cosine to 0), cosine or constant",
    "rampdown": "fraction of the steps over which rampdown decays the rate",
    "warmup": "steps of linear learning-rate warm-up",
    "beta1": "Adam beta1",
    "beta2": "Adam beta2",
    "loss": "l2, l1, l0 (annealed), masked_l2, or auto (matched to the noise)",
    "l0_floor": "final exponent of the annealed L0 loss (> 0)",
    "seed": "seed of model initialisation, crops and noise",
    "out": "run folder (checkpoint.pt, config.json, log.csv, curves.png)",
    "checkpoint_every": "steps between checkpoints (one is also written at exit)",
    "val_every": "steps between validations (default: checkpoint_every)",
    "log_every": "steps per log.csv row (mean loss over the window)",
    "device": "auto, cpu, cuda or cuda:N",
    "threads": "torch CPU threads (default: torch's choice)",
    "channels_last": "channels-last memory layout (faster convolutions on some CPUs)",
    "amp": "none or bf16 (bfloat16 autocast)",
    "compile": "torch.compile the model",
    "progress": "show a progress bar (loss, validation PSNR, images/s)",
    "plot": "redraw curves.png at each checkpoint",
}


# --------------------------------------------------------------------------- schedule


def _cosine(p: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(max(p, 0.0), 1.0)))


SCHEDULES = {
    "constant": lambda p, frac: 1.0,
    "cosine": lambda p, frac: _cosine(p),
    # constant, then a cosine ramp to 0 over the last ``frac`` of training (Noise2Noise)
    "rampdown": lambda p, frac: 1.0 if p < 1.0 - frac or frac == 0 else _cosine((p - (1.0 - frac)) / frac),
}


def learning_rate(step: int, config: TrainConfig) -> float:
    """The learning rate for the update that follows ``step`` completed steps."""
    factor = SCHEDULES[config.schedule](step / config.steps, config.rampdown)
    if config.warmup > 0:
        factor *= min(1.0, (step + 1) / config.warmup)
    return config.lr * factor


# --------------------------------------------------------------------------- data and model


def default_val_noise(config: TrainConfig) -> str:
    """The validation noise spec: ``val_noise``, else the training noise, with a Gaussian
    sigma range (blind training) replaced by its midpoint."""
    from .noise import Gaussian, parse_noise

    if config.val_noise is not None:
        return config.val_noise
    noise = parse_noise(config.noise)
    if isinstance(noise, Gaussian) and isinstance(noise.sigma, tuple):
        mid = 255 * sum(noise.sigma) / 2
        return f"gaussian:{mid:g}" + (":clip" if noise.clip else "")
    return config.noise


def folder_data(config: TrainConfig, images: list[torch.Tensor]):
    """The data=folder source of ``config`` on already loaded clean ``images`` (sorted by
    name, as :func:`denoise.data.load_folder` returns them): the last ``val_count`` are
    held out. Several runs on one folder (a benchmark) load it once and share it."""
    from . import data as D

    n = D.split_holdout(len(images), config.val_count, f"images in {config.train_dir}")
    return D.CleanFolderData(images[:n], D.parse_noise(config.noise), target=config.target,
                             crop=config.crop, val_images=images[n:],
                             val_noise=D.parse_noise(default_val_noise(config)),
                             val_crop=config.val_crop, val_seed=config.seed + 12345)


def build_data(config: TrainConfig):
    """The training data source described by ``config`` (see :mod:`denoise.data`)."""
    from . import data as D

    if config.data == "folder":
        _, images = D.load_folder(config.train_dir, gray=config.gray)
        return folder_data(config, images)
    if config.data == "pairs":
        paths = D.pair_paths(config.train_dir, config.target_dir, input_suffix=config.input_suffix,
                             target_suffix=config.target_suffix)
        pairs = D.load_pairs(paths, gray=config.gray)
        n = D.split_holdout(len(pairs), config.val_count, "pairs")
        return D.PairData(pairs[:n], crop=config.crop, swap=config.swap, val_pairs=pairs[n:],
                          val_crop=config.val_crop)
    a, b = D.load_pkl_pairs(config.pkl)
    n = D.split_holdout(a.shape[0], config.val_count, f"pairs in {config.pkl}")
    return D.PairData(list(zip(a[:n], b[:n])), crop=config.crop, swap=config.swap,
                      val_pairs=list(zip(a[n:], b[n:])), val_crop=config.val_crop)


def build_model(config: TrainConfig, channels: int) -> nn.Module:
    """Create the (untrained) registered model for ``channels``-channel data."""
    from .models.registry import create_model, get_entry

    entry = get_entry(config.model)
    if entry.kind != "learned":
        raise InputError(f"model {config.model!r} is {entry.kind}, not trainable; pick a learned model")
    fixed = entry.defaults.get("channels")
    if fixed is not None and fixed != channels and "channels" not in config.model_kwargs:
        raise InputError(f"model {config.model!r} is for {fixed}-channel images but the data has "
                         f"{channels}; set gray={fixed == 1} or pick another model")
    kwargs = {"channels": channels, **config.model_kwargs}
    try:
        model = create_model(config.model, pretrained=False, **kwargs)
    except TypeError as exc:
        raise InputError(f"bad model_kwargs {config.model_kwargs} for {config.model!r}: {exc}") from None
    return model.train()


# --------------------------------------------------------------------------- distributed


@dataclass
class Dist:
    """This process's place in a (possibly single-process) group."""

    rank: int = 0
    world: int = 1
    initialised_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device) -> "Dist":
        """Join the group torchrun describes in the environment (WORLD_SIZE > 1)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), initialised_here=True)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            value = value.clone()
            dist.all_reduce(value)
            value /= self.world
        return value

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


# --------------------------------------------------------------------------- trainer


@dataclass
class TrainResult:
    step: int
    loss: float
    val_psnr: float | None
    elapsed_s: float
    run_dir: Path
    history: list[dict] = field(default_factory=list)


class Trainer:
    """Trains a registered model on a data source; see the module docstring.

    ``data`` and ``model`` default to what ``config`` describes (:func:`build_data`,
    :func:`build_model`); tests pass small ones directly.
    """

    def __init__(self, config: TrainConfig, *, data=None, model: nn.Module | None = None):
        config.validate()
        self.config = config
        self.run_dir = Path(config.out)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                                   if config.device == "auto" else config.device)
        self.dist = Dist.from_env(self.device)
        if self.dist.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)
        if config.batch_size % self.dist.world:
            raise InputError(f"batch_size {config.batch_size} must be divisible by the "
                             f"{self.dist.world} processes")
        torch.manual_seed(config.seed)  # model initialisation
        self.data = data if data is not None else build_data(config)
        self.model = (model if model is not None else build_model(config, self.data.channels)).to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss_fn = get_loss(config.loss_name(), l0_floor=config.l0_floor)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr,
                                          betas=(config.beta1, config.beta2))
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.elapsed_s = 0.0
        self.window = [0.0, 0]  # loss sum and count since the last log row
        self.last_val: float | None = None
        self.last_val_step: int | None = None
        self._stop_signal: int | None = None
        self._val_cache: list | None = None
        self.net = self._wrap(self.model)

    def _wrap(self, model: nn.Module) -> nn.Module:
        net = model
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            net = DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.config.compile:
            net = torch.compile(net)
        return net

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint: tensors and primitive types only (loads with weights_only=True)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "config": json.dumps(self.config.to_dict(), sort_keys=True),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"kind": self.config.schedule, "steps": self.config.steps,
                          "lr": learning_rate(self.step, self.config)},
            "rng": {"data": self.generator.get_state(), "torch": torch.get_rng_state()},
            "elapsed_s": self.elapsed_s,
            "window": list(self.window),
            "last_val_psnr": self.last_val,
            "last_val_step": self.last_val_step,
            "world_size": self.dist.world,
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        """Restore a checkpoint after checking it belongs to the same model and setup."""
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise TrainingError(f"checkpoint format {ckpt.get('format')!r} is not supported "
                                f"(expected {CHECKPOINT_FORMAT})")
        old = TrainConfig.from_dict(json.loads(ckpt["config"]))
        diff = old.differences(self.config)
        if diff:
            raise TrainingError("cannot resume: the checkpoint was trained with another setup: "
                                + "; ".join(diff) + ". Use the same config, or a new --out folder")
        try:
            self.model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise ModelError(f"cannot resume: checkpoint weights do not fit {self.config.model}: "
                             f"{str(exc).splitlines()[0]}") from None
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.generator.set_state(ckpt["rng"]["data"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        self.step = int(ckpt["step"])
        self.elapsed_s = float(ckpt["elapsed_s"])
        self.window = [float(ckpt["window"][0]), int(ckpt["window"][1])]
        self.last_val = ckpt.get("last_val_psnr")
        self.last_val_step = ckpt.get("last_val_step")

    def save_checkpoint(self) -> Path:
        """Write ``checkpoint.pt`` atomically; on failure the previous one stays intact."""
        path = self.run_dir / CHECKPOINT
        state = self.state_dict()
        try:
            with atomic_path(path, overwrite=True) as tmp:
                torch.save(state, tmp)
        except OSError as exc:
            kept = f"the previous checkpoint {path} is intact" if path.exists() else "no checkpoint was kept"
            raise TrainingError(f"cannot write checkpoint at step {self.step}: "
                                f"{getattr(exc, 'strerror', None) or exc}; {kept}. Free disk space "
                                "and resume with --resume") from None
        return path

    def resume(self) -> None:
        path = self.run_dir / CHECKPOINT
        if not path.is_file():
            raise InputError(f"nothing to resume: {path} does not exist")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise TrainingError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None
        self.load_state_dict(ckpt)
        if self.dist.main:
            truncate_log(self.run_dir / LOG, self.step)

    # ------------------------------------------------------------------ steps

    def _local(self, t: torch.Tensor | None) -> torch.Tensor | None:
        """This process's slice of a global batch, on the device."""
        if t is None:
            return None
        n = t.shape[0] // self.dist.world
        t = t[self.dist.rank * n:(self.dist.rank + 1) * n].to(self.device)
        return t.contiguous(memory_format=torch.channels_last) if self.config.channels_last else t

    def train_step(self) -> float:
        """One optimisation step on a fresh global batch; returns the global mean loss."""
        cfg = self.config
        batch = self.data.sample(cfg.batch_size, self.generator)
        inp, tgt, mask = self._local(batch.input), self._local(batch.target), self._local(batch.mask)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step, cfg)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if cfg.amp == "bf16" \
            else contextlib.nullcontext()
        with autocast:
            out = self.net(inp)
        loss = self.loss_fn(out.float(), tgt, mask=mask, progress=self.step / cfg.steps)
        value = float(self.dist.mean(loss.detach()))
        if not math.isfinite(value):
            raise TrainingError(f"the loss became {value} at step {self.step + 1}; training stopped "
                                f"and the last good checkpoint {self.run_dir / CHECKPOINT} was kept. "
                                "Lower the learning rate (--lr) or check the data")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return value

    @torch.no_grad()
    def validate(self) -> float | None:
        """Mean PSNR (outputs clipped to [0, 1]) on the held-out data; None without any."""
        if self._val_cache is None:
            self._val_cache = self.data.validation()
        if not self._val_cache:
            return None
        self.model.eval()
        scores = []
        for noisy, ref in self._val_cache:
            x = noisy.to(self.device)
            if self.config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            out = self.model(x).float().clamp(0, 1).cpu()
            scores.append(psnr(out, ref, data_range=1.0))
        self.model.train()
        return float(torch.cat(scores).mean())

    # ------------------------------------------------------------------ loop

    def fit(self, *, resume: bool = False) -> TrainResult:
        """Train until ``steps`` (or ``stop_at``); checkpoint regularly and at exit."""
        cfg = self.config
        if self.dist.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.dist.barrier()
        if resume:
            self.resume()
        elif (self.run_dir / CHECKPOINT).exists():
            raise InputError(f"{self.run_dir} already holds a run; pass --resume to continue it "
                             "or choose another --out folder")
        if self.dist.main:
            write_json(self.run_dir / CONFIG, cfg.to_dict())
        end = min(cfg.steps, cfg.stop_at) if cfg.stop_at else cfg.steps
        val_every = cfg.val_every or cfg.checkpoint_every
        history: list[dict] = []
        loss = float("nan")
        bar = self._progress_bar(end)
        old_handlers = self._catch_signals()
        t_window, n_window_images = time.perf_counter(), 0
        t_start = time.perf_counter() - self.elapsed_s
        try:
            while self.step < end and self._stop_signal is None:
                loss = self.train_step()
                self.elapsed_s = time.perf_counter() - t_start
                self.window[0] += loss
                self.window[1] += 1
                n_window_images += cfg.batch_size
                bar.update(1)
                val = self.validate() if (self.step % val_every == 0 or self.step == end) and self.dist.main else None
                if val is not None:
                    self.last_val, self.last_val_step = val, self.step
                if self.step % cfg.log_every == 0 or val is not None or self.step == end:
                    now = time.perf_counter()
                    row = self._log_row(lr=learning_rate(self.step - 1, cfg),
                                        ips=n_window_images / max(now - t_window, 1e-9), val=val)
                    history.append(row)
                    t_window, n_window_images = now, 0
                    bar.set_postfix(loss=f"{row['loss']:.5f}", psnr=f"{self.last_val or float('nan'):.2f}",
                                    img_s=f"{row['images_per_s']:.1f}", refresh=False)
                if self.step % cfg.checkpoint_every == 0 and self.step < end:
                    self._checkpoint()
            self._checkpoint()
        except KeyboardInterrupt:
            self._checkpoint()
            raise
        finally:
            bar.close()
            self._restore_signals(old_handlers)
            self.dist.close()
        return TrainResult(self.step, loss, self.last_val, self.elapsed_s, self.run_dir, history)

    def _checkpoint(self) -> None:
        if self.dist.main:
            self.save_checkpoint()
            if self.config.plot:
                with contextlib.suppress(Exception):  # a plot is never worth losing a run
                    plot_curves(self.run_dir / LOG, self.run_dir / CURVES)
        self.dist.barrier()

    def _log_row(self, *, lr: float, ips: float, val: float | None) -> dict:
        s, n = self.window
        row = {"step": self.step, "loss": s / n if n else float("nan"), "lr": lr,
               "images_per_s": ips, "wall_s": self.elapsed_s, "val_psnr": val}
        self.window = [0.0, 0]
        if self.dist.main:
            append_log(self.run_dir / LOG, row)
        return row

    def _progress_bar(self, end: int):
        from tqdm import tqdm

        tty = sys.stderr.isatty()
        return tqdm(total=end, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                    disable=not (self.config.progress and self.dist.main), mininterval=1 if tty else 60)

    def _catch_signals(self) -> dict:
        """Turn SIGTERM into a clean stop with a checkpoint (main thread only)."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum, frame):  # noqa: ARG001
            self._stop_signal = signum

        return {signal.SIGTERM: signal.signal(signal.SIGTERM, handler)}

    @staticmethod
    def _restore_signals(old: dict) -> None:
        for sig, h in old.items():
            signal.signal(sig, h)


def train(config: TrainConfig | dict, *, resume: bool = False, data=None, model=None) -> TrainResult:
    """Train from a config (a :class:`TrainConfig` or a dict of its options)."""
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    return Trainer(config, data=data, model=model).fit(resume=resume)


# --------------------------------------------------------------------------- files


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (indent 2, trailing newline)."""
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
        tmp.chmod(0o644)  # temp files are created private


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(log_path)
    if not rows:
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=0.8)
    a.set(xlabel="step", ylabel="training loss", yscale="log", title="loss")
    val = [r for r in rows if r["val_psnr"] is not None]
    b.plot([r["step"] for r in val], [r["val_psnr"] for r in val], "o-", ms=3)
    b.set(xlabel="step", ylabel="PSNR (dB)", title="validation PSNR (held-out training images)")
    fig.tight_layout()
    with atomic_path(png_path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
        tmp.chmod(0o644)
    plt.close(fig)


# --------------------------------------------------------------------------- export


def hardware_description(device: str = "cpu", threads: int | None = None) -> str:
    """A one-line description of the machine a run used."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name()}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"CPU {cpu}, {threads or torch.get_num_threads()} thread(s), torch {torch.__version__}"


def export_weights(run_dir: str | Path, name: str, *, weights_dir: str | Path | None = None,
                   command: str | None = None, note: str | None = None) -> Path:
    """Turn a run's checkpoint into ``NAME.safetensors`` + ``NAME.json`` (model card).

    ``command`` is the exact command that reproduces the run (default: the one saved in
    the run folder's ``command.txt``); ``note``, free text kept in the card (for
    instance how the run was extended). Returns the weights path.
    """
    from safetensors.torch import save_file

    from .models.registry import WEIGHTS_DIR
    from .noise import parse_noise

    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise InputError(f"no checkpoint in {run_dir}; train first")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    cfg = TrainConfig.from_dict(json.loads(ckpt["config"]))
    out_dir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in ckpt["model"].items()}
    if command is None:
        cmd_file = run_dir / "command.txt"
        command = cmd_file.read_text().strip() if cmd_file.is_file() else None
    step = int(ckpt["step"])
    if command and step < cfg.steps and "--stop-at" not in command:
        command += f" --stop-at {step}"
    channels = int(state[next(k for k in state if k.endswith("weight"))].shape[1])
    card = {
        "name": name,
        "architecture": cfg.model,
        "model_kwargs": cfg.model_kwargs,
        "channels": channels,
        "data": _describe_data(cfg),
        "status": "final" if step >= cfg.steps else f"interim: step {step} of {cfg.steps}",
        "noise": cfg.noise if cfg.data == "folder" else "real noisy pairs",
        "noise_model": repr(parse_noise(cfg.noise)) if cfg.data == "folder" else None,
        "targets": cfg.target if cfg.data == "folder" else "noisy (second view)",
        "loss": cfg.loss_name(),
        "training": {"steps": step, "planned_steps": cfg.steps, "batch_size": cfg.batch_size,
                     "crop": cfg.crop, "optimizer": f"Adam(betas=({cfg.beta1}, {cfg.beta2}))",
                     "lr": cfg.lr, "schedule": cfg.schedule, "rampdown": cfg.rampdown,
                     "augmentation": "random crops, flips, 90-degree rotations", "seed": cfg.seed,
                     "channels_last": cfg.channels_last, "amp": cfg.amp},
        "wall_time_s": round(float(ckpt["elapsed_s"]), 1),
        "hardware": hardware_description(cfg.device, cfg.threads),
        "validation": {"psnr_db": ckpt.get("last_val_psnr"), "at_step": ckpt.get("last_val_step"),
                       "noise": default_val_noise(cfg),
                       "images": f"last {cfg.val_count} of the sorted training folder (held out)",
                       "crop": cfg.val_crop, "outputs_clipped": True},
        "reproduce": command,
        "torch": torch.__version__,
    }
    if note:
        card["note"] = note
    weights = out_dir / f"{name}.safetensors"
    with atomic_path(weights, overwrite=True) as tmp:
        save_file(state, str(tmp), metadata={"name": name, "architecture": cfg.model, "steps": str(step)})
        tmp.chmod(0o644)
    write_json(out_dir / f"{name}.json", card)
    return weights


def _describe_data(cfg: TrainConfig) -> str:
    if cfg.data == "folder":
        return (f"{Path(cfg.train_dir).name} (clean images of {cfg.train_dir}, minus the last "
                f"{cfg.val_count} held out for validation), {'gray' if cfg.gray else 'as stored'}")
    if cfg.data == "pairs":
        return f"noisy pairs in {cfg.train_dir}" + (f" and {cfg.target_dir}" if cfg.target_dir else "")
    return f"EE-559 pair file {cfg.pkl}"


if __name__ == "__main__":
    from .train_cli import main

    raise SystemExit(main())
