"""Convolutions and nearest upsampling with PyTorch's arguments and layouts.

Weights have PyTorch's layouts: ``(out, in, kh, kw)`` for :class:`Conv2d` and
``(in, out, kh, kw)`` for :class:`TransposeConv2d`, with PyTorch's default initialisation
(consuming the global random generator in the same order, so that seeding torch gives
the same weights as the ``torch.nn`` layer). ``groups`` other than 1 and padding modes
other than zeros are not supported.

The computations are those of :mod:`denoise.scratch.kernels`: :mod:`~.kernels.routes`
picks, per layer and direction, a formulation of :mod:`~.kernels.fast` (or the reference
convolution of :mod:`~.kernels.reference`). Outputs are ``(N, C, H, W)`` views of
channels-last data, sometimes with gaps between rows: use ``.reshape`` rather than
``.view``, or ``.contiguous()`` if a plain layout is needed.
"""
from __future__ import annotations

import math

import torch

from ._checks import check_grad, check_input
from .errors import ScratchError
from .kernels import fast, routes
from .kernels.geometry import (
    Window,
    flip,
    from_nhwc,
    pair,
    to_nhwc,
    transposed_matrix,
    upsample_phases,
)
from .module import Module, Parameter, Sequential

Tensor = torch.Tensor


def _positive_int(value, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ScratchError(f"{name} must be a positive int, got {value!r}")
    return value


def _init_conv(weight: Parameter, bias: Parameter | None) -> None:
    """PyTorch's default initialisation of a convolution (kaiming-uniform with a = sqrt(5)).

    The fan-in is ``weight.shape[1] * kh * kw``, as in ``torch.nn.init``, also for the
    transposed convolution whose dimension 1 is its output channels.
    """
    fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]
    gain = math.sqrt(2.0 / (1 + math.sqrt(5) ** 2))
    bound = math.sqrt(3.0) * (gain / math.sqrt(fan_in))
    weight.data.uniform_(-bound, bound)
    if bias is not None:
        bias_bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        bias.data.uniform_(-bias_bound, bias_bound)


