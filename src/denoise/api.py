"""The one-call entry point: ``denoise(x, model="default", sigma=None, tile=None)``."""
from __future__ import annotations

import functools

import torch
from torch import nn

from .errors import InputError, ModelError
from .models.ensemble import SUFFIX, SelfEnsemble, split_name
from .models.registry import create_model, get_entry
from .tiling import tiled
from .utils import check_image, check_sigma

#: The learned models "default" prefers, by channel count, when their weights ship.
DEFAULT_LEARNED = {1: "n2n-unet-gray", 3: "n2n-unet-color"}
#: The fallback when no learned weights ship: fast, training-free, any size.
FALLBACK = "dct"


def default_model_name(channels: int) -> str:
    """The model "default" stands for with images of ``channels`` channels."""
    name = DEFAULT_LEARNED.get(channels)
    try:
        if name is not None and get_entry(name).has_weights():
            return name
    except ModelError:  # the learned model is not registered in this build
        pass
    return FALLBACK


@functools.lru_cache(maxsize=8)
def _load(name: str) -> nn.Module:
    return create_model(name)


def resolved_name(name: str, channels: int) -> str:
    """The registered name (with its ``+x8`` suffix, if any) that ``name`` stands for with
    images of ``channels`` channels: "default" becomes :func:`default_model_name`."""
    base, ensemble = split_name(name)
    return default_model_name(channels) + SUFFIX * ensemble if base == "default" else name


def resolve_model(model: str | nn.Module, channels: int) -> nn.Module:
    """A ready denoiser from a registered name, "default", or a module (returned as is).

    A name may end in ``+x8`` (:mod:`denoise.models.ensemble`): the model's mean over the
    eight flips and rotations of the image.
    """
    if isinstance(model, nn.Module):
        return model
    if not isinstance(model, str):
        raise InputError(f"model must be a registered name or a torch.nn.Module, got {type(model).__name__}")
    name, ensemble = split_name(resolved_name(model, channels))
    net = _load(name)
    return SelfEnsemble(net) if ensemble else net


def denoise(x: torch.Tensor, model: str | nn.Module = "default", sigma: float | torch.Tensor | None = None,
            *, tile: int | None = None) -> torch.Tensor:
    """Denoise images.

    Args:
        x: float32 tensor (N, C, H, W) with C = 1 or 3 and values in [0, 1].
        model: a registered model name (see ``denoise.list_models()``), a denoiser module,
            or "default": the shipped learned model for the channel count, else "dct".
            A name ending in "+x8" averages the model over the eight flips and rotations
            of the image (geometric self-ensemble, eight times the time).
        sigma: noise standard deviation on the 0-1 scale (sigma_255 / 255), a float or one
            value per image; None lets models that need it estimate it.
        tile: process in overlapping tiles of this many pixels per side, to bound memory
            on large images (see :func:`denoise.tiling.tiled`); None runs in one piece.

    Returns:
        The denoised images, shaped like ``x``, clamped to [0, 1].
    """
    check_image(x)
    sigma = check_sigma(sigma)
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
        raise InputError(f"tile must be a positive number of pixels, got {tile!r}")
    net = resolve_model(model, x.shape[1])
    if isinstance(model, str):
        net.to(x.device)
    with torch.inference_mode():
        y = tiled(net, x, sigma, tile=tile) if tile is not None else net(x, sigma)
        return y.clamp_(0.0, 1.0)
