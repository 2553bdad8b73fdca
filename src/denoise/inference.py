"""THE way to run a model: every front-end (the API, ``denoise run``, bench, demo, the
course API, the web page) calls :func:`restore`.

One policy for everything:

* **names** are parsed once (:func:`parse_model_name`): a registered name, a user model
  (:mod:`denoise.models.user`), a path (weights with their card, a run folder or a
  checkpoint) or "default" (the shipped learned model for the image's channel count, else
  ``dct``), optionally with the suffix ``+x8`` (the geometric self-ensemble);
* **models** are created once per (name, device) and cached; the cached module is never
  moved or changed by a caller;
* **sigma** is on the 0-1 scale here and everywhere below (the 0-255 scale exists only
  at the command line, on the web page and in noise specs). A model that uses a noise
  level and gets none has it estimated once per image, from the whole image, before any
  tiling (so all tiles of an image share it);
* **tiling**: an image whose longer side exceeds ``tile`` pixels (default
  :data:`DEFAULT_TILE`) runs in overlapping tiles of that size (:mod:`denoise.tiling`),
  with the model's receptive field as overlap: the result equals the untiled one.
  ``tile=None`` never tiles.
"""
from __future__ import annotations

import functools
import time
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from .errors import InputError, MissingDependencyError, ModelError
from .models.base import contract
from .models.ensemble import SelfEnsemble
from .models.registry import WEIGHTS_DIR, create_model, get_entry
from .models.user import looks_like_path, model_from_path
from .tiling import tiled
from .utils import check_image, check_sigma

#: The name that stands for the package's default model.
DEFAULT = "default"
#: The learned models "default" prefers, by channel count, when their weights ship.
DEFAULT_LEARNED = {1: "n2n-unet-gray", 3: "n2n-unet-color"}
#: The fallback when no learned weights ship: fast, training-free, any size.
FALLBACK = "dct"
#: The models for real camera photos, by channel count (see :func:`photo_model_name`).
PHOTO_MODELS = {1: "real-gray", 3: "real-color"}
#: File formats that mark an image as a camera photo (with or without EXIF).
PHOTO_FORMATS = ("JPEG", "MPO")
#: The benchmark's ranking "default" follows when it exists (``denoise report --update-default``).
RANKING_FILE = WEIGHTS_DIR / "ranking.json"
#: The name suffix that asks for the self-ensemble over the eight flips and rotations.
ENSEMBLE_SUFFIX = "+x8"
#: Images with a longer side above this many pixels run in tiles unless told otherwise.
DEFAULT_TILE = 1024


@dataclass(frozen=True)
class ModelName:
    """A model name, parsed: the registered (or "default") base and its options."""

    base: str
    ensemble: bool = False

    def __str__(self) -> str:
        return self.base + (ENSEMBLE_SUFFIX if self.ensemble else "")

    def resolved(self, channels: int) -> "ModelName":
        """The name with "default" replaced by the model it stands for."""
        if self.base != DEFAULT:
            return self
        return ModelName(default_model_name(channels), self.ensemble)


def parse_model_name(name: str | ModelName) -> ModelName:
    """``"dct+x8"`` -> ModelName("dct", ensemble=True); InputError for a non-string."""
    if isinstance(name, ModelName):
        return name
    if not isinstance(name, str) or not name:
        raise InputError(f"a model name must be a non-empty string, got {name!r}")
    if name.endswith(ENSEMBLE_SUFFIX):
        return ModelName(name[: -len(ENSEMBLE_SUFFIX)], True)
    return ModelName(name)


def default_model_name(channels: int) -> str:
    """The model "default" stands for with images of ``channels`` channels: the first model
    of the ranking in :data:`RANKING_FILE` for that channel count that can run here (a
    shipped model: weights present, extras installed) and takes such images; without one,
    the shipped learned model of :data:`DEFAULT_LEARNED`, else :data:`FALLBACK`."""
    import json

    try:
        ranked = json.loads(RANKING_FILE.read_text())["default"][str(channels)]
    except (OSError, ValueError, KeyError, TypeError):  # no ranking file, or a malformed one
        ranked = []
    for candidate in ranked if isinstance(ranked, list) else []:
        try:
            entry = get_entry(candidate, user=False) if isinstance(candidate, str) else None
        except ModelError:  # not registered in this build
            continue
        if entry is not None and entry.scale == 1 and entry.channels in (None, channels) and entry.available():
            return candidate
    name = DEFAULT_LEARNED.get(channels)
    try:
        if name is not None and get_entry(name).has_weights():
            return name
    except ModelError:  # the learned model is not registered in this build
        pass
    return FALLBACK


