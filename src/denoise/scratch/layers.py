"""Convolutions, nearest upsampling and max pooling with PyTorch's arguments and layouts.

Weights have PyTorch's layouts: ``(out, in, kh, kw)`` for :class:`Conv2d` and
``(in, out, kh, kw)`` for :class:`TransposeConv2d`, with PyTorch's default initialisation
(consuming the global random generator in the same order, so that seeding torch gives
the same weights as the ``torch.nn`` layer). ``groups`` other than 1 and padding modes
other than zeros are not supported.

Outputs are ``(N, C, H, W)`` views of channels-last data, sometimes with gaps between
rows (see :mod:`denoise.scratch.functional`): use ``.reshape`` rather than ``.view``, or
``.contiguous()`` if a plain layout is needed.
"""
from __future__ import annotations

import math

import torch

from . import functional as F
from ._checks import check_grad, check_input
from .errors import ScratchError
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
        self.window = F.Window(F.pair(kernel_size, "kernel_size"), F.pair(stride, "stride"),
                               F.pair(padding, "padding", minimum=0),
                               F.pair(dilation, "dilation"))
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

    Each direction picks the cheapest formulation of :mod:`~denoise.scratch.functional`
    for the shape (:func:`conv_forward`, :func:`conv_backward`): all give the same
    result up to float rounding.
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
        x_nhwc = F.to_nhwc(x)
        weight = self.weight.data.clone()
        y = F.from_nhwc(conv_forward(x_nhwc, weight, self._bias_data(), self.window, small))
        self._save(x_nhwc, weight, y.shape)
        return y

    def backward(self, grad: Tensor) -> Tensor | None:
        x_nhwc, weight, shape = self._peek_saved()
        grad_nhwc = F.to_nhwc(check_grad(grad, self, shape, x_nhwc.dtype, x_nhwc.device))
        self._release_saved()
        grad_x, grad_w = conv_backward(x_nhwc, grad_nhwc, weight, self.window, self.input_grad)
        self.weight.grad.add_(grad_w)
        self._accumulate_bias(grad_nhwc)
        return None if grad_x is None else F.from_nhwc(grad_x)


#: Narrowest input channel count for which a convolution's forward pass uses the
#: channels-last formulations (shifted products at stride 1, else im2col): each tap is a
#: product, or an im2col run, of that many values, and too few is slow. Narrower inputs
#: (such as a first layer's 1 or 3 channels) go through ``unfold`` instead.
SHIFTED_MIN_CHANNELS = 16


def _flipped_ok(win: F.Window) -> bool:
    """Whether a window is stride 1 with padding small enough for the transposed form."""
    return win.stride == (1, 1) and min(F.flip(win).padding) >= 0


def _transposed_forward(weight: Tensor, win: F.Window) -> bool:
    """Whether the forward of a conv (``weight``: ``(O, C, kh, kw)``) takes the transposed
    form: stride 1 with a valid flipped window, and ``kh * kw * O <= C`` (its columns are
    then the narrowest)."""
    out_channels, in_channels, kh, kw = weight.shape
    return kh * kw * out_channels <= in_channels and _flipped_ok(win)


def _transposed_backward(weight: Tensor, win: F.Window) -> bool:
    """Whether the backward takes the transposed form: stride 1 and ``O <= C`` (the columns
    of the output gradient then serve both products)."""
    return win.stride == (1, 1) and weight.shape[0] <= weight.shape[1]


def _transposed_form(weight: Tensor) -> Tensor:
    """The ``(C, kh * kw * O)`` matrix of a stride-1 conv weight seen as a transposed conv."""
    return F.transposed_matrix(weight.flip(2, 3).transpose(0, 1))


def _from_transposed_form(grad: Tensor, shape: torch.Size) -> Tensor:
    """Gradient of the :func:`_transposed_form` matrix as a conv weight gradient of ``shape``."""
    out_channels, in_channels, kh, kw = shape
    return grad.view(in_channels, kh, kw, out_channels).permute(3, 0, 1, 2).flip(2, 3)


