"""Geometry and layouts shared by the convolution kernels: windows, weight matrices, phases.

A :class:`Window` maps a *large* image (the input of a convolution, the output of a
transposed convolution) to a *small* one: tap ``(i, j)`` of small pixel ``(y, x)`` reads
large pixel ``(y * sh + i * dh - ph, x * sw + j * dw - pw)``; pixels outside the large
image read zero. Paddings may be negative inside the package (a crop).

The fast kernels work on channels-last images ``(N, H, W, C)``; the layers convert at
their boundary with :func:`to_nhwc` / :func:`from_nhwc`. The reference convolution
(:mod:`.reference`) works on PyTorch's ``(N, C, H, W)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ScratchError

Tensor = torch.Tensor


def pair(value, name: str, *, minimum: int = 1) -> tuple[int, int]:
    """Return ``value`` as a pair of ints ``>= minimum`` (an int is used for both sides)."""
    items = (value, value) if isinstance(value, int) else value
    try:
        items = tuple(items)
    except TypeError:
        raise ScratchError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if len(items) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise ScratchError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(items) < minimum:
        raise ScratchError(f"{name} must be >= {minimum}, got {value!r}")
    return items


@dataclass(frozen=True)
class Window:
    """Sliding-window geometry as (h, w) pairs: kernel size, stride, padding, dilation.

    ``padding`` is the offset before the first row and column (zeros are read beyond
    both ends as far as the windows reach).
    """

    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)

    def span(self, axis: int) -> int:
        """Extent of the dilated kernel along ``axis`` (0: height, 1: width)."""
        return self.dilation[axis] * (self.kernel[axis] - 1) + 1

    @property
    def taps(self) -> int:
        """Number of kernel positions ``kh * kw``."""
        return self.kernel[0] * self.kernel[1]

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Small-image size for a large image of ``height`` x ``width`` padded on both sides."""
        sizes = []
        for axis, size in enumerate((height, width)):
            padded = size + 2 * self.padding[axis]
            if padded < self.span(axis):
                raise ScratchError(
                    f"input of size {height}x{width} is smaller than the kernel "
                    f"(span {self.span(0)}x{self.span(1)} after padding {self.padding}); "
                    "pass a larger image or a smaller kernel")
            sizes.append((padded - self.span(axis)) // self.stride[axis] + 1)
        return sizes[0], sizes[1]

    def reach(self, axis: int, small: int) -> int:
        """Padded extent that ``small`` windows read along ``axis``."""
        return (small - 1) * self.stride[axis] + self.span(axis)


def flip(win: Window) -> Window:
    """The window of the same stride-1 convolution seen as a transposed convolution.

    A stride-1 convolution with kernel ``w`` and padding ``p`` equals a stride-1
    transposed convolution with the flipped kernel and padding ``d * (k - 1) - p``.
    """
    if win.stride != (1, 1):
        raise ValueError("only stride-1 windows can be flipped")
    padding = tuple(win.span(axis) - 1 - win.padding[axis] for axis in (0, 1))
    return Window(win.kernel, (1, 1), padding, win.dilation)


def folds_exactly(win: Window, large: tuple[int, int], small: tuple[int, int]) -> bool:
    """Whether ``fold`` with ``win`` (padding on both sides) maps ``small`` onto ``large``
    (and ``unfold`` maps ``large`` onto ``small``).

    ``fold`` and ``unfold`` pad both ends alike, whereas a :class:`Window` only fixes the
    padding before the first row and column: the two agree when the windows end exactly
    at the far side.
    """
    return all((large[axis] + 2 * win.padding[axis] - win.span(axis)) // win.stride[axis] + 1
               == small[axis] and win.padding[axis] >= 0 for axis in (0, 1))


def to_nhwc(x: Tensor) -> Tensor:
    """Contiguous channels-last data of an ``(N, C, H, W)`` tensor (no copy if already so)."""
    return x.permute(0, 2, 3, 1).contiguous()


def from_nhwc(y: Tensor) -> Tensor:
    """The ``(N, C, H, W)`` view of channels-last data ``(N, H, W, C)`` (no copy)."""
    return y.permute(0, 3, 1, 2)


def conv_matrix(weight: Tensor) -> Tensor:
    """A convolution weight ``(O, C, kh, kw)`` as the ``(kh * kw * C, O)`` matrix of the kernels
    (rows in the order of a channels-last column matrix)."""
    return weight.permute(2, 3, 1, 0).reshape(-1, weight.shape[0])


def transposed_matrix(weight: Tensor) -> Tensor:
    """A transposed-convolution weight ``(C, O, kh, kw)`` as the ``(C, kh * kw * O)`` matrix."""
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)


