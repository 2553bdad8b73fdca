"""Which kernel computes a convolution: the choice per layer and direction.

:class:`~denoise.scratch.Conv2d` and :class:`~denoise.scratch.Upsampling` call
:func:`conv_forward` and :func:`conv_backward`; each picks the cheapest formulation of
:mod:`.fast` for the shapes (for inputs with few channels, the reference's columns and,
for narrow outputs, the reference itself). All give the result of :mod:`.reference` up
to float rounding.
"""
from __future__ import annotations

import torch

from . import fast
from .geometry import Window, conv_matrix, flip, folds_exactly, transposed_matrix

Tensor = torch.Tensor

#: Narrowest input channel count for which a convolution uses the channels-last
#: formulations (shifted products at stride 1, else im2col): each tap is a product, or an
#: im2col run, of that many values, and too few is slow. Narrower inputs (such as a first
#: layer's 1 or 3 channels) go through the reference convolution instead, whose
#: channels-first columns copy whole image rows.
SHIFTED_MIN_CHANNELS = 16


def _flipped_ok(win: Window) -> bool:
    """Whether a window is stride 1 with padding small enough for the transposed form."""
    return win.stride == (1, 1) and min(flip(win).padding) >= 0


def transposed_forward(weight: Tensor, win: Window) -> bool:
    """Whether the forward of a conv (``weight``: ``(O, C, kh, kw)``) takes the transposed
    form: stride 1 with a valid flipped window, and ``kh * kw * O <= C`` (its columns are
    then the narrowest)."""
    out_channels, in_channels, kh, kw = weight.shape
    return kh * kw * out_channels <= in_channels and _flipped_ok(win)


def transposed_backward(weight: Tensor, win: Window) -> bool:
    """Whether the backward takes the transposed form: stride 1 and ``O <= C`` (the columns
    of the output gradient then serve both products)."""
    return win.stride == (1, 1) and weight.shape[0] <= weight.shape[1]


def transposed_form(weight: Tensor) -> Tensor:
    """The ``(C, kh * kw * O)`` matrix of a stride-1 conv weight seen as a transposed conv."""
    return transposed_matrix(weight.flip(2, 3).transpose(0, 1))


def from_transposed_form(grad: Tensor, shape: torch.Size) -> Tensor:
    """Gradient of the :func:`transposed_form` matrix as a conv weight gradient of ``shape``."""
    out_channels, in_channels, kh, kw = shape
    return grad.view(in_channels, kh, kw, out_channels).permute(3, 0, 1, 2).flip(2, 3)


def conv_forward(x: Tensor, weight: Tensor, bias: Tensor | None, win: Window,
                 small: tuple[int, int]) -> Tensor:
    """Channels-last convolution by the cheapest formulation (``weight``: ``(O, C, kh, kw)``).

    Fewer than :data:`SHIFTED_MIN_CHANNELS` input channels: the reference's columns, a
    block of images at a time (:func:`.fast.few_channels_conv`: for narrow outputs the
    reference itself, its result a channels-last view of channels-first data); stride 1
    with ``kh * kw * O <= C``: the transposed form, whose columns are the narrowest, by a
    batched product and ``fold`` (also a view of channels-first data) or by col2im; a
    "same" stride-1 convolution: shifted products on the unpadded input
    (:func:`.fast.wrapped_conv`); other stride-1 ones: shifted products on a padded copy;
    otherwise im2col.
    """
    in_channels = weight.shape[1]
    if in_channels < SHIFTED_MIN_CHANNELS:
        return fast.few_channels_conv(x, weight, bias, win, small)
    if transposed_forward(weight, win):
        flipped = flip(win)
        if folds_exactly(flipped, small, (x.shape[1], x.shape[2])):
            folded = weight.flip(2, 3).transpose(0, 1).reshape(in_channels, -1)
            return fast.fold_conv(x, folded, bias, flipped, small)
        return fast.col2im_conv(x, transposed_form(weight), bias, flipped, small)
    if fast.wraps(win, x, small):
        return fast.wrapped_conv(x, conv_matrix(weight), bias, win)
    if win.stride == (1, 1):
        return fast.shifted_conv(x, conv_matrix(weight), bias, win, small)
    return fast.im2col_conv(x, conv_matrix(weight), bias, win, small)


def conv_backward(x: Tensor, grad: Tensor, weight: Tensor, win: Window,
                  input_grad: bool = True) -> tuple[Tensor | None, Tensor]:
    """Gradients ``(grad_x, grad_weight)`` of :func:`conv_forward` (channels-last ``x`` and
    ``grad``; ``grad_x`` is None unless ``input_grad``).

    Without ``grad_x`` and with few input channels: the reference's weight gradient (as in
    the forward). Stride 1 with ``O <= C``: im2col of the output gradient (the transposed
    form), whose columns serve both products; otherwise im2col of the input, and col2im
    for ``grad_x``.
    """
    out_channels, in_channels, kh, kw = weight.shape
    if not input_grad and in_channels < SHIFTED_MIN_CHANNELS:
        return None, fast.few_channels_weight_grad(x, grad, weight, win)
    if transposed_backward(weight, win):
        grad_x, grad_t = fast.col2im_conv_backward(x, grad, transposed_form(weight), flip(win),
                                                   input_grad)
        return grad_x, from_transposed_form(grad_t, weight.shape)
    grad_x, grad_m = fast.im2col_conv_backward(x, grad, conv_matrix(weight), win, input_grad)
    return grad_x, grad_m.view(out_channels, kh, kw, in_channels).permute(0, 3, 1, 2)