def conv_forward(x: Tensor, weight: Tensor, bias: Tensor | None, win: F.Window,
                 small: tuple[int, int]) -> Tensor:
    """Channels-last convolution by the cheapest formulation (``weight``: ``(O, C, kh, kw)``).

    Stride 1 with ``kh * kw * O <= C``: the transposed form, whose columns are the
    narrowest, by a batched product and ``fold`` (the result is then a channels-last
    view of channels-first data); fewer than :data:`SHIFTED_MIN_CHANNELS` input channels:
    ``unfold`` and batched products; a "same" stride-1 convolution: shifted products on
    the unpadded input (:func:`~denoise.scratch.functional.wrapped_conv`); other stride-1
    ones: shifted products on a padded copy; otherwise im2col.
    """
    in_channels = weight.shape[1]
    if _transposed_forward(weight, win):
        flipped = F.flip(win)
        if F.folds_exactly(flipped, small, (x.shape[1], x.shape[2])):
            folded = weight.flip(2, 3).transpose(0, 1).reshape(in_channels, -1)
            return F.fold_conv(x, folded, bias, flipped, small)
        return F.col2im_conv(x, _transposed_form(weight), bias, flipped, small)
    if in_channels < SHIFTED_MIN_CHANNELS and F.folds_exactly(win, x.shape[1:3], small):
        return F.unfold_conv(x, weight, bias, win, small)
    if F.wraps(win, x, small):
        return F.wrapped_conv(x, F.conv_matrix(weight), bias, win)
    if win.stride == (1, 1):
        return F.shifted_conv(x, F.conv_matrix(weight), bias, win, small)
    return F.im2col_conv(x, F.conv_matrix(weight), bias, win, small)


def conv_backward(x: Tensor, grad: Tensor, weight: Tensor, win: F.Window,
                  input_grad: bool = True) -> tuple[Tensor | None, Tensor]:
    """Gradients ``(grad_x, grad_weight)`` of :func:`conv_forward`.

    Without ``grad_x`` and with few input channels: ``unfold`` of the input (as in the
    forward). Stride 1 with ``O <= C``: im2col of the output gradient (the transposed
    form), whose columns serve both products; otherwise im2col of the input, and col2im
    for ``grad_x``.
    """
    out_channels, in_channels, kh, kw = weight.shape
    if (not input_grad and in_channels < SHIFTED_MIN_CHANNELS
            and F.folds_exactly(win, x.shape[1:3], grad.shape[1:3])):
        return None, F.unfold_conv_weight_grad(x, grad, win).view(weight.shape)
    if _transposed_backward(weight, win):
        grad_x, grad_t = F.col2im_conv_backward(x, grad, _transposed_form(weight), F.flip(win),
                                                input_grad)
        return grad_x, _from_transposed_form(grad_t, weight.shape)
    grad_x, grad_m = F.im2col_conv_backward(x, grad, F.conv_matrix(weight), win, input_grad)
    return grad_x, grad_m.view(out_channels, kh, kw, in_channels).permute(0, 3, 1, 2)


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
        self.output_padding = F.pair(output_padding, "output_padding", minimum=0)
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
        x_nhwc = F.to_nhwc(x)
        wmat = F.transposed_matrix(self.weight.data)
        y = F.from_nhwc(F.col2im_conv(x_nhwc, wmat, self._bias_data(), self.window, size))
        self._save(x_nhwc, wmat, y.shape)
        return y

    def backward(self, grad: Tensor) -> Tensor:
        x_nhwc, wmat, shape = self._peek_saved()
        grad_nhwc = F.to_nhwc(check_grad(grad, self, shape, x_nhwc.dtype, x_nhwc.device))
        self._release_saved()
        grad_x, grad_w = F.col2im_conv_backward(x_nhwc, grad_nhwc, wmat, self.window)
        kh, kw = self.kernel_size
        self.weight.grad.add_(grad_w.view(self.in_channels, kh, kw, self.out_channels)
                              .permute(0, 3, 1, 2))
        self._accumulate_bias(grad_nhwc)
        return F.from_nhwc(grad_x)

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
        x_nhwc = F.to_nhwc(x)
        y = x_nhwc[:, :, None, :, None, :].expand(n, h, sh, w, sw, c).reshape(n, h * sh, w * sw, c)
        self._save(x.shape, x.dtype, x.device)
        return F.from_nhwc(y)

    def backward(self, grad: Tensor) -> Tensor:
        (n, c, h, w), dtype, device = self._peek_saved()
        sh, sw = self.scale_factor
        check_grad(grad, self, torch.Size((n, c, h * sh, w * sw)), dtype, device)
        self._release_saved()
        grad_nhwc = F.to_nhwc(grad).view(n, h, sh, w, sw, c)
        return F.from_nhwc(grad_nhwc.sum((2, 4)))

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
    summed (see :func:`~denoise.scratch.functional.upsample_phases`): the same result
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
        phases = F.upsample_phases((sh, sw), conv.window, size)
        x_nhwc = F.to_nhwc(x)
        weight = conv.weight.data.clone()
        kernels = [_merged_kernel(weight, phase) for phase in phases]
        y = x_nhwc.new_empty(x.shape[0], size[0], size[1], conv.out_channels)
        views = [y[:, a::sh, b::sw] for a, b in (phase.offset for phase in phases)]
        if all(_transposed_forward(k, p.window) for k, p in zip(kernels, phases)):
            # every phase in the transposed form: one product serves them all
            matrix = torch.cat([_transposed_form(k) for k in kernels], dim=1)
            F.col2im_conv_into(x_nhwc, matrix, conv._bias_data(),
                               [(F.flip(p.window), view) for p, view in zip(phases, views)])
        else:
            for phase, kernel, view in zip(phases, kernels, views):
                view.copy_(conv_forward(x_nhwc, kernel, conv._bias_data(), phase.window, phase.size))
        out = F.from_nhwc(y)
        self._save(x_nhwc, weight, phases, out.shape)
        return out

    def backward(self, grad: Tensor) -> Tensor:
        saved = self._peek_saved()
        if saved[0] is None:
            self._release_saved()
            return super().backward(grad)
        x_nhwc, weight, phases, shape = saved
        grad_nhwc = F.to_nhwc(check_grad(grad, self, shape, x_nhwc.dtype, x_nhwc.device))
        self._release_saved()
        sh, sw = self.upsample.scale_factor
        kernels = [_merged_kernel(weight, phase) for phase in phases]
        views = [grad_nhwc[:, a::sh, b::sw] for a, b in (phase.offset for phase in phases)]
        if all(_transposed_backward(k, p.window) for k, p in zip(kernels, phases)):
            # every phase in the transposed form: one product serves them all
            matrix = torch.cat([_transposed_form(k) for k in kernels], dim=1)
            grad_x, grad_t = F.col2im_conv_into_backward(
                x_nhwc, [(F.flip(p.window), view) for p, view in zip(phases, views)], matrix)
            blocks = grad_t.split([k.shape[0] * k.shape[2] * k.shape[3] for k in kernels], dim=1)
            grad_kernels = [_from_transposed_form(b, k.shape) for b, k in zip(blocks, kernels)]
        else:
            grad_x, grad_kernels = None, []
            for phase, kernel, view in zip(phases, kernels, views):
                part_x, part_k = conv_backward(x_nhwc, view, kernel, phase.window)
                grad_x = part_x if grad_x is None else grad_x.add_(part_x)
                grad_kernels.append(part_k)
        for phase, grad_kernel in zip(phases, grad_kernels):
            rows, cols = phase.merge(weight)
            self.conv.weight.grad.add_(rows.t() @ grad_kernel @ cols)
        self.conv._accumulate_bias(grad_nhwc)
        return F.from_nhwc(grad_x)


