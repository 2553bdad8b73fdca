"""A small model registry: register_model / create_model / list_models.

Every denoiser is a ``torch.nn.Module`` with ``forward(x, sigma=None)`` where ``x`` is a
float32 tensor (N, C, H, W) in [0, 1] and ``sigma`` the noise standard deviation on the
0-1 scale (a float or a tensor of shape (N,)); models that do not need sigma ignore it.

Trained weights live in ``denoise/weights/NAME.safetensors`` with a model card
``NAME.json`` beside them; they are resolved from the package, never from the network.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

import torch

from ..errors import ModelError

WEIGHTS_DIR = Path(str(resources.files("denoise"))) / "weights"


@dataclass
class ModelEntry:
    name: str
    factory: Callable[..., torch.nn.Module]
    kind: str  # "learned" or "classical"
    description: str
    defaults: dict = field(default_factory=dict)
    requires: str | None = None  # optional import needed (e.g. "bm3d")

    @property
    def weights_path(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.safetensors"

    @property
    def card_path(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.json"

    def has_weights(self) -> bool:
        return self.weights_path.is_file()

    def card(self) -> dict | None:
        if not self.card_path.is_file():
            return None
        return json.loads(self.card_path.read_text())

    def available(self) -> bool:
        """True when the model can run here: weights shipped (learned) and extras installed."""
        if self.requires is not None:
            import importlib.util

            if importlib.util.find_spec(self.requires) is None:
                return False
        return self.kind != "learned" or self.has_weights()


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, kind: str = "learned", description: str = "",
                   requires: str | None = None, **defaults):
    """Decorator registering a model factory (a class or a function) under ``name``.

    ``defaults`` are keyword arguments passed to the factory unless overridden.
    """

    def deco(factory):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        doc = description or (factory.__doc__ or "").strip().split("\n")[0]
        _REGISTRY[name] = ModelEntry(name, factory, kind, doc, dict(defaults), requires)
        return factory

    return deco


def _ensure_loaded():
    # Importing the package registers every built-in model.
    from . import _builtin  # noqa: F401


def list_models(available_only: bool = False) -> list[ModelEntry]:
    _ensure_loaded()
    entries = sorted(_REGISTRY.values(), key=lambda e: (e.kind != "learned", e.name))
    return [e for e in entries if e.available()] if available_only else entries


def get_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise ModelError(f"unknown model {name!r}; available models: {known}")
    return _REGISTRY[name]


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


def create_model(name: str, *, pretrained: bool = True, weights: str | Path | None = None,
                 **overrides) -> torch.nn.Module:
    """Create a registered model by name.

    For learned models ``pretrained=True`` loads the shipped weights (an error if none
    ship); ``weights=PATH`` loads a user's safetensors file instead.
    """
    entry = get_entry(name)
    if entry.requires is not None:
        import importlib.util

        if importlib.util.find_spec(entry.requires) is None:
            from ..errors import MissingDependencyError

            raise MissingDependencyError(
                f"model {name!r} needs the optional package {entry.requires!r}: "
                f"pip install 'denoise[{entry.requires}]'")
    kwargs = {**entry.defaults, **overrides}
    model = entry.factory(**kwargs)
    if weights is not None:
        load_weights(model, weights)
    elif entry.kind == "learned" and pretrained:
        if not entry.has_weights():
            raise ModelError(f"model {name!r} has no shipped weights; pass pretrained=False or weights=PATH")
        load_weights(model, entry.weights_path)
    model.eval()
    return model
