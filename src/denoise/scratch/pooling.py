"""Max pooling with PyTorch's arguments and layout (``torch.nn.MaxPool2d``)."""
from __future__ import annotations

import math

import torch

from ._checks import check_grad, check_input
from .errors import ScratchError
from .kernels.geometry import Window, from_nhwc, pair, tap_view, to_nhwc
from .module import Module

Tensor = torch.Tensor


class MaxPool2d(Module):
    """Max pooling, ``torch.nn.MaxPool2d(kernel_size, stride=None, padding=0, dilation=1)``.

    Ties go to the first maximum in window order and NaN propagates, as in PyTorch; the
    gradient flows to that element only. ``ceil_mode`` is not supported.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1) -> None:
        super().__init__()
        self.window = Window(pair(kernel_size, "kernel_size"),
                             pair(kernel_size if stride is None else stride, "stride"),
                             pair(padding, "padding", minimum=0), pair(dilation, "dilation"))
        if any(2 * p > k for p, k in zip(self.window.padding, self.window.kernel)):
            raise ScratchError(f"padding {self.window.padding} must be at most half the kernel "
                               f"size {self.window.kernel}")

    def _padded(self, x_nhwc: Tensor, fill: float) -> Tensor:
        """``x_nhwc`` surrounded by ``padding`` pixels of value ``fill``."""
        (ph, pw), (n, h, w, c) = self.window.padding, x_nhwc.shape
        if ph == 0 and pw == 0:
            return x_nhwc
        padded = x_nhwc.new_full((n, h + 2 * ph, w + 2 * pw, c), fill)
        padded[:, ph:ph + h, pw:pw + w] = x_nhwc
        return padded

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self)
        x_nhwc = to_nhwc(x)
        small = self.window.output_size(x.shape[2], x.shape[3])
        padded = self._padded(x_nhwc, -math.inf)
        kh, kw = self.window.kernel
        best = tap_view(padded, self.window, 0, 0, small).clone()
        index = torch.zeros(best.shape, dtype=torch.uint8 if kh * kw < 256 else torch.int32,
                            device=x.device)
        for tap in range(1, kh * kw):
            values = tap_view(padded, self.window, tap // kw, tap % kw, small)
            better = (values > best) | values.isnan()
            best = values.where(better, best)
            index.masked_fill_(better, tap)
        self._save(index, x.shape, x.dtype, x.device)
        return from_nhwc(best)

    def backward(self, grad: Tensor) -> Tensor:
        index, shape, dtype, device = self._peek_saved()
        n, c, _, _ = shape
        check_grad(grad, self, torch.Size((n, c, index.shape[1], index.shape[2])), dtype, device)
        self._release_saved()
        grad_nhwc = to_nhwc(grad)
        padded = self._padded(grad_nhwc.new_zeros(n, shape[2], shape[3], c), 0.0)
        kh, kw = self.window.kernel
        for tap in range(kh * kw):
            tap_view(padded, self.window, tap // kw, tap % kw, index.shape[1:3]).add_(
                grad_nhwc.where(index == tap, 0.0))
        (ph, pw) = self.window.padding
        return from_nhwc(padded[:, ph:ph + shape[2], pw:pw + shape[3]])

    def extra_repr(self) -> str:
        win = self.window
        return (f"kernel_size={win.kernel}, stride={win.stride}, padding={win.padding}, "
                f"dilation={win.dilation}")