def _merged_kernel(weight: Tensor, phase: F.Phase) -> Tensor:
    """The kernel ``(O, C, R_h, R_w)`` of one upsampling phase: taps summed per input pixel."""
    rows, cols = phase.merge(weight)
    return rows @ weight @ cols.t()


class MaxPool2d(Module):
    """Max pooling, ``torch.nn.MaxPool2d(kernel_size, stride=None, padding=0, dilation=1)``.

    Ties go to the first maximum in window order and NaN propagates, as in PyTorch; the
    gradient flows to that element only. ``ceil_mode`` is not supported.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1) -> None:
        super().__init__()
        self.window = F.Window(F.pair(kernel_size, "kernel_size"),
                               F.pair(kernel_size if stride is None else stride, "stride"),
                               F.pair(padding, "padding", minimum=0), F.pair(dilation, "dilation"))
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
        x_nhwc = F.to_nhwc(x)
        small = self.window.output_size(x.shape[2], x.shape[3])
        padded = self._padded(x_nhwc, -math.inf)
        kh, kw = self.window.kernel
        best = F.tap_view(padded, self.window, 0, 0, small).clone()
        index = torch.zeros(best.shape, dtype=torch.uint8 if kh * kw < 256 else torch.int32,
                            device=x.device)
        for tap in range(1, kh * kw):
            values = F.tap_view(padded, self.window, tap // kw, tap % kw, small)
            better = (values > best) | values.isnan()
            best = values.where(better, best)
            index.masked_fill_(better, tap)
        self._save(index, x.shape, x.dtype, x.device)
        return F.from_nhwc(best)

    def backward(self, grad: Tensor) -> Tensor:
        index, shape, dtype, device = self._peek_saved()
        n, c, _, _ = shape
        check_grad(grad, self, torch.Size((n, c, index.shape[1], index.shape[2])), dtype, device)
        self._release_saved()
        grad_nhwc = F.to_nhwc(grad)
        padded = self._padded(grad_nhwc.new_zeros(n, shape[2], shape[3], c), 0.0)
        kh, kw = self.window.kernel
        for tap in range(kh * kw):
            F.tap_view(padded, self.window, tap // kw, tap % kw, index.shape[1:3]).add_(
                grad_nhwc.where(index == tap, 0.0))
        (ph, pw) = self.window.padding
        return F.from_nhwc(padded[:, ph:ph + shape[2], pw:pw + shape[3]])

    def extra_repr(self) -> str:
        win = self.window
        return (f"kernel_size={win.kernel}, stride={win.stride}, padding={win.padding}, "
                f"dilation={win.dilation}")