def is_photo(info) -> bool:
    """Whether an image read by :func:`denoise.io.read_image` looks like a camera photo:
    a JPEG, or any file carrying EXIF (the camera's metadata)."""
    return bool(getattr(info, "exif", None)) or getattr(info, "format", None) in PHOTO_FORMATS


def photo_model_name(channels: int) -> str | None:
    """The model for real camera photos of ``channels`` channels (:data:`PHOTO_MODELS`),
    or None when its weights are not shipped in this build."""
    name = PHOTO_MODELS.get(channels)
    try:
        return name if name is not None and get_entry(name, user=False).available() else None
    except ModelError:  # not registered in this build
        return None


def check_model(name: str | ModelName) -> ModelName:
    """The parsed name; a one-line error when it is unknown or cannot run here (front-ends
    call this before any work starts)."""
    parsed = parse_model_name(name)
    if parsed.base == DEFAULT:
        return parsed
    if looks_like_path(parsed.base):
        model_for(ModelName(parsed.base))  # a one-line error if it cannot be loaded
        return parsed
    entry = get_entry(parsed.base)  # ModelError listing the known names
    reasons = entry.missing()
    if reasons:
        kind = MissingDependencyError if entry.missing_extras() else ModelError
        raise kind(f"model {parsed.base!r} cannot run here: {'; '.join(reasons)} "
                   "('denoise models' lists the ready ones)")
    return parsed


def check_denoiser(name: str | ModelName) -> ModelName:
    """:func:`check_model`, and a one-line error for a model that upscales (scale > 1): the
    denoising front-ends (run, bench, demo) take denoisers; ``denoise upscale`` the others."""
    parsed = check_model(name)
    if parsed.base != DEFAULT and not looks_like_path(parsed.base):
        scale = get_entry(parsed.base).scale
        if scale != 1:
            raise InputError(f"model {parsed.base!r} upscales by {scale}, it does not denoise; "
                             f"use denoise upscale --scale {scale} -m {parsed.base}")
    return parsed


def supports_channels(name: str | ModelName, channels: int) -> bool:
    """Whether model ``name`` takes images with ``channels`` channels ("default" always does)."""
    parsed = parse_model_name(name)
    if parsed.base == DEFAULT:
        return True
    if looks_like_path(parsed.base):
        fixed = getattr(model_for(ModelName(parsed.base)), "channels", None)
    else:
        fixed = get_entry(parsed.base).channels
    return fixed is None or fixed == channels


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/"auto": CUDA, else MPS, else the CPU; a named device must be available."""
    if isinstance(device, torch.device):
        return device
    text = "auto" if device is None else str(device).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} is not available here (no CUDA); use --device cpu or auto")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(f"device {device!r} is not available here (no MPS); use --device cpu or auto")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"unsupported device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    return dev


@functools.lru_cache(maxsize=8)
def _cached(name: ModelName, device: str) -> nn.Module:
    if looks_like_path(name.base):
        net = model_from_path(name.base)[1].to(device)
    else:
        net = create_model(name.base).to(device)
    return SelfEnsemble(net) if name.ensemble else net


def model_for(name: str | ModelName, device: str | torch.device | None = "cpu") -> nn.Module:
    """The shared, cached module of a parsed name (a registered name or a path; "default"
    must be resolved first). Do not move or modify it."""
    parsed = parse_model_name(name)
    return _cached(parsed, str(resolve_device(device)))


def load(name: str | ModelName, channels: int, device: str | torch.device | None = "cpu"
         ) -> tuple[ModelName, nn.Module]:
    """``(resolved name, ready model)`` for images of ``channels`` channels; created once
    per name and device. Do not move or modify the returned module: it is shared."""
    parsed = parse_model_name(name).resolved(channels)
    if not supports_channels(parsed, channels):
        kind = "gray" if channels == 1 else "color"
        raise InputError(f"model {str(parsed)!r} does not take {kind} images; "
                         "choose another one (see 'denoise models')")
    check_model(parsed)
    return parsed, _cached(parsed, str(resolve_device(device)))


@dataclass
class Restored:
    """What :func:`restore` returns."""

    output: torch.Tensor  # (N, C, scale*H, scale*W), clamped to [0, 1]
    model: str  # the model that ran ("default" resolved, "+x8" kept)
    sigma: torch.Tensor | float | None  # the noise level used (0-1 scale); None: blind model
    sigma_estimated: bool  # True when sigma was estimated here
    seconds: float  # wall time of the model's forward passes
    tiled: bool


def _check_strength(strength) -> None:
    if strength is None:
        return
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.05 <= strength <= 20:
        raise InputError(f"strength must be a number in [0.05, 20] (1 = the noise level as given), "
                         f"got {strength!r}")


def _warn_outside_range(net: nn.Module, name: str, sigma) -> None:
    """A warning when the noise level exceeds the model's training range."""
    top = getattr(net, "sigma_max", None) or getattr(getattr(net, "model", None), "sigma_max", None)
    if top is None:
        return
    level = float(torch.as_tensor(sigma).max())
    if level > top * 1.0001:
        warnings.warn(f"model {name} was trained for sigma in [0, {top * 255:g}] (0-255 scale); "
                      f"{level * 255:.1f} is outside that range", stacklevel=3)


