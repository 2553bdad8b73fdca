"""The models the page offers: the registry, what each model needs, and its speed here.

Only names listed by :func:`denoise.models.registry.list_models` (and "default") are
ever run: a model name from the client is looked up here, never passed on as it came
(the inference layer also takes paths to weights, which a client must not name).
"""
from __future__ import annotations

import threading

from ..errors import DenoiseError
from ..inference import DEFAULT, ENSEMBLE_SUFFIX, default_model_name, load
from ..models.base import contract
from .config import HTTPProblem

#: The tasks, by the models' scale: denoisers keep the size, super-resolution enlarges.
TASKS = {"denoise": "Denoise", "upscale": "Upscale (super-resolution)"}


def _noise_map(entry) -> bool:
    """Whether the model takes a noise-level map (an FFDNet): the page then offers a
    strength, which scales the map."""
    from ..models.ffdnet import FFDNet

    factory = entry.factory
    return isinstance(factory, type) and issubclass(factory, FFDNet)


class Catalog:
    """The registry as the page sees it, built once; speeds measured by the runs here."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._lock = threading.Lock()
        self._models: dict[str, dict] | None = None
        self._speed: dict[str, float] = {}  # seconds per megapixel, last run

    def models(self) -> dict[str, dict]:
        """Every registered model by name: what the page shows and what a job needs."""
        with self._lock:
            if self._models is None:
                self._models = self._build()
            return self._models

    def _build(self) -> dict[str, dict]:
        from ..cli.models import card_summary
        from ..models.registry import list_models

        found = {}
        for entry in list_models():
            item = {"name": entry.name, "kind": entry.kind, "description": entry.description,
                    "available": entry.available(), "status": "; ".join(entry.missing()) or "ready",
                    "channels": entry.channels, "card": "", "uses_sigma": False,
                    "noise_map": False, "scale": 1, "task": "denoise"}
            try:
                item["card"] = card_summary(entry.card()) if entry.pretrained else ""
            except (OSError, ValueError):  # an unreadable card: the model may still run
                item["card"] = ""
            if item["available"]:
                try:
                    _, net = load(entry.name, entry.channels or 3, self.device)
                    c = contract(net)
                except DenoiseError as exc:
                    item.update(available=False, status=" ".join(str(exc).split()))
                else:
                    item.update(uses_sigma=c.uses_sigma, scale=c.scale,
                                task="denoise" if c.scale == 1 else "upscale",
                                noise_map=c.uses_sigma and _noise_map(entry))
            found[entry.name] = item
        return found

    def public(self) -> dict:
        """The catalog for the page: tasks that have a model, models with their speed."""
        models = self.models()
        listed = []
        for name, item in models.items():
            seconds = self._speed.get(name)
            listed.append({**item, "seconds_per_megapixel": None if seconds is None else round(seconds, 3)})
        tasks = [{"id": key, "label": label} for key, label in TASKS.items()
                 if any(m["available"] and m["task"] == key for m in models.values())]
        defaults = {}
        for channels in (1, 3):
            name = default_model_name(channels)
            defaults["gray" if channels == 1 else "color"] = name if name in models else None
        return {"tasks": tasks, "models": listed, "defaults": defaults,
                "ensemble_suffix": ENSEMBLE_SUFFIX}

    def resolve(self, name, channels: int, ensemble: bool = False) -> tuple[str, dict]:
        """``(name to run, its catalog entry)`` for a client's model choice; 422 for a name
        outside the registry, a model that cannot run here or does not take the image."""
        if not isinstance(name, str) or not name:
            raise HTTPProblem(422, "choose a model: 'model' must be a model name from /api/models")
        models = self.models()
        if name == DEFAULT:
            name = default_model_name(channels)
        item = models.get(name)
        if item is None:
            shown = name if len(name) <= 40 else name[:40] + "..."
            ready = ", ".join(n for n, m in models.items() if m["available"])
            raise HTTPProblem(422, f"unknown model {shown!r}; choose one of: {ready}")
        if not item["available"]:
            raise HTTPProblem(422, f"model {name!r} cannot run here: {item['status']}")
        if item["channels"] is not None and item["channels"] != channels:
            kind = "gray" if channels == 1 else "colour"
            raise HTTPProblem(422, f"model {name!r} does not take {kind} images; choose another one")
        return name + (ENSEMBLE_SUFFIX if ensemble else ""), item

    def record_speed(self, name: str, megapixels: float, seconds: float) -> None:
        """Remember how long a run of ``name`` took per megapixel (shown on the page)."""
        if megapixels > 0 and seconds > 0:
            base = name[: -len(ENSEMBLE_SUFFIX)] if name.endswith(ENSEMBLE_SUFFIX) else name
            per = seconds / megapixels / (8 if base != name else 1)
            with self._lock:
                self._speed[base] = per
