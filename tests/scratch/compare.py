"""One helper that checks a scratch module against its ``torch.nn`` twin.

Shapes and dtypes are compared first, then values: the forward output, the input
gradient and every parameter gradient, for a *random* output gradient (a ``.sum()``
would hide flipped or transposed kernels). In float64, ``assert_close``'s default
tolerances apply.
"""
from __future__ import annotations

import torch

from denoise import scratch

from .twins import torch_twin


def _same(actual: torch.Tensor, expected: torch.Tensor, what: str, **tolerances) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    torch.testing.assert_close(actual, expected, msg=lambda m: f"{what}: {m}", **tolerances)


def check_against_torch(module: scratch.Module, x: torch.Tensor, *, seed: int = 0,
                        **tolerances) -> None:
    """Assert that ``module`` and its twin agree on output and all gradients for input ``x``."""
    twin = torch_twin(module)
    x_torch = x.clone().requires_grad_(True)
    with torch.enable_grad():
        expected = twin(x_torch)
    generator = torch.Generator().manual_seed(seed)
    grad = torch.randn(expected.shape, generator=generator, dtype=x.dtype)
    expected.backward(grad)

    module.zero_grad()
    with torch.no_grad():
        actual = module(x)
        grad_x = module.backward(grad)
    _same(actual, expected.detach(), "output", **tolerances)
    _same(grad_x, x_torch.grad, "input gradient", **tolerances)
    twin_params = dict(twin.named_parameters())
    assert set(twin_params) == {name for name, _ in module.named_parameters()}
    for name, param in module.named_parameters():
        _same(param.grad, twin_params[name].grad, f"gradient of {name}", **tolerances)
