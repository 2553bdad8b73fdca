"""One Trainer for denoisers: noisy targets (Noise2Noise), clean targets, or single noisy
images (``target="self"``: the objectives of :mod:`.selfsup`).

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

``minutes`` bounds the wall time of one invocation (:attr:`Trainer.clock`; loading the
data and building the model come before it): the run stops cleanly at the first step
boundary past the bound, with a checkpoint, the schedule unchanged, and the progress bar
counts seconds of that budget instead of steps. A resumed run gets the budget again. With
``init`` the model starts from trained weights (fine-tuning; ``freeze_bn`` then keeps the
batch-norm statistics of those weights).

Under ``torchrun --nproc_per_node=N`` the model is wrapped in DistributedDataParallel
(gloo on CPU, nccl on GPU). Every process draws the same global batch from the same
generator and trains on its own slice, so N processes compute the same update as one
process with the same global batch.

Validation PSNR (outputs clipped to [0, 1]) is measured on images held out from the
training data (the last ``val_count`` in sorted order), never on a test set.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError, ModelError, TrainingError
from ..metrics import psnr
from ..utils import atomic_path, write_json, write_text
from .build import build_data, build_model, folder_data  # noqa: F401 - re-exported
from .config import TrainConfig, learning_rate
from .device_data import DeviceBatches
from .distributed import Dist
from .losses import get_loss
from .runlog import CHECKPOINT, CONFIG, CURVES, LOG, VALIDATION, append_log, plot_curves, truncate_log, validation_note
from .selfsup import objective_for

CHECKPOINT_FORMAT = 1


# --------------------------------------------------------------------------- trainer


@dataclass
class TrainResult:
    step: int
    loss: float
    val_psnr: float | None
    elapsed_s: float
    run_dir: Path
    history: list[dict] = field(default_factory=list)
    timed_out: bool = False  # stopped by the ``minutes`` bound
    start_step: int = 0  # the step this invocation started from (a resumed run's checkpoint)


class Trainer:
    """Trains a registered model on a data source; see the module docstring.

    ``data`` and ``model`` default to what ``config`` describes (:func:`build_data`,
    :func:`build_model`); tests pass small ones directly.
    """

    #: The clock of the ``minutes`` bound, in seconds: wall time. A benchmark that bounds
    #: CPU time instead may set ``time.process_time`` (on the class or an instance).
    clock = staticmethod(time.perf_counter)

    def __init__(self, config: TrainConfig, *, data=None, model: nn.Module | None = None):
        config.validate()
        self.config = config
        self.run_dir = Path(config.out)
        self.device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                                   if config.device == "auto" else config.device)
        self.dist = Dist.from_env(self.device)
        if self.dist.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)
        if config.batch_size % self.dist.world:
            raise InputError(f"batch_size {config.batch_size} must be divisible by the "
                             f"{self.dist.world} processes")
        self.data = data if data is not None else build_data(config)
        if config.device_data:
            self.data = DeviceBatches(self.data, self.device)
        if model is None:
            with torch.random.fork_rng(devices=[]):  # the caller's global RNG is left alone
                torch.manual_seed(config.seed)  # model initialisation
                model = build_model(config, self.data.channels, self.data)
        self.model = model.to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss_fn = get_loss(config.loss_name(), l0_floor=config.l0_floor)
        #: the self-supervised objective (target="self"), else None
        self.objective = objective_for(config, self.model, self.loss_fn)
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
        self._uses_sigma = bool(getattr(self.model, "uses_sigma", False))
        #: the number of held-out validation images or pairs
        self.held_out = len(getattr(self.data, "val_images", getattr(self.data, "val_pairs", [])))
        #: validation PSNR is measured against noisy target views (pairs without --val-clean)
        #: (or, target="self" on noisy photos, against held-out noisy images: selfsup.VALIDATION_NOTE)
        self.noisy_reference = not getattr(self.data, "clean_reference", not hasattr(self.data, "val_pairs"))
        self.net = self._wrap(self.model)
        #: the batch-norm layers kept in inference mode (freeze_bn)
        self._frozen_bn = [m for m in self.model.modules()
                           if isinstance(m, nn.modules.batchnorm._BatchNorm)] if config.freeze_bn else []

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
            "held_out": self.held_out,
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
        sigma = None
        if self._uses_sigma:
            if batch.sigma is None:
                raise TrainingError(f"{cfg.model} needs the noise level of its input, which this "
                                    "data does not give (use data=folder with Gaussian noise)")
            n = batch.sigma.shape[0] // self.dist.world
            sigma = batch.sigma[self.dist.rank * n:(self.dist.rank + 1) * n].to(self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step, cfg)
        for bn in self._frozen_bn:  # validation may have put the model back in training mode
            bn.eval()
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if cfg.amp == "bf16" \
            else contextlib.nullcontext()
        with autocast:
            if self.objective is not None:  # target="self": the objective makes the targets from inp
                loss = self.objective(self.net, self.model, inp, self.generator, self.step / cfg.steps)
            else:
                out = self.net(inp, sigma) if self._uses_sigma else self.net(inp)
        if self.objective is None:
            loss = self.loss_fn(out.float(), tgt, mask=mask, progress=self.step / cfg.steps, noisy=inp)
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
        """Mean PSNR (outputs clipped to [0, 1]) on the held-out data; None without any.
        Noisy photos (target="self", noise="none"): the self-supervised figure instead."""
        if self.objective is not None and self.noisy_reference:
            return self.objective.validate(self.model, self.data.val_images, self.device)
        model = self.objective.restorer(self.model) if self.objective is not None else self.model
        if self._val_cache is None:
            with_sigma = getattr(self.data, "validation_with_sigma", None)
            self._val_cache = with_sigma() if with_sigma else [(*v, None) for v in self.data.validation()]
        if not self._val_cache:
            return None
        self.model.eval()
        scores = []
        for noisy, ref, sigma in self._val_cache:
            x = noisy.to(self.device)
            if self.config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if self._uses_sigma:
                if sigma is None:
                    raise TrainingError(f"{self.config.model} needs the noise level of its input, "
                                        "which this data does not give (use data=folder with Gaussian noise)")
                out = model(x, sigma.to(self.device))
            else:
                out = model(x)
            out = out.float().clamp(0, 1).cpu()
            scores.append(psnr(out, ref, data_range=1.0))
        self.model.train()
        return float(torch.cat(scores).mean())

    # ------------------------------------------------------------------ loop

    def fit(self, *, resume: bool = False) -> TrainResult:
        """Train until ``steps`` (or ``stop_at``, or ``minutes`` have passed); checkpoint
        regularly and at exit."""
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
            write_json(self.run_dir / CONFIG, cfg.to_dict(), sort_keys=True)
            note = getattr(self.data, "validation_note", None) or validation_note(self.noisy_reference)
            write_text(self.run_dir / VALIDATION, note + "\n")
        end = min(cfg.steps, cfg.stop_at) if cfg.stop_at else cfg.steps
        start_step = self.step
        val_every = cfg.val_every or cfg.checkpoint_every
        history: list[dict] = []
        loss = float("nan")
        budget = None if cfg.minutes is None else 60.0 * cfg.minutes
        bar = self._progress_bar(end, budget)
        old_handlers = self._catch_signals()
        t_window, n_window_images = time.perf_counter(), 0
        t_start = time.perf_counter() - self.elapsed_s
        t_budget = self.clock()
        timed_out = False
        try:
            while self.step < end and self._stop_signal is None:
                if budget is not None and self.clock() - t_budget >= budget:
                    timed_out = True
                    break
                loss = self.train_step()
                self.elapsed_s = time.perf_counter() - t_start
                self.window[0] += loss
                self.window[1] += 1
                n_window_images += cfg.batch_size
                bar.update(1 if budget is None else min(self.clock() - t_budget, budget) - bar.n)
                val = self.validate() if (self.step % val_every == 0 or self.step == end) and self.dist.main else None
                if val is not None:
                    self.last_val, self.last_val_step = val, self.step
                if self.step % cfg.log_every == 0 or val is not None or self.step == end:
                    now = time.perf_counter()
                    row = self._log_row(lr=learning_rate(self.step - 1, cfg),
                                        ips=n_window_images / max(now - t_window, 1e-9), val=val)
                    history.append(row)
                    t_window, n_window_images = now, 0
                    psnr_key = "val_psnr_vs_noisy" if self.noisy_reference else "val_psnr"
                    shown = {"step": self.step} if budget is not None else {}
                    shown.update({"loss": f"{row['loss']:.5f}"})
                    if self.last_val is not None or self.held_out:
                        shown[psnr_key] = f"{self.last_val or float('nan'):.2f}"
                    shown["img_s"] = f"{row['images_per_s']:.1f}"
                    bar.set_postfix(shown, refresh=False)
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
        return TrainResult(self.step, loss, self.last_val, self.elapsed_s, self.run_dir, history, timed_out, start_step)

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

    def _progress_bar(self, end: int, budget: float | None = None):
        """A bar over the steps to ``end``, or over the seconds of a time ``budget``."""
        from tqdm import tqdm

        tty = sys.stderr.isatty()
        show = {"dynamic_ncols": True, "disable": not (self.config.progress and self.dist.main),
                "mininterval": 1 if tty else 60}
        if budget is not None:
            return tqdm(total=budget, desc="train", unit="s", bar_format="{l_bar}{bar}| "
                        "{n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]", **show)
        return tqdm(total=end, initial=self.step, desc="train", unit="step", **show)

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


