"""EE-559 mini-project 2: the same task with the project's framework without autograd.

The network is :func:`denoise.scratch.ee559_net`, the architecture the course asks for
(two stride-2 convolutions, two nearest-upsampling convolutions, ReLU, sigmoid output),
trained with :class:`denoise.scratch.MSE` and :class:`denoise.scratch.Adam` only: every
gradient comes from the modules' own ``backward``, and no ``torch.nn`` code runs. Images
whose sides are not multiples of 4 are padded (reflect) and the output cropped back.

The module also exports the course's names for the building blocks: ``Conv2d``,
``TransposeConv2d``, ``NearestUpsampling``, ``Upsampling``, ``ReLU``, ``Sigmoid``,
``MSE``, ``SGD`` and ``Sequential``. They *are* the scratch classes, the very ones the
``Model`` trains with (``Conv2d is denoise.scratch.Conv2d``). As in PyTorch, a layer's
``weight`` and ``bias`` can be passed to torch functions directly, e.g.
``F.conv2d(x, conv.weight, conv.bias)`` (see :class:`denoise.scratch.Parameter`); and a
``Conv2d`` with few input and output channels computes its forward pass with the reference
convolution (:mod:`denoise.scratch.kernels.reference`), whose float32 sums are those of
``F.conv2d`` for one image, so the course's ``torch.allclose(conv.forward(x),
F.conv2d(x, conv.weight, conv.bias))`` holds with its default tolerances.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from .. import scratch
from ..errors import ModelError
from ..scratch import (
    MSE,
    SGD,
    Conv2d,
    NearestUpsampling,
    ReLU,
    Sequential,
    Sigmoid,
    TransposeConv2d,
    Upsampling,
)
from .course import CourseModel

__all__ = ["Model", "Conv2d", "TransposeConv2d", "NearestUpsampling", "Upsampling", "ReLU",
           "Sigmoid", "MSE", "SGD", "Sequential", "TensorParameter", "CHANNELS"]

#: Width of the hidden layers of :func:`denoise.scratch.ee559_net`.
CHANNELS = 48
#: The network halves the image twice: sides must be multiples of this.
MULTIPLE = 4


def _reflect_index(size: int, padded: int) -> torch.Tensor:
    """Indices ``0..padded-1`` reflected into ``0..size-1`` (..., 2, 1, 0, 1, 2, ...), as
    often as needed; a side of 1 pixel is repeated."""
    index = torch.arange(padded)
    if size == 1:
        return index.zero_()
    period = 2 * (size - 1)
    index = index.remainder(period)
    return torch.where(index < size, index, period - index)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad (N, C, H, W) at the bottom and right to sides that are multiples of
    ``multiple`` (with indexing only: no torch.nn); returns it and the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = h + (-h) % multiple, w + (-w) % multiple
    if (ph, pw) == (h, w):
        return x, (h, w)
    rows, cols = _reflect_index(h, ph).to(x.device), _reflect_index(w, pw).to(x.device)
    return x.index_select(2, rows).index_select(3, cols), (h, w)


#: The course API's name for a layer parameter (every :class:`denoise.scratch.Parameter`
#: is accepted by torch functions as its value).
TensorParameter = scratch.Parameter


class Model(CourseModel):
    """The course's ``Model`` for mini-project 2 (``ee559_net``, scratch Adam, MSE)."""

    weights_name = "ee559-project2"

    def __init__(self, *, batch_size: int = 16, lr: float = 2e-3, seed: int = 0,
                 device: str | torch.device | None = None) -> None:
        super().__init__(batch_size=batch_size, lr=lr, seed=seed, device=device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the same initial weights for every Model(seed=...)
            self.net = scratch.ee559_net(CHANNELS).to(device=self.device)
        self.criterion = MSE()
        self.optimizer = scratch.Adam(self.net.parameters(), lr=lr)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, (h, w) = pad_to_multiple(x, MULTIPLE)
        return self.net(padded)[..., :h, :w]

    def _train_step(self, inp: torch.Tensor, tgt: torch.Tensor, lr: float) -> float:
        padded, (h, w) = pad_to_multiple(inp, MULTIPLE)
        target, _ = pad_to_multiple(tgt, MULTIPLE)
        with torch.no_grad():
            self.optimizer.lr = lr
            self.optimizer.zero_grad()
            loss = self.criterion(self.net(padded), target)
            self.net.backward(self.criterion.backward())
            self.optimizer.step()
        return float(loss)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        try:
            self.net.load_state_dict(state)
        except scratch.ScratchError as exc:
            raise ModelError(f"the weights do not fit ee559_net({CHANNELS}): {exc}") from None
