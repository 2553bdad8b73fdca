"""The training runs behind the shipped course weights (``denoise ee559 train N``).

A run trains ``denoise.ee559.projectN.Model`` with its own ``train`` (the code the
course calls) on ``train_data.pkl``, minus its last ``holdout`` pairs. After each epoch
it scores the held-out pairs: the PSNR of the output for the first noisy view against
the second, independent one. Its expectation is a decreasing function of the true error
(the second view's noise adds a constant to the mean squared error), so the best epoch
is chosen without a clean image and without ``val_data.pkl``; the latter is only scored
once, at the end, for the report. The chosen weights go to ``NAME.safetensors`` with a
model card ``NAME.json`` (data recipe, training setup, per-epoch history, scores,
hardware, wall time and the command that reproduces the run).
"""
from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

import torch

from ..errors import InputError
from ..models.registry import WEIGHTS_DIR, save_weights
from ..training.export import hardware_description
from ..utils import write_json
from .course import CourseModel
from .data import RECIPE_FILE, TRAIN_FILE, VAL_FILE, course_psnr, load_course_pair

__all__ = ["pretrain", "score", "project_model"]


def project_model(project: int, **kwargs) -> CourseModel:
    """``denoise.ee559.projectN.Model(**kwargs)`` for ``project`` 1 or 2."""
    if project not in (1, 2):
        raise InputError(f"the course has mini-projects 1 and 2, got {project!r}")
    return importlib.import_module(f"denoise.ee559.project{project}").Model(**kwargs)


def score(model: CourseModel, noisy: torch.Tensor, reference: torch.Tensor, batch: int = 100) -> float:
    """Mean per-image PSNR of ``model.predict`` on ``noisy`` against ``reference`` (0-255
    values), predicting ``batch`` images at a time as the course does."""
    outputs = torch.cat([model.predict(noisy[i:i + batch]) for i in range(0, noisy.shape[0], batch)])
    return course_psnr(outputs, reference)


def pretrain(project: int, data_dir: str | Path, *, epochs: int, holdout: int = 1000,
             name: str | None = None, weights_dir: str | Path | None = None, seed: int = 0,
             command: str | None = None, log=print) -> Path:
    """Train mini-project ``project``'s model, keep its best epoch, write weights and card.

    Returns the weights path (``weights_dir/NAME.safetensors``, by default the package's
    ``weights/ee559-projectN``).
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InputError(f"epochs must be a positive int, got {epochs!r}")
    data_dir = Path(data_dir)
    inputs, targets = load_course_pair(data_dir / TRAIN_FILE)
    val_noisy, val_clean = load_course_pair(data_dir / VAL_FILE)
    if not 0 < holdout < inputs.shape[0]:
        raise InputError(f"holdout must be between 1 and {inputs.shape[0] - 1}, got {holdout}")
    n = inputs.shape[0] - holdout
    model = project_model(project, seed=seed)
    name = name or model.weights_name
    out_dir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    if not out_dir.is_dir():
        raise InputError(f"weights folder not found: {out_dir}")

    history: list[dict] = []
    best: dict = {"score": float("-inf")}
    start = time.perf_counter()

    def on_epoch(epoch: int, loss: float) -> None:
        held = score(model, inputs[n:], targets[n:])
        history.append({"epoch": epoch, "loss": round(loss, 6), "holdout_psnr_db": round(held, 4),
                        "wall_s": round(time.perf_counter() - start, 1)})
        log(f"epoch {epoch}/{epochs}: loss {loss:.5f}, held-out PSNR {held:.3f} dB (vs the second "
            f"noisy view), {time.perf_counter() - start:.0f} s")
        if held > best["score"]:
            best.update(score=held, epoch=epoch, state=model.state_dict())

    model.train(inputs[:n], targets[:n], epochs, on_epoch=on_epoch)
    wall = time.perf_counter() - start
    model.load_state_dict(best["state"])
    val_psnr = score(model, val_noisy, val_clean)
    log(f"kept epoch {best['epoch']}; val_data.pkl PSNR {val_psnr:.2f} dB "
        f"(noisy input {course_psnr(val_noisy, val_clean):.2f} dB)")

    card = _card(model, project, name, data_dir, epochs=epochs, n_train=n, holdout=holdout,
                 seed=seed, best=best, history=history, val_psnr=val_psnr,
                 noisy_psnr=course_psnr(val_noisy, val_clean), wall=wall, command=command)
    weights = save_weights(out_dir / f"{name}.safetensors", best["state"],
                                 {"name": name, "epoch": str(best["epoch"])})
    write_json(out_dir / f"{name}.json", card, sort_keys=True)
    return weights


def _card(model: CourseModel, project: int, name: str, data_dir: Path, *, epochs: int, n_train: int,
          holdout: int, seed: int, best: dict, history: list[dict], val_psnr: float,
          noisy_psnr: float, wall: float, command: str | None) -> dict:
    """The model card of a run (see the module docstring)."""
    recipe_path = data_dir / RECIPE_FILE
    recipe = json.loads(recipe_path.read_text()) if recipe_path.is_file() else {}
    module = type(model).__module__
    return {
        "name": name,
        "summary": f"EE-559 mini-project {project} ({module}.Model), trained with noisy targets "
                   f"only on the rebuilt course data; val_data.pkl PSNR {val_psnr:.2f} dB "
                   f"(noisy input {noisy_psnr:.2f} dB)",
        "project": project,
        "model": f"{module}.Model",
        "data": {"train": f"{TRAIN_FILE}: the first {n_train} pairs (the last {holdout} held out)",
                 "recipe": {k: recipe[k] for k in ("sources", "seed", "sigma_255", "noisy_val_psnr_db",
                                                    "n_train", "n_val", "command") if k in recipe},
                 "built_by": "denoise data ee559 (recipe: denoise.ee559.data)"},
        "targets": "noisy (Noise2Noise: the second view)",
        "training": {"epochs": epochs, "batch_size": model.batch_size, "lr": model.lr,
                     "schedule": model.schedule, "rampdown": model.rampdown,
                     "optimizer": type(model.optimizer).__name__, "seed": seed,
                     "augmentation": "random symmetries of the square, random swap of the views"},
        "selection": {"criterion": "PSNR of the output for the first noisy view against the second, "
                                   f"on the {holdout} held-out training pairs",
                      "best_epoch": best["epoch"], "holdout_psnr_db": round(best["score"], 4)},
        "history": history,
        "validation": {"psnr_db": round(val_psnr, 4), "noisy_input_psnr_db": round(noisy_psnr, 4),
                       "set": f"{VAL_FILE} (1000 crops, scored once after selection)",
                       "outputs_clipped": True},
        "wall_time_s": round(wall, 1),
        "hardware": hardware_description(str(model.device), torch.get_num_threads()),
        "reproduce": command,
        "torch": torch.__version__,
    }
