"""Losses: MSE and L1, ``forward(prediction, target)`` -> a 0-d tensor.

``backward(grad=1.0)`` returns the gradient with respect to the prediction. Prediction
and target must have the same shape: nothing is broadcast.
"""
from __future__ import annotations

import torch

from ._checks import check_input
from .errors import ScratchError
from .module import Module

Tensor = torch.Tensor


class _Loss(Module):
    """Shared checks and reduction (``"mean"`` or ``"sum"``) of the losses."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ScratchError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        check_input(prediction, self, dim=None, name="prediction")
        check_input(target, self, dim=None, like=prediction, name="target")
        if prediction.shape != target.shape:
            raise ScratchError(f"{type(self).__name__}: prediction {tuple(prediction.shape)} and "
                               f"target {tuple(target.shape)} must have the same shape")
        diff = prediction - target
        self._save(diff)
        total = self._pointwise(diff).sum()
        return total / diff.numel() if self.reduction == "mean" else total

    def backward(self, grad: Tensor | float = 1.0) -> Tensor:
        (diff,) = self._peek_saved()
        if isinstance(grad, Tensor):
            if grad.numel() != 1:
                raise ScratchError(f"{type(self).__name__}.backward takes a scalar gradient, "
                                   f"got shape {tuple(grad.shape)}")
            grad = grad.reshape(())
        self._release_saved()
        scale = grad / diff.numel() if self.reduction == "mean" else grad
        return self._derivative(diff, scale)

    def _pointwise(self, diff: Tensor) -> Tensor:
        """Loss of each element, from ``prediction - target``."""
        raise NotImplementedError

    def _derivative(self, diff: Tensor, scale: Tensor | float) -> Tensor:
        """``scale`` times the derivative of :meth:`_pointwise` (a new tensor)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class MSE(_Loss):
    """Mean squared error, ``torch.nn.MSELoss``."""

    def _pointwise(self, diff: Tensor) -> Tensor:
        return diff * diff

    def _derivative(self, diff: Tensor, scale: Tensor | float) -> Tensor:
        return diff * (2 * scale)  # one pass over the image: the factor is a scalar


class L1(_Loss):
    """Mean absolute error, ``torch.nn.L1Loss``; the derivative at zero is zero."""

    def _pointwise(self, diff: Tensor) -> Tensor:
        return diff.abs()

    def _derivative(self, diff: Tensor, scale: Tensor | float) -> Tensor:
        return diff.sign().mul_(scale)
