"""Element-wise activations: ReLU, LeakyReLU, PReLU, Sigmoid, Tanh.

Each saves the one tensor its derivative needs (the output where it suffices, as
PyTorch does), so a network keeps no more activations than its ``torch.nn`` twin.
"""
from __future__ import annotations

import torch

from ._checks import check_grad, check_input
from .errors import ScratchError
from .module import Module, Parameter

Tensor = torch.Tensor

# In a fresh process, torch's first float exp is sometimes less accurate than every later
# one (relative errors up to 1.5e-4 on part of the tensor, in roughly one process in ten
# on the reference CPU; later calls, other threads included, are exact). Sigmoid's exp
# may well be that first call, so one value is sent through exp at import.
torch.zeros(1).exp_()


class _Elementwise(Module):
    """An activation applied value by value: ``forward`` checks, computes and saves."""

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self, dim=None)
        y, saved = self._apply(x)
        self._save(saved, x.shape, x.dtype, x.device)
        return y

    def backward(self, grad: Tensor) -> Tensor:
        saved, shape, dtype, device = self._peek_saved()
        check_grad(grad, self, shape, dtype, device)
        self._release_saved()
        return self._derive(grad, saved)

    def _apply(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return the output and the tensor that :meth:`_derive` needs."""
        raise NotImplementedError

    def _derive(self, grad: Tensor, saved: Tensor) -> Tensor:
        """Return the input gradient from the output gradient and the saved tensor."""
        raise NotImplementedError


class ReLU(_Elementwise):
    """``max(x, 0)``; the gradient is passed where the output is positive."""

    def _apply(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = x.clamp_min(0)
        return y, y

    def _derive(self, grad: Tensor, y: Tensor) -> Tensor:
        # sign(y) is 1 where y > 0, else 0 (NaN included): two vectorised passes, several
        # times faster than a boolean mask and a selection (where, masked_fill).
        return y.sign().mul_(grad)


class LeakyReLU(_Elementwise):
    """``x`` where ``x > 0``, else ``negative_slope * x`` (default 0.01, as in PyTorch)."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)):
            raise ScratchError(f"negative_slope must be a number, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def _apply(self, x: Tensor) -> tuple[Tensor, Tensor]:
        positive = x > 0
        return x.where(positive, x * self.negative_slope), positive

    def _derive(self, grad: Tensor, positive: Tensor) -> Tensor:
        return grad.where(positive, grad * self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class PReLU(_Elementwise):
    """LeakyReLU with a learned slope: one for all channels or one per channel (dim 1).

    ``PReLU(num_parameters=1, init=0.25)``; the parameter is ``weight`` of shape
    ``(num_parameters,)``, as in ``torch.nn.PReLU``.
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25, *,
                 dtype: torch.dtype | None = None, device=None) -> None:
        super().__init__()
        if isinstance(num_parameters, bool) or not isinstance(num_parameters, int) or num_parameters < 1:
            raise ScratchError(f"num_parameters must be a positive int, got {num_parameters!r}")
        self.num_parameters = num_parameters
        self.weight = Parameter(torch.full((num_parameters,), float(init),
                                           dtype=dtype or torch.get_default_dtype(), device=device))

    def _slope(self, x: Tensor) -> Tensor:
        """The slope broadcast along dimension 1 of ``x`` (a checked channel count)."""
        if self.num_parameters == 1:
            return self.weight.data
        if x.dim() < 2 or x.shape[1] != self.num_parameters:
            raise ScratchError(f"PReLU has {self.num_parameters} slopes but the input has shape "
                               f"{tuple(x.shape)}; dimension 1 must have {self.num_parameters} channels")
        return self.weight.data.view(-1, *([1] * (x.dim() - 2)))

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self, dim=None, like=self.weight.data)
        return super().forward(x)

    def _apply(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x.where(x > 0, x * self._slope(x)), x

    def _derive(self, grad: Tensor, x: Tensor) -> Tensor:
        positive = x > 0
        negative_part = (grad * x).masked_fill_(positive, 0.0)
        if self.num_parameters == 1:
            self.weight.grad.add_(negative_part.sum().view(1))
        else:
            dims = [0] + list(range(2, x.dim()))
            self.weight.grad.add_(negative_part.sum(dims))
        return grad.where(positive, grad * self._slope(x))

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class Sigmoid(_Elementwise):
    """``1 / (1 + exp(-x))``, computed from ``exp(-|x|)`` so no input overflows."""

    def _apply(self, x: Tensor) -> tuple[Tensor, Tensor]:
        small = x.abs().neg_().exp_()  # exp(-|x|) in (0, 1]
        ratio = (small + 1).reciprocal_()
        y = ratio.where(x >= 0, small.mul_(ratio))
        return y, y

    def _derive(self, grad: Tensor, y: Tensor) -> Tensor:
        return grad * y * (1 - y)


class Tanh(_Elementwise):
    """``tanh(x)``, from ``expm1(-2|x|)``: accurate near zero and never overflowing."""

    def _apply(self, x: Tensor) -> tuple[Tensor, Tensor]:
        m = x.abs().mul_(-2).expm1_()  # exp(-2|x|) - 1 in (-1, 0]
        y = m.neg().div_(m + 2).copysign_(x)
        return y, y

    def _derive(self, grad: Tensor, y: Tensor) -> Tensor:
        return grad * (1 - y * y)
