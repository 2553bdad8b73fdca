"""Super-resolution through the one inference path: :func:`upscale` checks the scale, the
model and the image, then runs :func:`denoise.inference.restore` (tiling, devices)."""
from __future__ import annotations

import torch
from torch import nn

from .errors import InputError
from .inference import DEFAULT, DEFAULT_TILE, check_model, parse_model_name, restore
from .models.base import contract
from .models.ensemble import SelfEnsemble
from .models.registry import ModelEntry, create_model, get_entry, list_models
from .models.sr import SCALES, Bicubic  # noqa: F401  (registers the SR models)
from .models.user import looks_like_path
from .utils import check_image

#: The model ``upscale`` uses unless told otherwise (training-free, any scale).
DEFAULT_SR = "bicubic"


def check_scale(scale) -> int:
    """``scale`` as an int among :data:`SCALES`; a one-line InputError otherwise."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or \
            (isinstance(scale, float) and not scale.is_integer()):
        raise InputError(f"the scale must be an integer ({', '.join(map(str, SCALES))}), got {scale!r}")
    if int(scale) not in SCALES:
        raise InputError(f"scale {scale!r} is not supported; use {', '.join(map(str, SCALES))}")
    return int(scale)


def entry_scales(entry: ModelEntry) -> tuple[int, ...]:
    """The scales a registered name upscales by (() for denoisers)."""
    if getattr(entry.factory, "any_scale", False):
        return SCALES
    scale = entry.defaults.get("scale", 1)
    return (scale,) if scale in SCALES else ()


def models_for(scale: int) -> list[str]:
    """The names that can upscale by ``scale`` here (available: weights shipped, extras installed)."""
    return [e.name for e in list_models(available_only=True, user=False) if scale in entry_scales(e)]


def _wrong_scale(what: str, has, scale: int) -> InputError:
    ready = models_for(scale)
    return InputError(f"{what} upscales by {has}, not {scale}; models for x{scale}: "
                      f"{', '.join(ready) if ready else 'none'}")


def check_upscaler(model: str | nn.Module, scale) -> tuple[int, str | nn.Module]:
    """Check the scale and that ``model`` upscales by it, before any work; return
    ``(scale, model)`` with the model ready for :func:`restore` (a name or a module)."""
    scale = check_scale(scale)
    if isinstance(model, nn.Module):
        has = contract(model).scale
        if has != scale:
            raise _wrong_scale(f"model {type(model).__name__}", has, scale)
        return scale, model
    parsed = parse_model_name(DEFAULT_SR if model == DEFAULT else model)
    if looks_like_path(parsed.base):
        from .inference import model_for

        has = contract(model_for(type(parsed)(parsed.base))).scale
        if has != scale:
            raise _wrong_scale(f"model {parsed.base}", has, scale)
        return scale, str(parsed)
    entry = get_entry(parsed.base)
    scales = entry_scales(entry)
    if scale not in scales:
        has = ", ".join(map(str, scales)) if scales else "1 (a denoiser)"
        raise _wrong_scale(f"model {parsed.base!r}", has, scale)
    check_model(parsed)  # cannot run here (no weights, missing package): one line
    if getattr(entry.factory, "any_scale", False):
        net = create_model(parsed.base, scale=scale)
        return scale, SelfEnsemble(net) if parsed.ensemble else net
    return scale, str(parsed)


def upscale(x: torch.Tensor, scale: int, model: str | nn.Module = DEFAULT_SR, *,
            tile: int | None = DEFAULT_TILE, device: str | torch.device | None = None,
            progress: bool = False) -> torch.Tensor:
    """Upscale images ``x`` (N, C, H, W) in [0, 1] by ``scale`` (2, 3 or 4) with ``model``
    (a registered SR name, a path, or a module with the contract); returns
    (N, C, scale * H, scale * W) in [0, 1].

    InputError (one line, before any work) for a scale that is not 2, 3 or 4, a model of
    another scale (naming the models for this one), a model that does not take the
    image's channel count, or an image smaller than the model's receptive field.
    """
    check_image(x)
    scale, net = check_upscaler(model, scale)
    if isinstance(net, nn.Module):
        channels = getattr(getattr(net, "model", net), "channels", None)
        if channels is not None and channels != x.shape[1]:
            raise InputError(f"model {type(net).__name__} takes {channels}-channel images, "
                             f"got {x.shape[1]} channels")
        rf = contract(net).receptive_field
    else:
        from .inference import load

        rf = contract(load(net, x.shape[1], "cpu")[1]).receptive_field
    need = max(1, rf)
    if min(x.shape[-2:]) < need:
        raise InputError(f"the image is {x.shape[-2]}x{x.shape[-1]} pixels, smaller than the "
                         f"model's receptive field ({need} pixels) at x{scale}; use a larger image")
    return restore(x, net, None, tile=tile, device=device, progress=progress).output


def resized_info(info, scale: int):
    """The image info of an output ``scale`` times larger: its alpha channel (if any) is
    enlarged bicubically (MATLAB convention) and clamped to [0, 1]."""
    import dataclasses

    from .degrade import imresize

    if scale == 1 or info is None or info.alpha is None:
        return info
    alpha = imresize(info.alpha.reshape(1, 1, *info.alpha.shape[-2:]).float(), scale).clamp(0, 1)
    return dataclasses.replace(info, alpha=alpha)