def _check_tile(tile) -> None:
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
        raise InputError(f"tile must be a positive number of pixels or None, got {tile!r}")


def restore(x: torch.Tensor, model: str | ModelName | nn.Module = DEFAULT,
            sigma: float | torch.Tensor | None = None, *, tile: int | None = DEFAULT_TILE,
            device: str | torch.device | None = None, progress: bool = False,
            strength: float | None = None, warn_ignored_sigma: bool = True, callback=None) -> Restored:
    """Run a model on images with the package's one policy (see the module docstring).

    Args:
        x: float32 (N, C, H, W), C = 1 or 3, values in [0, 1].
        model: a registered name ("+x8" allowed), "default", or a module with the model
            contract (:class:`denoise.models.base.Restorer`).
        sigma: noise level on the 0-1 scale (a number, one per image, or a noise map for
            models that take one); None: estimated for models that use it.
        tile: tile images whose longer side exceeds this; None: never.
        device: "auto", "cpu", "cuda", "mps" or a torch.device; None: the device of ``x``
            for a module, else "auto".
        progress: a progress bar over the tiles.
        strength: scales the noise level given to a model that takes one (the noise-level
            map of FFDNet): below 1 keeps more detail, above 1 smooths more.
        warn_ignored_sigma: warn when a sigma is given to a model blind to it.
        callback: called as ``callback(done, total)`` after each tile (an untiled run is
            one tile); an exception it raises stops the run (how a front-end cancels).
    """
    check_image(x)
    _check_tile(tile)
    if isinstance(model, nn.Module):
        name, net = type(model).__name__, model
        dev = torch.device(device) if device is not None else x.device
    else:
        dev = resolve_device(device)
        parsed, net = load(model, x.shape[1], dev)
        name = str(parsed)
    c = contract(net)
    _check_strength(strength)
    estimated = False
    if isinstance(sigma, torch.Tensor) and sigma.dim() == 4:
        if not torch.isfinite(sigma).all() or (sigma < 0).any() or (sigma > 1).any():
            raise InputError("a noise map must hold finite levels in [0, 1] (0-1 scale)")
    else:
        sigma = check_sigma(sigma)
    if not c.uses_sigma:
        if sigma is not None and warn_ignored_sigma:
            warnings.warn(f"model {name} is blind to the noise level: the sigma given is ignored",
                          stacklevel=2)
        sigma = None
    elif sigma is None:
        from .estimate import estimate_sigma

        sigma, estimated = estimate_sigma(x), True
    if c.uses_sigma:
        if strength is not None:
            sigma = sigma * strength
        _warn_outside_range(net, name, sigma)
    elif strength is not None and warn_ignored_sigma:
        warnings.warn(f"model {name} takes no noise level: --strength is ignored", stacklevel=2)
    inp = x.to(dev)
    if isinstance(sigma, torch.Tensor):
        sigma = sigma.to(dev)
    use_tiles = tile is not None and max(x.shape[-2:]) > tile
    with torch.inference_mode():
        start = time.perf_counter()
        if use_tiles:
            def run(image, level, model=net.model if isinstance(net, SelfEnsemble) else net):
                return tiled(model, image, level, tile=tile, overlap=c.receptive_field, scale=c.scale,
                             align=c.alignment, progress=progress, callback=callback)

            # a self-ensemble tiles each transformed image on its own grid
            y = net(inp, sigma, run=run) if isinstance(net, SelfEnsemble) else run(inp, sigma)
        else:
            y = net(inp, sigma)
            if callback is not None:
                callback(1, 1)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - start
        y = y.clamp_(0.0, 1.0).to(x.device)
    return Restored(y, name, sigma.cpu() if isinstance(sigma, torch.Tensor) else sigma, estimated,
                    seconds, use_tiles)


def denoise(x: torch.Tensor, model: str | nn.Module = DEFAULT, sigma: float | torch.Tensor | None = None,
            *, tile: int | None = DEFAULT_TILE, device: str | torch.device | None = None,
            strength: float | None = None) -> torch.Tensor:
    """Denoise images (the public one-call API; see :func:`restore` for the arguments).

    ``sigma`` may also be a noise map (N, 1 or C, H, W) for models that take one (FFDNet):
    a noise level per pixel. Returns the restored images, shaped like ``x`` (times the
    model's scale), in [0, 1].
    """
    return restore(x, model, sigma, tile=tile, device=device, strength=strength).output
