"""The model registry: register, create by name with overrides, list.

Two kinds of names:

* an **architecture** or a classical method, registered once with its factory
  (:func:`register_model`, a decorator on the class or function);
* a **pretrained model**: weights shipped in ``denoise/weights/NAME.safetensors`` with a
  model card ``NAME.json`` beside them, made by an architecture with fixed keyword
  arguments (:func:`register_weights`). The keyword arguments are written only there.

Every factory returns a :class:`denoise.models.base.Restorer`. Weights are resolved from
the package, never from the network.
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

import torch

from ..errors import MissingDependencyError, ModelError

WEIGHTS_DIR = Path(str(resources.files("denoise"))) / "weights"


@dataclass(frozen=True)
class ModelEntry:
    """One registered name."""

    name: str
    factory: Callable[..., torch.nn.Module]
    kind: str  # "learned" or "classical"
    description: str
    defaults: dict = field(default_factory=dict)
    requires: str | None = None  # an optional package needed (e.g. "bm3d")
    architecture: str | None = None  # for pretrained models: the architecture's name
    weights_dir: Path = WEIGHTS_DIR
    user: bool = False  # a model of the user's own (see :mod:`denoise.models.user`)

    @property
    def pretrained(self) -> bool:
        """Whether the name stands for trained weights (not a bare architecture)."""
        return self.architecture is not None

    @property
    def weights_path(self) -> Path:
        return self.weights_dir / f"{self.name}.safetensors"

    @property
    def card_path(self) -> Path:
        return self.weights_dir / f"{self.name}.json"

    def has_weights(self) -> bool:
        return self.pretrained and self.weights_path.is_file()

    def card(self) -> dict | None:
        if not self.card_path.is_file():
            return None
        return json.loads(self.card_path.read_text())

    def missing_extras(self) -> list[str]:
        """The optional packages this model needs and this install lacks."""
        return [self.requires] if self.requires and importlib.util.find_spec(self.requires) is None else []

    def missing(self) -> list[str]:
        """Why the model cannot run here (empty when it can)."""
        reasons = [f"needs pip install 'denoise[{extra}]'" for extra in self.missing_extras()]
        if self.kind == "learned" and not self.pretrained:
            reasons.append("architecture only: train it (denoise train" + (")" if self.scale == 1 else
                           " --data sr --scale S)"))
        elif self.kind == "learned" and not self.has_weights():
            reasons.append("no shipped weights")
        return reasons

    def available(self) -> bool:
        """True when the model can run here: weights shipped (learned) and extras installed."""
        return not self.missing()

    @property
    def scale(self) -> int:
        """Output pixels per input pixel along each side (1 for denoisers)."""
        return int(self.defaults.get("scale", getattr(self.factory, "scale", 1)))

    @property
    def channels(self) -> int | None:
        """The channel count the name is fixed to (None: any, or set by ``channels=``)."""
        return self.defaults.get("channels")


_REGISTRY: dict[str, ModelEntry] = {}


def _add(entry: ModelEntry) -> None:
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} registered twice")
    _REGISTRY[entry.name] = entry


def register_model(name: str, *, kind: str = "learned", description: str = "",
                   requires: str | None = None, **defaults):
    """Decorator registering a model factory (a class or a function) under ``name``;
    ``defaults`` are keyword arguments passed to it unless overridden."""

    def deco(factory):
        doc = description or (factory.__doc__ or "").strip().split("\n")[0]
        _add(ModelEntry(name, factory, kind, doc, dict(defaults), requires))
        return factory

    return deco


def register_weights(name: str, architecture: str, *, description: str, **kwargs) -> None:
    """Register the shipped weights ``NAME.safetensors``: ``architecture`` built with ``kwargs``."""
    arch = _REGISTRY[architecture]
    _add(ModelEntry(name, arch.factory, arch.kind, description, {**arch.defaults, **kwargs},
                    arch.requires, architecture))


def _ensure_loaded():
    # Importing the built-in model modules runs their registrations.
    from . import _builtin  # noqa: F401


def list_models(available_only: bool = False, *, user: bool = True) -> list[ModelEntry]:
    """Every registered name (learned first) and, with ``user``, the user's own models
    (:mod:`denoise.models.user`); or only those that can run here."""
    from .user import list_user_models

    _ensure_loaded()
    entries = sorted(_REGISTRY.values(), key=lambda e: (e.kind != "learned", not e.pretrained, e.name))
    if user:
        entries += list_user_models()
    return [e for e in entries if e.available()] if available_only else entries


def get_entry(name: str, *, user: bool = True) -> ModelEntry:
    """The entry of a registered name or, with ``user``, of a user model."""
    _ensure_loaded()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if user:
        from .user import list_user_models

        for entry in list_user_models():
            if entry.name == name:
                return entry
    known = ", ".join(sorted(_REGISTRY))
    raise ModelError(f"unknown model {name!r}; available models: {known} (and your own: "
                     "'denoise models' lists them; a path to weights or a run folder works too)")


def load_weights(model: torch.nn.Module, path: str | Path, *, strict: bool = True) -> torch.nn.Module:
    """Load safetensors weights into ``model`` with a clear error on any mismatch."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"cannot read weights {path}: {exc}") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if strict and (missing or extra):
        raise ModelError(
            f"weights {path.name} do not match the model: missing {missing[:5]}, unexpected {extra[:5]}")
    for k, v in state.items():
        if k in own and own[k].shape != v.shape:
            raise ModelError(
                f"weights {path.name}: {k} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}")
    model.load_state_dict(state, strict=strict)
    return model


def save_weights(path: str | Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None,
                 *, overwrite: bool = True) -> Path:
    """Write a state dict as safetensors, atomically, with a plain file's permissions."""
    from safetensors.torch import save

    from ..utils import output_file

    with output_file(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(save({k: v.detach().cpu().contiguous() for k, v in state.items()}, metadata=metadata))
    return Path(path)


def create_model(name: str, *, pretrained: bool = True, weights: str | Path | None = None,
                 **overrides) -> torch.nn.Module:
    """Create a registered model by name, in eval mode.

    A pretrained name loads its shipped weights unless ``pretrained=False`` (then only its
    architecture, with its keyword arguments); ``weights=PATH`` loads a safetensors file
    instead. An architecture name with ``pretrained=True`` and no ``weights`` is an error.
    ``overrides`` replace the registered keyword arguments.
    """
    entry = get_entry(name)
    extras = entry.missing_extras()
    if extras:
        raise MissingDependencyError(f"model {name!r} needs the optional package {extras[0]!r}: "
                                     f"pip install 'denoise[{extras[0]}]'")
    try:
        model = entry.factory(**{**entry.defaults, **overrides})
    except (TypeError, ValueError) as exc:
        from ..errors import InputError

        raise InputError(f"cannot build model {name!r} with {overrides or 'its defaults'}: {exc}") from None
    if weights is not None:
        load_weights(model, weights)
    elif entry.kind == "learned" and pretrained:
        if not entry.has_weights():
            raise ModelError(f"model {name!r} has no shipped weights; pass pretrained=False or weights=PATH")
        load_weights(model, entry.weights_path)
    model.eval()
    return model