class _ConvBase(Module):
    """Shared arguments, parameters and printing of the two convolutions."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride, padding,
                 dilation, groups: int, bias: bool, weight_shape: tuple[int, int],
                 dtype: torch.dtype | None, device) -> None:
        super().__init__()
        self.in_channels = _positive_int(in_channels, "in_channels")
        self.out_channels = _positive_int(out_channels, "out_channels")
        if groups != 1:
            raise ScratchError(f"only groups=1 is supported, got groups={groups!r}")
        self.window = Window(pair(kernel_size, "kernel_size"), pair(stride, "stride"),
                             pair(padding, "padding", minimum=0), pair(dilation, "dilation"))
        factory = {"dtype": dtype or torch.get_default_dtype(), "device": device}
        self.weight = Parameter(torch.empty(*weight_shape, *self.window.kernel, **factory))
        self.bias = Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    kernel_size = property(lambda self: self.window.kernel)
    stride = property(lambda self: self.window.stride)
    padding = property(lambda self: self.window.padding)
    dilation = property(lambda self: self.window.dilation)

    def reset_parameters(self) -> None:
        """Draw the weights and bias as ``torch.nn`` does."""
        _init_conv(self.weight, self.bias)

    def _bias_data(self) -> Tensor | None:
        return None if self.bias is None else self.bias.data

    def _accumulate_bias(self, grad_nhwc: Tensor) -> None:
        # the sum over all pixels as a matrix-vector product with ones: one pass of BLAS
        # over the (pixels, channels) matrix, twice as fast as a reduction over three
        # dimensions on the benchmark's 48-channel activations
        if self.bias is not None:
            rows = grad_nhwc.reshape(-1, grad_nhwc.shape[-1])
            self.bias.grad.addmv_(rows.t(), rows.new_ones(rows.shape[0]))

    def extra_repr(self) -> str:
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.bias is None:
            text += ", bias=False"
        return text


class Conv2d(_ConvBase):
    """2-D convolution (cross-correlation), ``torch.nn.Conv2d``'s arguments and weight layout.

    ``weight``: ``(out_channels, in_channels, kh, kw)``; ``bias``: ``(out_channels,)``.
    ``kernel_size``, ``stride``, ``padding`` and ``dilation`` are ints or (h, w) pairs.
    Set ``input_grad = False`` on a first layer to skip the input gradient
    (``backward`` then returns None), as autograd does for inputs without gradients.

    Each direction picks the cheapest kernel for the shapes
    (:func:`~denoise.scratch.kernels.routes.conv_forward`, ``conv_backward``): all give
    the result of the reference convolution (:mod:`denoise.scratch.kernels.reference`) up
    to float rounding. With fewer than 16 input and 16 output channels the forward pass
    *is* the reference, whose float32 sums are those of PyTorch's own CPU convolution for
    one image (``slow_conv2d``): the EE-559 course checks ``torch.allclose(conv.forward(x),
    F.conv2d(x, conv.weight, conv.bias))`` on a 1x3x32x32 input with the default
    tolerances, which outputs near zero pass only with PyTorch's order of summation.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, *,
                 dtype: torch.dtype | None = None, device=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, (out_channels, in_channels), dtype, device)
        self.input_grad = True

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size of the output for an input of ``height`` x ``width``."""
        return self.window.output_size(height, width)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self, channels=self.in_channels, like=self.weight.data)
        small = self.output_size(x.shape[2], x.shape[3])
        x_nhwc = to_nhwc(x)
        weight = self.weight.data.clone()
        y = from_nhwc(routes.conv_forward(x_nhwc, weight, self._bias_data(), self.window, small))
        self._save(x_nhwc, weight, y.shape)
        return y

    def backward(self, grad: Tensor) -> Tensor | None:
        x_nhwc, weight, shape = self._peek_saved()
        grad_nhwc = to_nhwc(check_grad(grad, self, shape, x_nhwc.dtype, x_nhwc.device))
        self._release_saved()
        grad_x, grad_w = routes.conv_backward(x_nhwc, grad_nhwc, weight, self.window,
                                              self.input_grad)
        self.weight.grad.add_(grad_w)
        self._accumulate_bias(grad_nhwc)
        return None if grad_x is None else from_nhwc(grad_x)


class TransposeConv2d(_ConvBase):
    """Transposed 2-D convolution, ``torch.nn.ConvTranspose2d``'s arguments and layout.

    ``weight``: ``(in_channels, out_channels, kh, kw)``. The output size is
    ``(H - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``;
    ``output_padding`` must be smaller than the stride or the dilation.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1, *,
                 dtype: torch.dtype | None = None, device=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, (in_channels, out_channels), dtype, device)
        self.output_padding = pair(output_padding, "output_padding", minimum=0)
        for axis in (0, 1):
            if self.output_padding[axis] >= max(self.stride[axis], self.dilation[axis]):
                raise ScratchError(f"output_padding {self.output_padding} must be smaller than the "
                                   f"stride {self.stride} or the dilation {self.dilation}")

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size of the output for an input of ``height`` x ``width``."""
        win, sizes = self.window, []
        for axis, size in enumerate((height, width)):
            sizes.append((size - 1) * win.stride[axis] - 2 * win.padding[axis] + win.span(axis)
                         + self.output_padding[axis])
        if min(sizes) < 1:
            raise ScratchError(f"{type(self).__name__}: an input of {height}x{width} gives an empty "
                               f"output {sizes}; reduce the padding or pass a larger input")
        return sizes[0], sizes[1]

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self, channels=self.in_channels, like=self.weight.data)
        size = self.output_size(x.shape[2], x.shape[3])
        x_nhwc = to_nhwc(x)
        wmat = transposed_matrix(self.weight.data)
        y = from_nhwc(fast.col2im_conv(x_nhwc, wmat, self._bias_data(), self.window, size))
        self._save(x_nhwc, wmat, y.shape)
        return y

    def backward(self, grad: Tensor) -> Tensor:
        x_nhwc, wmat, shape = self._peek_saved()
        grad_nhwc = to_nhwc(check_grad(grad, self, shape, x_nhwc.dtype, x_nhwc.device))
        self._release_saved()
        grad_x, grad_w = fast.col2im_conv_backward(x_nhwc, grad_nhwc, wmat, self.window)
        kh, kw = self.kernel_size
        self.weight.grad.add_(grad_w.view(self.in_channels, kh, kw, self.out_channels)
                              .permute(0, 3, 1, 2))
        self._accumulate_bias(grad_nhwc)
        return from_nhwc(grad_x)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if self.output_padding != (0, 0):
            text += f", output_padding={self.output_padding}"
        return text


#: PyTorch's name for :class:`TransposeConv2d`.
ConvTranspose2d = TransposeConv2d


def _scale_pair(scale_factor) -> tuple[int, int]:
    """An integer scale factor (or (h, w) pair) >= 1; integral floats such as 2.0 are accepted."""
    items = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor, scale_factor)
    result = []
    for value in items:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
                or value < 1:
            raise ScratchError(f"scale_factor must be a positive integer (or a pair of them), "
                               f"got {scale_factor!r}; non-integer factors are not supported")
        result.append(int(value))
    if len(result) != 2:
        raise ScratchError(f"scale_factor must be an int or a pair of ints, got {scale_factor!r}")
    return result[0], result[1]


class NearestUpsampling(Module):
    """Nearest-neighbour upsampling by an integer factor (``torch.nn.Upsample(mode="nearest")``).

    Each pixel becomes an ``sh x sw`` block; the backward pass sums the gradient over each
    block. Both are the products with the 0/1 upsampling matrix ``U`` and its transpose,
    computed as a broadcast copy and a block sum instead of multiplications.
    """

    def __init__(self, scale_factor=2) -> None:
        super().__init__()
        self.scale_factor = _scale_pair(scale_factor)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self)
        n, c, h, w = x.shape
        sh, sw = self.scale_factor
        x_nhwc = to_nhwc(x)
        y = x_nhwc[:, :, None, :, None, :].expand(n, h, sh, w, sw, c).reshape(n, h * sh, w * sw, c)
        self._save(x.shape, x.dtype, x.device)
        return from_nhwc(y)

    def backward(self, grad: Tensor) -> Tensor:
        (n, c, h, w), dtype, device = self._peek_saved()
        sh, sw = self.scale_factor
        check_grad(grad, self, torch.Size((n, c, h * sh, w * sw)), dtype, device)
        self._release_saved()
        grad_nhwc = to_nhwc(grad).view(n, h, sh, w, sw, c)
        return from_nhwc(grad_nhwc.sum((2, 4)))

    def extra_repr(self) -> str:
        return f"scale_factor={self.scale_factor}"


class Upsampling(Sequential):
    """Nearest upsampling by ``scale_factor`` followed by a :class:`Conv2d`.

    ``Upsampling(in_channels, out_channels, kernel_size, scale_factor=2, stride=1,
    padding=0, dilation=1, groups=1, bias=True)``: the convolution's arguments in
    ``torch.nn.Conv2d``'s order, with the scale factor after the kernel size. It is the
    sequence ``(NearestUpsampling, Conv2d)``, so its state-dict keys are ``"1.weight"`` and
    ``"1.bias"``: those of the twin ``torch.nn.Sequential(torch.nn.Upsample(
    scale_factor=s, mode="nearest"), torch.nn.Conv2d(...))``.

    With a stride-1 convolution the upsampled image is never built: the output pixels
    of each phase ``(a, b)`` (``s * s`` of them) are a stride-1 convolution of the
    low-resolution input with a kernel whose taps that read the same input pixel are
    summed (see :func:`~denoise.scratch.kernels.geometry.upsample_phases`): the same result
    with ``s * s`` fewer rows, and less memory.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, scale_factor=2,
                 stride=1, padding=0, dilation=1, groups: int = 1, bias: bool = True, *,
                 dtype: torch.dtype | None = None, device=None) -> None:
        super().__init__(NearestUpsampling(scale_factor),
                         Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                                dilation, groups, bias, dtype=dtype, device=device))

    @property
    def upsample(self) -> NearestUpsampling:
        return self[0]

    @property
    def conv(self) -> Conv2d:
        return self[1]

    def forward(self, x: Tensor) -> Tensor:
        conv = self.conv
        if conv.stride != (1, 1):
            self._save(None)
            return super().forward(x)
        check_input(x, self, channels=conv.in_channels, like=conv.weight.data)
        sh, sw = self.upsample.scale_factor
        size = conv.output_size(x.shape[2] * sh, x.shape[3] * sw)
        phases = upsample_phases((sh, sw), conv.window, size)
        x_nhwc = to_nhwc(x)
        weight = conv.weight.data.clone()
        kernels = [phase.kernel(weight) for phase in phases]
        y = x_nhwc.new_empty(x.shape[0], size[0], size[1], conv.out_channels)
        views = [y[:, a::sh, b::sw] for a, b in (phase.offset for phase in phases)]
        if all(routes.transposed_forward(k, p.window) for k, p in zip(kernels, phases)):
            # every phase in the transposed form: one product serves them all
            matrix = torch.cat([routes.transposed_form(k) for k in kernels], dim=1)
            fast.col2im_conv_into(x_nhwc, matrix, conv._bias_data(),
                                  [(flip(p.window), view) for p, view in zip(phases, views)])
        else:
            for phase, kernel, view in zip(phases, kernels, views):
                view.copy_(routes.conv_forward(x_nhwc, kernel, conv._bias_data(), phase.window,
                                               phase.size))
        out = from_nhwc(y)
        self._save(x_nhwc, weight, phases, out.shape)
        return out

    def backward(self, grad: Tensor) -> Tensor:
        saved = self._peek_saved()
        if saved[0] is None:
            self._release_saved()
            return super().backward(grad)
        x_nhwc, weight, phases, shape = saved
        grad_nhwc = to_nhwc(check_grad(grad, self, shape, x_nhwc.dtype, x_nhwc.device))
        self._release_saved()
        sh, sw = self.upsample.scale_factor
        kernels = [phase.kernel(weight) for phase in phases]
        views = [grad_nhwc[:, a::sh, b::sw] for a, b in (phase.offset for phase in phases)]
        if all(routes.transposed_backward(k, p.window) for k, p in zip(kernels, phases)):
            # every phase in the transposed form: one product serves them all
            matrix = torch.cat([routes.transposed_form(k) for k in kernels], dim=1)
            grad_x, grad_t = fast.col2im_conv_into_backward(
                x_nhwc, [(flip(p.window), view) for p, view in zip(phases, views)], matrix)
            blocks = grad_t.split([k.shape[0] * k.shape[2] * k.shape[3] for k in kernels], dim=1)
            grad_kernels = [routes.from_transposed_form(b, k.shape)
                            for b, k in zip(blocks, kernels)]
        else:
            grad_x, grad_kernels = None, []
            for phase, kernel, view in zip(phases, kernels, views):
                part_x, part_k = routes.conv_backward(x_nhwc, view, kernel, phase.window)
                grad_x = part_x if grad_x is None else grad_x.add_(part_x)
                grad_kernels.append(part_k)
        for phase, grad_kernel in zip(phases, grad_kernels):
            self.conv.weight.grad.add_(phase.weight_grad(grad_kernel))
        self.conv._accumulate_bias(grad_nhwc)
        return from_nhwc(grad_x)