def tap_view(padded: Tensor, win: Window, i: int, j: int, small: tuple[int, int]) -> Tensor:
    """The pixels of a padded channels-last image that kernel tap ``(i, j)`` reads.

    Returns a strided view ``(N, small_h, small_w, C)`` of ``padded``: writing to it
    scatters values back to where the tap read them.
    """
    (sh, sw), (dh, dw) = win.stride, win.dilation
    return padded[:, i * dh:i * dh + (small[0] - 1) * sh + 1:sh,
                  j * dw:j * dw + (small[1] - 1) * sw + 1:sw]


@dataclass(frozen=True)
class Phase:
    """Output pixels ``(a + s_h * q, b + s_w * r)`` of nearest upsampling then a stride-1 conv.

    They form a stride-1 convolution of the *low-resolution* input whose kernel is
    ``merge[0] @ w @ merge[1].T``: the taps that read the same low-resolution pixel are
    summed. ``window`` is that convolution's geometry, ``size`` its output size and
    ``taps`` the merged tap of each original tap, per axis.
    """

    offset: tuple[int, int]
    window: Window
    size: tuple[int, int]
    taps: tuple[tuple[int, ...], tuple[int, ...]]

    def merge(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """The 0/1 matrices ``(R, k)`` that sum the kernel taps, one per axis."""
        matrices = []
        for axis, rows in enumerate(self.taps):
            matrix = like.new_zeros(self.window.kernel[axis], len(rows))
            columns = torch.arange(len(rows), device=like.device)
            matrix[torch.tensor(rows, device=like.device), columns] = 1
            matrices.append(matrix)
        return matrices[0], matrices[1]

    def kernel(self, weight: Tensor) -> Tensor:
        """The phase's kernel ``(O, C, R_h, R_w)`` from the conv weight ``(O, C, kh, kw)``: the
        taps that read the same input pixel summed."""
        rows, cols = self.merge(weight)
        return rows @ weight @ cols.t()

    def weight_grad(self, grad_kernel: Tensor) -> Tensor:
        """The conv weight's gradient from that of :meth:`kernel` (the adjoint of the sums)."""
        rows, cols = self.merge(grad_kernel)
        return rows.t() @ grad_kernel @ cols


def _axis_phase(a: int, scale: int, kernel: int, padding: int, dilation: int,
                out: int) -> tuple[int, tuple[int, ...], int, int]:
    """One axis of a :class:`Phase`: padding, merged tap of each tap, kernel size, outputs.

    Output ``a + scale * q`` reads upsampled pixel ``a + scale * q - padding + t * dilation``
    for tap ``t``, that is low-resolution pixel ``q + (a - padding + t * dilation) // scale``.
    """
    shifts = [(a - padding + t * dilation) // scale for t in range(kernel)]
    first = shifts[0]
    return -first, tuple(s - first for s in shifts), shifts[-1] - first + 1, -(-(out - a) // scale)


def upsample_phases(scale: tuple[int, int], win: Window, out: tuple[int, int]) -> list[Phase]:
    """The phases of nearest upsampling by ``scale`` followed by a stride-1 ``win``.

    ``out`` is the output size; phases without output pixels are left out.
    """
    if win.stride != (1, 1):
        raise ValueError("the phase decomposition needs a stride-1 convolution")
    phases = []
    for a in range(min(scale[0], out[0])):
        top, rows, kh, qh = _axis_phase(a, scale[0], win.kernel[0], win.padding[0],
                                        win.dilation[0], out[0])
        for b in range(min(scale[1], out[1])):
            left, cols, kw, qw = _axis_phase(b, scale[1], win.kernel[1], win.padding[1],
                                             win.dilation[1], out[1])
            window = Window((kh, kw), (1, 1), (top, left))
            phases.append(Phase((a, b), window, (qh, qw), (rows, cols)))
    return phases
