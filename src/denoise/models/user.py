"""The user's own models: a folder of exported weights, and models named by a path.

``denoise export-weights RUN NAME`` writes ``NAME.safetensors`` and its model card
``NAME.json`` into the user model folder (never into the installed package):

* ``$DENOISE_MODELS`` when set;
* else ``$XDG_DATA_HOME/denoise/models`` (default ``~/.local/share/denoise/models``), or
  ``%LOCALAPPDATA%\\denoise\\models`` on Windows.

The models there are listed and created by name like the shipped ones (a name that would
shadow a shipped model is refused at export and ignored here). ``denoise fit`` keeps its
run folders in the sub-folder ``fits/`` and exports its models here. A model may also be named
by a path: a ``.safetensors`` file with its card beside it, a training run folder (its
latest ``checkpoint.pt``) or a checkpoint file.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

from ..errors import ModelError

ENV_VAR = "DENOISE_MODELS"
CHECKPOINT = "checkpoint.pt"


def user_models_dir() -> Path:
    """The user model folder (it may not exist yet)."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "denoise" / "models"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "denoise" / "models"


def read_card(path: Path) -> dict:
    """The model card ``path`` (a JSON object naming its architecture); ModelError if not."""
    if not path.is_file():
        raise ModelError(f"no model card {path.name} beside the weights; export them with "
                         "'denoise export-weights', which writes both")
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the model card {path}: {exc}") from None
    if not isinstance(card, dict) or not isinstance(card.get("architecture"), str):
        raise ModelError(f"the model card {path} names no architecture")
    return card


def _entry(name: str, weights: Path, card: dict, *, user: bool):
    """A registry entry for exported weights: the card's architecture with its arguments."""
    from .registry import ModelEntry, get_entry

    try:
        arch = get_entry(card["architecture"], user=False)
    except ModelError:
        raise ModelError(f"{weights.name}: its card names the architecture "
                         f"{card['architecture']!r}, which this version of denoise does not know") from None
    kwargs = dict(arch.defaults)
    if isinstance(card.get("channels"), int):
        kwargs["channels"] = card["channels"]
    kwargs.update(card.get("model_kwargs") or {})
    summary = card.get("summary") or f"user model: {arch.name} trained on {card.get('data', '?')}"
    return ModelEntry(name, arch.factory, "learned", str(summary).split(" (")[0], kwargs,
                      arch.requires, arch.architecture or arch.name, weights.parent, user=user)


def list_user_models() -> list:
    """The models in the user folder (shipped names are ignored with a warning)."""
    from .registry import _REGISTRY, _ensure_loaded

    _ensure_loaded()
    folder = user_models_dir()
    if not folder.is_dir():
        return []
    entries = []
    for weights in sorted(folder.glob("*.safetensors")):
        name = weights.stem
        if name in _REGISTRY:
            warnings.warn(f"{weights} has the name of a shipped model and is ignored; "
                          "rename both of its files", stacklevel=2)
            continue
        try:
            entries.append(_entry(name, weights, read_card(weights.with_suffix(".json")), user=True))
        except ModelError as exc:
            warnings.warn(f"user model {name} is ignored: {exc}", stacklevel=2)
    return entries


def looks_like_path(name: str) -> bool:
    """Whether a model name is meant as a path (a separator, a known suffix, or it exists)."""
    return (os.sep in name or "/" in name or name.endswith((".safetensors", ".pt"))
            or Path(name).exists())


def model_from_path(path: str | Path) -> tuple[str, torch.nn.Module]:
    """``(label, model in eval mode)`` for weights named by a path (see the module doc)."""
    from .registry import load_weights

    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / CHECKPOINT).is_file():
            raise ModelError(f"{path} is a folder without {CHECKPOINT}: pass a training run "
                             "folder, a checkpoint or a .safetensors file")
        path = path / CHECKPOINT
    if not path.is_file():
        raise ModelError(f"no such model file or folder: {path}")
    if path.suffix == ".safetensors":
        entry = _entry(path.stem, path, read_card(path.with_suffix(".json")), user=True)
        model = entry.factory(**entry.defaults)
        load_weights(model, path)
        return str(path), model.eval()
    return str(path), _from_checkpoint(path)


def _from_checkpoint(path: Path) -> torch.nn.Module:
    """The model of a training checkpoint (its config names the architecture)."""
    from .registry import get_entry

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        config = json.loads(ckpt["config"])
        state = ckpt["model"]
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one line
        raise ModelError(f"{path} is not a denoise training checkpoint ({str(exc).splitlines()[0]})") from None
    entry = get_entry(config["model"], user=False)
    kwargs = dict(config.get("model_kwargs") or {})
    if config.get("scale"):  # an upscaler trained at another scale than its entry's default
        kwargs.setdefault("scale", config["scale"])
    model = build_fitting(entry, kwargs, state, what=str(path))
    return model.eval()


def build_fitting(entry, model_kwargs: dict, state: dict, *, what: str) -> torch.nn.Module:
    """The entry's model with ``model_kwargs``, for 1 or 3 channels, whichever ``state``
    fits, with the state loaded; ModelError naming the mismatch when neither does."""
    tried = [entry.defaults["channels"]] if "channels" in entry.defaults else [1, 3]
    if "channels" in model_kwargs:
        tried = [model_kwargs["channels"]]
    error = ""
    for channels in tried:
        model = entry.factory(**{**entry.defaults, **model_kwargs, "channels": channels})
        try:
            model.load_state_dict(state)
            return model
        except RuntimeError as exc:
            error = str(exc).splitlines()[0]
    raise ModelError(f"{what}: the weights do not fit {entry.name}: {error}")
