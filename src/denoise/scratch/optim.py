"""Optimizers: SGD (momentum, dampening, Nesterov, weight decay) and Adam.

Both follow ``torch.optim``'s update formulas operation by operation, so a scratch model
and its ``torch.nn`` twin stay together step after step. They take ``model.parameters()``
(or the course's ``model.param()`` pairs) and update the tensors in place.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

from .errors import ScratchError
from .module import Parameter, as_parameters

Tensor = torch.Tensor


def _non_negative(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise ScratchError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


class Optimizer:
    """Base class: the parameters, per-parameter state and ``zero_grad``."""

    def __init__(self, params: Iterable) -> None:
        self.params: list[Parameter] = as_parameters(params)
        self.state: dict[int, dict[str, Tensor]] = {}

    def zero_grad(self) -> None:
        """Set the gradient of every parameter to zero."""
        for param in self.params:
            param.zero_grad()

    def step(self) -> None:
        """Update every parameter from its gradient."""
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with ``torch.optim.SGD``'s arguments and update."""

    def __init__(self, params: Iterable, lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(params)
        self.lr = _non_negative(lr, "lr")
        self.momentum = _non_negative(momentum, "momentum")
        self.dampening = _non_negative(dampening, "dampening")
        self.weight_decay = _non_negative(weight_decay, "weight_decay")
        if nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ScratchError("nesterov=True needs momentum > 0 and dampening = 0")
        self.nesterov = bool(nesterov)

    def step(self) -> None:
        for param in self.params:
            grad = param.grad
            if self.weight_decay:
                grad = grad.add(param.data, alpha=self.weight_decay)
            if self.momentum:
                state = self.state.setdefault(id(param), {})
                buffer = state.get("momentum_buffer")
                if buffer is None:
                    buffer = state["momentum_buffer"] = grad.clone()
                else:
                    buffer.mul_(self.momentum).add_(grad, alpha=1 - self.dampening)
                grad = grad.add(buffer, alpha=self.momentum) if self.nesterov else buffer
            param.data.add_(grad, alpha=-self.lr)


class Adam(Optimizer):
    """Adam with ``torch.optim.Adam``'s arguments and update (L2 ``weight_decay``)."""

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params)
        self.lr = _non_negative(lr, "lr")
        self.eps = _non_negative(eps, "eps")
        self.weight_decay = _non_negative(weight_decay, "weight_decay")
        if len(tuple(betas)) != 2 or not all(0 <= _non_negative(b, "betas") < 1 for b in betas):
            raise ScratchError(f"betas must be two numbers in [0, 1), got {betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))

    def step(self) -> None:
        beta1, beta2 = self.betas
        for param in self.params:
            grad = param.grad
            if self.weight_decay:
                grad = grad.add(param.data, alpha=self.weight_decay)
            state = self.state.get(id(param))
            if state is None:
                state = self.state[id(param)] = {"step": 0, "exp_avg": torch.zeros_like(param.data),
                                                 "exp_avg_sq": torch.zeros_like(param.data)}
            state["step"] += 1
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step_size = self.lr / (1 - beta1 ** state["step"])
            denominator = (exp_avg_sq.sqrt() / (1 - beta2 ** state["step"]) ** 0.5).add_(self.eps)
            param.data.addcdiv_(exp_avg, denominator, value=-step_size)
