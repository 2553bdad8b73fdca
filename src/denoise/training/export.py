"""A training run's checkpoint turned into weights (safetensors) and a model card (JSON)."""
from __future__ import annotations

import contextlib
import json
import platform
import re
from pathlib import Path

import torch

from ..errors import InputError, OutputError
from ..utils import write_json
from .config import TrainConfig, default_val_noise
from .runlog import CHECKPOINT

# --------------------------------------------------------------------------- export

#: The seed of the batches drawn for precise batch-norm statistics (not the run's own).
PRECISE_BN_SEED = 1


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
                   command: str | None = None, note: str | None = None, overwrite: bool = False,
                   precise_bn: int = 0) -> Path:
    """Turn a run's checkpoint into ``NAME.safetensors`` + ``NAME.json`` (model card).

    The files go to ``weights_dir``, by default the user model folder
    (:func:`denoise.models.user.user_models_dir`), never silently into the installed
    package: a shipped model's name is refused anywhere but in the package's own weights
    folder, and existing files are replaced only with ``overwrite``. ``command`` is the
    exact command that reproduces the run (default: the one saved in the run folder's
    ``command.txt``); ``note``, free text kept in the card (for instance how the run was
    extended). ``precise_bn`` > 0 recomputes the batch-norm statistics as the mean over
    that many batches of the run's training data (:mod:`.precise_bn`; the card records
    it, with the validation PSNR before and after). Returns the weights path.
    """
    from ..models.registry import save_weights
    from ..models.user import user_models_dir
    from ..noise import parse_noise

    if precise_bn < 0:
        raise InputError(f"--precise-bn must be >= 0 batches, got {precise_bn}")
    out_dir = Path(weights_dir) if weights_dir is not None else user_models_dir()
    check_model_name(name, out_dir)
    existing = [p for p in (out_dir / f"{name}.safetensors", out_dir / f"{name}.json") if p.exists()]
    if existing and not overwrite:
        raise OutputError(f"{existing[0]} exists; pass --force to replace it")
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise InputError(f"no checkpoint in {run_dir}; train first")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    cfg = TrainConfig.from_dict(json.loads(ckpt["config"]))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out_dir}: {exc.strerror or exc}") from None
    state = {k: v.contiguous() for k, v in ckpt["model"].items()}
    if command is None:
        cmd_file = run_dir / "command.txt"
        command = cmd_file.read_text().strip() if cmd_file.is_file() else None
    step = int(ckpt["step"])
    if command and step < cfg.steps and "--stop-at" not in command and cfg.minutes is None:
        command += f" --stop-at {step}"
    from ..models.registry import get_entry
    from ..models.user import build_fitting

    from .config import NO_NOISE

    # the card's model_kwargs rebuild the trained model: an upscaler's scale goes in them
    model_kwargs = {**cfg.model_kwargs, **({"scale": cfg.scale} if cfg.scale else {})}
    model = build_fitting(get_entry(cfg.model), model_kwargs, state, what=str(path))
    channels = int(model.channels)
    bn_statistics = _precise_state(cfg, model, precise_bn) if precise_bn else None
    if bn_statistics is not None:
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
    synthetic = cfg.data == "folder" and cfg.noise not in NO_NOISE
    card = {
        "name": name,
        "architecture": cfg.model,
        "model_kwargs": model_kwargs,
        "channels": channels,
        "data": _describe_data(cfg),
        **({"init": f"fine-tuned from {cfg.init}" + (" (widened)" if cfg.init_widen else "")
            + (" (deepened)" if cfg.init_deepen else "")} if cfg.init else {}),
        "status": _status(cfg, step),
        "noise": _describe_noise(cfg),
        "noise_model": repr(parse_noise(cfg.noise)) if synthetic else None,
        "targets": "clean (the originals)" if cfg.data == "sr" else cfg.target if cfg.data == "folder"
        else "noisy (second view)",
        "loss": cfg.loss_name(),
        "training": {"steps": step, "planned_steps": cfg.steps, "batch_size": cfg.batch_size,
                     "crop": cfg.crop, "optimizer": f"Adam(betas=({cfg.beta1}, {cfg.beta2}))",
                     "lr": cfg.lr, "schedule": cfg.schedule, "rampdown": cfg.rampdown,
                     "augmentation": "random crops, flips, 90-degree rotations", "seed": cfg.seed,
                     "channels_last": cfg.channels_last, "amp": cfg.amp},
        "wall_time_s": round(float(ckpt["elapsed_s"]), 1),
        "hardware": hardware_description(cfg.device, cfg.threads),
        "validation": _validation(cfg, ckpt),
        "reproduce": command,
        "torch": torch.__version__,
    }
    if bn_statistics is not None:
        card["bn_statistics"] = bn_statistics
    if note:
        card["note"] = note
    weights = out_dir / f"{name}.safetensors"
    save_weights(weights, state, {"name": name, "architecture": cfg.model, "steps": str(step)},
                 overwrite=overwrite)
    write_json(out_dir / f"{name}.json", card, sort_keys=True, overwrite=True)
    return weights


