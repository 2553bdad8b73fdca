"""Argument checks shared by the scratch layers: clear errors instead of silent broadcasting."""
from __future__ import annotations

import torch

from .errors import ScratchError

Tensor = torch.Tensor


def check_input(x, owner, *, dim: int | None = 4, channels: int | None = None,
                like: Tensor | None = None, name: str = "input") -> Tensor:
    """Check the tensor given to ``owner.forward``: type, rank, channel count, dtype, device.

    ``like`` (a parameter of the module) fixes the dtype and device ``x`` must have.
    """
    where = f"{type(owner).__name__}.forward"
    if not isinstance(x, Tensor):
        raise ScratchError(f"{where} takes a torch.Tensor {name}, got {type(x).__name__}")
    if dim is not None and x.dim() != dim:
        layout = " (N, C, H, W)" if dim == 4 else ""
        raise ScratchError(f"{where} expects a {dim}-D {name}{layout}, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ScratchError(f"{where} expects a float {name}, got dtype {x.dtype}; convert with .float()")
    if channels is not None and x.shape[1] != channels:
        raise ScratchError(f"{where} expects {channels} channels, got {name} of shape {tuple(x.shape)}")
    if like is not None and (x.dtype != like.dtype or x.device != like.device):
        raise ScratchError(f"{where}: {name} is {x.dtype} on {x.device} but the parameters are "
                           f"{like.dtype} on {like.device}; convert one with .to()")
    if x.numel() == 0:
        raise ScratchError(f"{where} got an empty {name} of shape {tuple(x.shape)}")
    return x


def check_grad(grad, owner, shape: torch.Size, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Check the output gradient given to ``owner.backward`` against the forward output."""
    where = f"{type(owner).__name__}.backward"
    if not isinstance(grad, Tensor):
        raise ScratchError(f"{where} takes a torch.Tensor gradient, got {type(grad).__name__}")
    if grad.shape != shape:
        raise ScratchError(f"{where} expects a gradient of the output's shape {tuple(shape)}, "
                           f"got {tuple(grad.shape)}")
    if grad.dtype != dtype or grad.device != device:
        raise ScratchError(f"{where} expects a {dtype} gradient on {device}, "
                           f"got {grad.dtype} on {grad.device}")
    return grad
