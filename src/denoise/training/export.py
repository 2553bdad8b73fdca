"""A training run's checkpoint turned into weights (safetensors) and a model card (JSON)."""
from __future__ import annotations

import contextlib
import json
import platform
from pathlib import Path

import torch

from ..errors import InputError
from ..utils import atomic_path, write_json
from .config import TrainConfig, default_val_noise
from .runlog import CHECKPOINT

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

    from ..models.registry import WEIGHTS_DIR
    from ..noise import parse_noise

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
    write_json(out_dir / f"{name}.json", card, sort_keys=True)
    return weights


def _describe_data(cfg: TrainConfig) -> str:
    if cfg.data == "folder":
        return (f"{Path(cfg.train_dir).name} (clean images of {cfg.train_dir}, minus the last "
                f"{cfg.val_count} held out for validation), {'gray' if cfg.gray else 'as stored'}")
    if cfg.data == "pairs":
        return f"noisy pairs in {cfg.train_dir}" + (f" and {cfg.target_dir}" if cfg.target_dir else "")
    return f"EE-559 pair file {cfg.pkl}"
