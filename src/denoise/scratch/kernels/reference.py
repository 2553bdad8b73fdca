"""The reference convolution: plain im2col, forward and backward side by side.

Written to be read, on PyTorch's ``(N, C, H, W)`` layout, for any :class:`~.geometry.Window`
with non-negative padding (stride, padding, dilation, any kernel). With
``cols = columns(x)``, the ``(N, C * kh * kw, Ho * Wo)`` matrices of the windows (rows
ordered ``(C, kh, kw)``, as ``unfold``'s and as ``weight.reshape(O, -1)``'s columns) and
``W = weight.reshape(O, C * kh * kw)``, for each image ``n``::

    forward    y[n]      = b + W @ cols[n]                  (O, Ho * Wo)
    backward   grad_W    = sum_n grad_y[n] @ cols[n].T
               grad_b    = sum_n grad_y[n] summed over the pixels
               grad_x[n] = fold(W.T @ grad_y[n])           fold = col2im, the adjoint of columns

It has two jobs:

* it is the yardstick: every fast formulation of :mod:`.fast` is tested against it in
  float64 for random output gradients (``tests/scratch/test_scratch_kernels.py``), in
  addition to the tests of the layers against ``torch.nn`` with autograd;
* it computes :class:`~denoise.scratch.Conv2d` for inputs with few channels (through
  :func:`.fast.few_channels_conv`, a block of images at a time: its columns always, its
  product too when the output is narrow), such as a first layer or the EE-559 course's
  check ``torch.allclose(conv.forward(x), F.conv2d(x, conv.weight, conv.bias))`` of a
  ``Conv2d(3, 3, 3)`` on a 1x3x32x32 input. That check uses the default ``atol=1e-8``,
  which outputs near zero pass only when the float32 sums are taken in PyTorch's order;
  for one image PyTorch's CPU convolution (``slow_conv2d``) is this same im2col and the
  same product (bias first, then ``W @ cols``), so the two results are equal bit for bit.
"""
from __future__ import annotations

import torch

from .geometry import Window

Tensor = torch.Tensor


def _padded_size(size: tuple[int, int], win: Window, small: tuple[int, int]) -> tuple[int, int]:
    """Height and width of the zero-padded image that ``small`` windows read."""
    return tuple(max(size[axis] + 2 * win.padding[axis], win.reach(axis, small[axis]))
                 for axis in (0, 1))


def _tap(padded: Tensor, win: Window, i: int, j: int, small: tuple[int, int]) -> Tensor:
    """The pixels of a zero-padded ``(N, C, H, W)`` image that tap ``(i, j)`` of every window
    reads: a strided view ``(N, C, Ho, Wo)`` (writing to it writes where the tap reads)."""
    (sh, sw), (dh, dw) = win.stride, win.dilation
    return padded[:, :, i * dh:i * dh + (small[0] - 1) * sh + 1:sh,
                  j * dw:j * dw + (small[1] - 1) * sw + 1:sw]


def columns(x: Tensor, win: Window, small: tuple[int, int]) -> Tensor:
    """im2col: the ``(N, C * kh * kw, Ho * Wo)`` matrices of the windows of ``x``.

    Entry ``[n, (c, i, j), (y, x)]`` is ``x[n, c, y * sh + i * dh - ph, x * sw + j * dw - pw]``,
    zero outside the image; ``small`` is ``(Ho, Wo)``. The image is copied into a zero
    border, then each tap's pixels are copied out of it by one slice.
    """
    batch, channels, height, width = x.shape
    (ph, pw), (kh, kw) = win.padding, win.kernel
    padded = x.new_zeros(batch, channels, *_padded_size((height, width), win, small))
    padded[:, :, ph:ph + height, pw:pw + width] = x
    cols = x.new_empty(batch, channels, kh, kw, small[0], small[1])
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = _tap(padded, win, i, j, small)
    return cols.view(batch, channels * kh * kw, small[0] * small[1])


def fold(cols: Tensor, win: Window, small: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """col2im, the adjoint of :func:`columns`: every entry of ``cols`` is added to the pixel
    it was read from. Returns ``(N, C, H, W)`` for an image of ``size`` ``(H, W)``."""
    batch = cols.shape[0]
    (ph, pw), (kh, kw) = win.padding, win.kernel
    channels = cols.shape[1] // (kh * kw)
    padded = cols.new_zeros(batch, channels, *_padded_size(size, win, small))
    blocks = cols.view(batch, channels, kh, kw, small[0], small[1])
    for i in range(kh):
        for j in range(kw):
            _tap(padded, win, i, j, small).add_(blocks[:, :, i, j])
    return padded[:, :, ph:ph + size[0], pw:pw + size[1]]


def forward(x: Tensor, weight: Tensor, bias: Tensor | None, win: Window,
           small: tuple[int, int] | None = None) -> Tensor:
    """Convolution (cross-correlation) of ``x`` ``(N, C, H, W)`` by ``weight`` ``(O, C, kh, kw)``.

    ``small``: the output's (height, width), by default every window that fits
    (:meth:`Window.output_size`). Returns ``(N, O, Ho, Wo)``, contiguous.
    """
    batch, out_channels = x.shape[0], weight.shape[0]
    if small is None:
        small = win.output_size(x.shape[2], x.shape[3])
    cols = columns(x, win, small)
    kernels = weight.reshape(out_channels, -1).expand(batch, out_channels, cols.shape[1])
    start = x.new_zeros(1, out_channels, 1) if bias is None else bias.view(1, out_channels, 1)
    y = torch.baddbmm(start, kernels, cols)  # y[n] = b + W @ cols[n]
    return y.view(batch, out_channels, small[0], small[1])


def backward(x: Tensor, weight: Tensor, grad: Tensor, win: Window,
                    input_grad: bool = True) -> tuple[Tensor | None, Tensor, Tensor]:
    """Gradients of :func:`forward` for the output gradient ``grad`` ``(N, O, Ho, Wo)``.

    Returns ``(grad_x, grad_weight, grad_bias)``: ``grad_x`` like ``x`` (None unless
    ``input_grad``), ``grad_weight`` like ``weight``, ``grad_bias`` ``(O,)``.
    """
    batch, out_channels = grad.shape[0], grad.shape[1]
    small = (grad.shape[2], grad.shape[3])
    cols = columns(x, win, small)
    rows = grad.reshape(batch, out_channels, -1)
    grad_w = torch.bmm(rows, cols.transpose(1, 2)).sum(0).view(weight.shape)
    grad_b = rows.sum((0, 2))
    grad_x = None
    if input_grad:
        kernels_t = weight.reshape(out_channels, -1).t().expand(batch, cols.shape[1], out_channels)
        grad_x = fold(torch.bmm(kernels_t, rows), win, small, (x.shape[2], x.shape[3]))
    return grad_x, grad_w, grad_b
