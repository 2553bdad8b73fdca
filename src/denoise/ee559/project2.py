"""EE-559 mini-project 2: the same task with the project's framework without autograd.

The network is :func:`denoise.scratch.ee559_net`, the architecture the course asks for
(two stride-2 convolutions, two nearest-upsampling convolutions, ReLU, sigmoid output),
trained with :class:`denoise.scratch.MSE` and :class:`denoise.scratch.Adam` only: every
gradient comes from the modules' own ``backward``, and no ``torch.nn`` code runs. Images
whose sides are not multiples of 4 are padded (reflect) and the output cropped back.

The module also exports the course's names for the building blocks: ``Conv2d``,
``TransposeConv2d``, ``NearestUpsampling``, ``Upsampling``, ``ReLU``, ``Sigmoid``,
``MSE``, ``SGD`` and ``Sequential``. As in PyTorch, a layer's ``weight`` and ``bias`` can
be passed to torch functions directly, e.g. ``F.conv2d(x, conv.weight, conv.bias)``.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from .. import scratch
from ..errors import ModelError
from ..scratch import MSE, SGD, NearestUpsampling, ReLU, Sequential, Sigmoid
from ..scratch import functional as scratch_functional
from ..scratch._checks import check_input
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


class TensorParameter(scratch.Parameter):
    """A scratch :class:`~denoise.scratch.Parameter` that torch functions accept as its value.

    Through PyTorch's ``__torch_function__`` protocol any ``torch`` function given one
    (``F.conv2d(x, conv.weight, conv.bias)``, ``torch.allclose(conv.weight, w)``) receives
    its ``data`` tensor instead, as with a ``torch.nn.Parameter``.
    """

    __slots__ = ()

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        def unwrap(value):
            if isinstance(value, scratch.Parameter):
                return value.data
            if isinstance(value, (list, tuple)):
                return type(value)(unwrap(v) for v in value)
            return value

        return func(*unwrap(tuple(args)), **{k: unwrap(v) for k, v in (kwargs or {}).items()})


def tensor_parameters(module: scratch.Module) -> scratch.Module:
    """Turn every parameter of ``module`` and its descendants into a :class:`TensorParameter`
    (same tensors, so optimizers and state dicts are unaffected); returns ``module``."""
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if not isinstance(param, TensorParameter):
                setattr(sub, name, TensorParameter(param.data, param.grad))
    return module


def _columns(x_nhwc: torch.Tensor, window, small: tuple[int, int]) -> torch.Tensor:
    """im2col of a channels-last batch with columns ordered ``(C, kh, kw)``, the order of
    ``weight.reshape(out_channels, -1)``: the column matrix ``(N * Ho * Wo, C * kh * kw)``."""
    n, h, w, c = x_nhwc.shape
    (ph, pw), (sh, sw), (dh, dw), (kh, kw) = window.padding, window.stride, window.dilation, window.kernel
    padded = x_nhwc.new_zeros(n, h + 2 * ph, w + 2 * pw, c)
    padded[:, ph:ph + h, pw:pw + w] = x_nhwc
    sn, sy, sx, sc = padded.stride()
    view = padded.as_strided((n, small[0], small[1], c, kh, kw),
                             (sn, sh * sy, sw * sx, sc, dh * sy, dw * sx))
    return view.reshape(n * small[0] * small[1], c * kh * kw)


class Conv2d(scratch.Conv2d):
    """:class:`denoise.scratch.Conv2d` whose ``weight`` and ``bias`` torch functions accept,
    and whose forward pass reduces over ``(C, kh, kw)`` in PyTorch's order.

    The course checks ``torch.allclose(conv.forward(x), F.conv2d(x, conv.weight,
    conv.bias))`` with the default tolerances (``atol=1e-8``), which outputs near zero
    pass only when the float32 sums are taken in PyTorch's order: so the output is one
    product of the ``(C, kh, kw)``-ordered column matrix with ``weight.reshape(O, -1).T``,
    computed a few images at a time. The backward pass is the scratch layer's own.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        tensor_parameters(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self, channels=self.in_channels, like=self.weight.data)
        small = self.output_size(x.shape[2], x.shape[3])
        x_nhwc = scratch_functional.to_nhwc(x)
        weight = self.weight.data.clone()
        matrix = weight.reshape(self.out_channels, -1).t()
        out = x.new_empty(x.shape[0], small[0], small[1], self.out_channels)
        step = max(1, scratch_functional.CHUNK_BYTES // (matrix.shape[0] * small[0] * small[1]
                                                         * x.element_size()))
        for n0 in range(0, x.shape[0], step):
            cols = _columns(x_nhwc[n0:n0 + step], self.window, small)
            rows = out[n0:n0 + step].view(-1, self.out_channels)
            if self.bias is None:
                torch.mm(cols, matrix, out=rows)
            else:
                torch.addmm(self.bias.data, cols, matrix, out=rows)
        self._save(x_nhwc, weight, out.shape[:1] + (self.out_channels,) + out.shape[1:3])
        return scratch_functional.from_nhwc(out)


class TransposeConv2d(scratch.TransposeConv2d):
    """:class:`denoise.scratch.TransposeConv2d` whose ``weight`` and ``bias`` torch functions accept."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        tensor_parameters(self)


class Upsampling(scratch.Upsampling):
    """:class:`denoise.scratch.Upsampling` (nearest upsampling, then a convolution) whose
    parameters torch functions accept."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        tensor_parameters(self)


class Model(CourseModel):
    """The course's ``Model`` for mini-project 2 (``ee559_net``, scratch Adam, MSE)."""

    weights_name = "ee559-project2"

    def __init__(self, *, batch_size: int = 16, lr: float = 2e-3, seed: int = 0,
                 device: str | torch.device | None = None) -> None:
        super().__init__(batch_size=batch_size, lr=lr, seed=seed, device=device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the same initial weights for every Model(seed=...)
            self.net = tensor_parameters(scratch.ee559_net(CHANNELS).to(device=self.device))
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