def _precise_state(cfg: TrainConfig, model, batches: int) -> dict:
    """Recompute ``model``'s batch-norm statistics on the run's training data (in place);
    returns what the card records."""
    from .build import build_data
    from .precise_bn import precise_bn, validation_psnr

    data = build_data(cfg)
    before = validation_psnr(model, data)
    precise_bn(model, data, batches, batch_size=cfg.batch_size, seed=PRECISE_BN_SEED, progress=True)
    after = validation_psnr(model, data)
    return {"method": "precise: the running statistics replaced by the exact mean over training "
                      "batches (weights unchanged)", "batches": batches, "batch_size": cfg.batch_size,
            "seed": PRECISE_BN_SEED, "validation_psnr_before": before, "validation_psnr_after": after}


def check_model_name(name: str, out_dir: Path) -> None:
    """InputError unless ``name`` may be exported to ``out_dir``: letters, digits, '.', '_'
    and '-'; never a shipped model's name outside the package's weights folder; only those
    inside it."""
    from ..models.registry import WEIGHTS_DIR

    if not name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or name.endswith("+x8"):
        raise InputError(f"bad model name {name!r}: use letters, digits, '.', '_' and '-'")
    shipped = name in {e.name for e in _registered()}
    in_package = Path(out_dir).resolve() == WEIGHTS_DIR.resolve()
    if shipped and not in_package:
        raise InputError(f"{name!r} is the name of a shipped model; choose another name "
                         "(your model would hide it)")
    if in_package and not shipped:
        raise InputError(f"the package's weights folder holds only registered models; export "
                         f"{name!r} to the user model folder (leave out --out)")


def _status(cfg: TrainConfig, step: int) -> str:
    if step >= cfg.steps:
        return "final"
    if cfg.minutes is not None:
        return f"time-bounded: {step} steps (at most {cfg.minutes:g} minutes per invocation)"
    return f"interim: step {step} of {cfg.steps}"


def _validation(cfg: TrainConfig, ckpt: dict) -> dict:
    """The card's validation block: what was measured, against what, on which images."""
    held = ckpt.get("held_out", cfg.val_count)
    out = {"psnr_db": ckpt.get("last_val_psnr"), "at_step": ckpt.get("last_val_step"),
           "crop": cfg.val_crop, "outputs_clipped": True}
    if cfg.data == "sr":
        out.update(degradation=f"bicubic x{cfg.scale} (8-bit)", metric="RGB PSNR, no border shave",
                   reference="the held-out originals", images=f"last {held} of the sorted training folder (held out)")
    elif cfg.data == "folder" and cfg.noise in ("none", "real"):
        out.update(reference="held-out noisy photos (self-supervised figure, see VALIDATION.txt)",
                   images=f"last {held} of the sorted training folder (held out)" if held != 0 else
                   "none: every photo was trained on (no validation)")
    elif cfg.data == "folder":
        out.update(noise=default_val_noise(cfg), reference="clean held-out images",
                   images=f"last {held} of the sorted training folder (held out)")
    else:
        clean = cfg.val_clean is not None
        out.update(noise="the pairs' own", images=f"last {held} pairs by name (held out)",
                   reference=f"clean images in {cfg.val_clean}" if clean else
                   "the second noisy view (the figure sits below a clean-reference PSNR)")
    return out


def _describe_noise(cfg: TrainConfig) -> str:
    if cfg.data == "sr":
        return (f"none: inputs downscaled x{cfg.scale} by MATLAB-convention bicubic imresize on "
                "8-bit images (denoise.degrade.bicubic_down, uint8=True)")
    if cfg.data == "folder":
        return cfg.noise if cfg.noise not in ("none", "real") else "real (the images are noisy photos)"
    return "real noisy pairs"


def _describe_data(cfg: TrainConfig) -> str:
    if cfg.data in ("folder", "sr"):
        held = "a tenth (at most 20)" if cfg.val_count is None else cfg.val_count
        kind = "noisy photos" if cfg.data == "folder" and cfg.noise in ("none", "real") else "clean images"
        which = "all of them" if held == 0 else f"minus the last {held} held out for validation"
        return (f"{Path(cfg.train_dir).name} ({kind} of {cfg.train_dir}, {which}), "
                f"{'gray' if cfg.gray else 'as stored'}")
    if cfg.data == "pairs":
        return f"noisy pairs in {cfg.train_dir}" + (f" and {cfg.target_dir}" if cfg.target_dir else "")
    return f"EE-559 pair file {cfg.pkl}"


def _registered():
    from ..models.registry import list_models

    return list_models(user=False)
