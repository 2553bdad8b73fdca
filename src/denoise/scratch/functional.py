"""Convolution kernels of the scratch framework, written with tensor operations only.

Layout. The kernels work on channels-last images ``(N, H, W, C)``: an im2col row is then
``kh * kw`` runs of ``C`` contiguous values, so building the column matrix is a fast copy
and every product is one dense matrix multiplication whose result is already the
channels-last output. The layers convert at their boundary with :func:`to_nhwc` /
:func:`from_nhwc`; the latter returns an ``(N, C, H, W)`` view with channels-last strides,
so consecutive layers never copy between layouts.

Geometry. Every kernel is described by a :class:`Window` that maps a *large* image (the
input of a convolution, the output of a transposed convolution) to a *small* one (the
output of the convolution). Column matrices have shape ``(rows, kh * kw * C)`` with
``rows`` the pixels of the small image and columns ordered ``(kh, kw, C)``.

Memory. Column matrices are never built for the whole batch: the work is cut into
chunks of whole images (or of output rows of one image, for very large images) whose
columns fit in :data:`CHUNK_BYTES`, and the chunk buffers are reused between calls (one
set per thread). The backward pass recomputes the columns from the saved input instead
of keeping them, as PyTorch's own convolution does.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterator

import torch

from .errors import ScratchError

Tensor = torch.Tensor

#: Size in bytes of one chunk's column matrix (the unit of work of every kernel).
CHUNK_BYTES = 4 * 2**20


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
    """Sliding-window geometry: kernel size, stride, zero padding and dilation, as (h, w) pairs."""

    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)

    def span(self, axis: int) -> int:
        """Extent of the dilated kernel along ``axis`` (0: height, 1: width)."""
        return self.dilation[axis] * (self.kernel[axis] - 1) + 1

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Size of the small image for a large image of ``height`` x ``width``."""
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

    @property
    def taps(self) -> int:
        """Number of kernel positions ``kh * kw``."""
        return self.kernel[0] * self.kernel[1]


def to_nhwc(x: Tensor) -> Tensor:
    """Contiguous channels-last data of an ``(N, C, H, W)`` tensor (no copy if already so)."""
    return x.permute(0, 2, 3, 1).contiguous()


def from_nhwc(y: Tensor) -> Tensor:
    """The ``(N, C, H, W)`` view of channels-last data ``(N, H, W, C)`` (no copy)."""
    return y.permute(0, 3, 1, 2)


class _Workspace(threading.local):
    """Reusable flat buffers, one set per thread, grown on demand."""

    def __init__(self) -> None:
        self.buffers: dict[tuple, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """A tensor of ``shape`` (uninitialised) backed by the buffer ``name``."""
        numel = 1
        for size in shape:
            numel *= size
        key = (name, like.dtype, like.device)
        buffer = self.buffers.get(key)
        if buffer is None or buffer.numel() < numel:
            buffer = torch.empty(numel, dtype=like.dtype, device=like.device)
            self.buffers[key] = buffer
        return buffer[:numel].view(shape)

    def clear(self) -> None:
        """Release every buffer (the next call allocates again)."""
        self.buffers.clear()


_workspace = _Workspace()


def clear_workspace() -> None:
    """Free the chunk buffers kept for reuse by the calling thread."""
    _workspace.clear()


@dataclass(frozen=True)
class _Chunk:
    """Images ``n0:n1`` and small-image rows ``r0:r1`` (all rows unless one image is split)."""

    n0: int
    n1: int
    r0: int
    r1: int

    @property
    def images(self) -> int:
        return self.n1 - self.n0

    @property
    def rows(self) -> int:
        return self.r1 - self.r0


def _chunks(batch: int, small: tuple[int, int], row_bytes: int) -> Iterator[_Chunk]:
    """Cut ``batch`` images of ``small`` pixels into chunks whose columns fit CHUNK_BYTES."""
    height, width = small
    pixels = max(1, CHUNK_BYTES // max(1, row_bytes))
    if pixels >= height * width:
        step = pixels // (height * width)
        for n0 in range(0, batch, step):
            yield _Chunk(n0, min(batch, n0 + step), 0, height)
        return
    step = max(1, pixels // width)
    for n in range(batch):
        for r0 in range(0, height, step):
            yield _Chunk(n, n + 1, r0, min(height, r0 + step))


def _split(batch: int, small: tuple[int, int], row_bytes: int) -> tuple[list[_Chunk], bool]:
    """The chunk plan and whether it splits images into row blocks."""
    plan = list(_chunks(batch, small, row_bytes))
    return plan, any(chunk.rows < small[0] for chunk in plan)


def _padded_rows(win: Window, chunk: _Chunk, large_h: int, whole: bool) -> tuple[int, int]:
    """Range ``[a0, a1)`` of padded large-image rows that a chunk's windows touch."""
    a0 = chunk.r0 * win.stride[0]
    a1 = (chunk.r1 - 1) * win.stride[0] + win.span(0)
    if whole:
        a1 = max(a1, large_h + 2 * win.padding[0])
    return a0, a1


def _im2col(large: Tensor, win: Window, chunk: _Chunk, small_w: int) -> Tensor:
    """Column matrix ``(pixels, kh * kw * C)`` of one chunk of the channels-last ``large``."""
    _, height, width, channels = large.shape
    (ph, pw), (sh, sw), (dh, dw) = win.padding, win.stride, win.dilation
    a0, a1 = _padded_rows(win, chunk, height, whole=False)
    if ph == 0 and pw == 0:
        source = large[chunk.n0:chunk.n1, a0:a1]
    else:
        source = _workspace.get("pad", (chunk.images, a1 - a0, width + 2 * pw, channels), large)
        lo, hi = max(a0, ph), min(a1, ph + height)
        _zero_border(source, lo - a0, hi - a0, pw, width)
        source[:, lo - a0:hi - a0, pw:pw + width] = large[chunk.n0:chunk.n1, lo - ph:hi - ph]
    n_s, h_s, w_s, c_s = source.stride()
    view = source.as_strided(
        (chunk.images, chunk.rows, small_w, win.kernel[0], win.kernel[1], channels),
        (n_s, sh * h_s, sw * w_s, dh * h_s, dw * w_s, c_s),
        source.storage_offset())
    cols = _workspace.get("cols", view.shape, large)
    cols.copy_(view)
    return cols.view(chunk.images * chunk.rows * small_w, win.taps * channels)


def _zero_border(buffer: Tensor, lo: int, hi: int, pw: int, width: int) -> None:
    """Zero the rows outside ``[lo, hi)`` and the ``pw`` columns on each side of a pad buffer."""
    buffer[:, :lo].zero_()
    buffer[:, hi:].zero_()
    if pw:
        buffer[:, lo:hi, :pw].zero_()
        buffer[:, lo:hi, pw + width:].zero_()


def tap_view(padded: Tensor, win: Window, i: int, j: int, small: tuple[int, int]) -> Tensor:
    """The pixels of the padded channels-last image that kernel tap ``(i, j)`` reads.

    Returns a strided view ``(N, small_h, small_w, C)`` of ``padded``: writing to it
    scatters values back to where the tap read them.
    """
    (sh, sw), (dh, dw) = win.stride, win.dilation
    return padded[:, i * dh:i * dh + (small[0] - 1) * sh + 1:sh,
                  j * dw:j * dw + (small[1] - 1) * sw + 1:sw]


def _col2im(cols: Tensor, win: Window, chunk: _Chunk, large: Tensor, small_w: int,
            whole: bool, bias: Tensor | None = None) -> None:
    """Sum one chunk's columns back onto the channels-last ``large`` (in place).

    With ``whole`` (the chunk holds whole images) the result overwrites the chunk's images
    (plus ``bias``); otherwise it is added to them, as row blocks of one image overlap.
    """
    _, height, width, channels = large.shape
    ph, pw = win.padding
    a0, a1 = _padded_rows(win, chunk, height, whole)
    target = _workspace.get("pad", (chunk.images, a1 - a0, width + 2 * pw, channels), large)
    target.zero_()
    blocks = cols.view(chunk.images, chunk.rows, small_w, win.kernel[0], win.kernel[1], channels)
    for i in range(win.kernel[0]):
        for j in range(win.kernel[1]):
            tap_view(target, win, i, j, (chunk.rows, small_w)).add_(blocks[:, :, :, i, j])
    lo, hi = max(a0, ph), min(a1, ph + height)
    inner = target[:, lo - a0:hi - a0, pw:pw + width]
    destination = large[chunk.n0:chunk.n1, lo - ph:hi - ph]
    if not whole:
        destination.add_(inner)
    elif bias is None:
        destination.copy_(inner)
    else:
        torch.add(inner, bias, out=destination)


def _rows(data: Tensor, chunk: _Chunk) -> Tensor:
    """The chunk's pixels of channels-last ``data`` as a matrix ``(pixels, C)`` (a view)."""
    return data[chunk.n0:chunk.n1, chunk.r0:chunk.r1].reshape(-1, data.shape[-1])


def conv2d(x: Tensor, wmat: Tensor, bias: Tensor | None, win: Window) -> Tensor:
    """Convolution (cross-correlation) of channels-last ``x`` with ``wmat`` ``(kh*kw*C, O)``.

    Returns the channels-last output ``(N, Ho, Wo, O)``.
    """
    batch, height, width, channels = x.shape
    small = win.output_size(height, width)
    out = torch.empty(batch, small[0], small[1], wmat.shape[1], dtype=x.dtype, device=x.device)
    plan, _ = _split(batch, small, wmat.shape[0] * x.element_size())
    for chunk in plan:
        cols = _im2col(x, win, chunk, small[1])
        if bias is None:
            torch.mm(cols, wmat, out=_rows(out, chunk))
        else:
            torch.addmm(bias, cols, wmat, out=_rows(out, chunk))
    return out


def conv2d_backward(x: Tensor, grad: Tensor, wmat: Tensor, win: Window,
                    input_grad: bool = True) -> tuple[Tensor | None, Tensor]:
    """Gradients of :func:`conv2d` for the output gradient ``grad`` (channels-last).

    Returns ``(grad_x, grad_wmat)``: ``grad_x`` channels-last like ``x`` (None unless
    ``input_grad``) and ``grad_wmat`` shaped like ``wmat``.
    """
    batch, height, width, _ = x.shape
    small = grad.shape[1:3]
    grad_w = torch.zeros_like(wmat)
    plan, split = _split(batch, small, wmat.shape[0] * x.element_size())
    grad_x = None
    if input_grad:
        grad_x = (torch.zeros_like if split else torch.empty_like)(x)
    for chunk in plan:
        cols = _im2col(x, win, chunk, small[1])
        rows = _rows(grad, chunk)
        grad_w.addmm_(cols.t(), rows)
        if grad_x is not None:
            torch.mm(rows, wmat.t(), out=cols)
            _col2im(cols, win, chunk, grad_x, small[1], whole=not split)
    return grad_x, grad_w


def conv_transpose2d(x: Tensor, wmat: Tensor, bias: Tensor | None, win: Window,
                     out_size: tuple[int, int]) -> Tensor:
    """Transposed convolution of channels-last ``x`` with ``wmat`` ``(C, kh*kw*O)``.

    ``out_size`` is the output's (height, width): the large image of ``win`` whose small
    image is ``x``. Returns the channels-last output ``(N, H, W, O)``.
    """
    batch, small_h, small_w, _ = x.shape
    out_channels = wmat.shape[1] // win.taps
    out = torch.empty(batch, out_size[0], out_size[1], out_channels, dtype=x.dtype, device=x.device)
    plan, split = _split(batch, (small_h, small_w), wmat.shape[1] * x.element_size())
    if split:
        out.zero_()
    for chunk in plan:
        cols = _workspace.get("cols", (chunk.images * chunk.rows * small_w, wmat.shape[1]), x)
        torch.mm(_rows(x, chunk), wmat, out=cols)
        _col2im(cols, win, chunk, out, small_w, whole=not split, bias=bias)
    if split and bias is not None:
        out.add_(bias)
    return out


def conv_transpose2d_backward(x: Tensor, grad: Tensor, wmat: Tensor, win: Window,
                              input_grad: bool = True) -> tuple[Tensor | None, Tensor]:
    """Gradients of :func:`conv_transpose2d` for the output gradient ``grad`` (channels-last).

    Returns ``(grad_x, grad_wmat)`` as :func:`conv2d_backward` does.
    """
    batch, small_h, small_w, _ = x.shape
    grad_w = torch.zeros_like(wmat)
    grad_x = torch.empty_like(x) if input_grad else None
    plan, _ = _split(batch, (small_h, small_w), wmat.shape[1] * x.element_size())
    for chunk in plan:
        cols = _im2col(grad, win, chunk, small_w)
        rows = _rows(x, chunk)
        grad_w.addmm_(rows.t(), cols)
        if grad_x is not None:
            torch.mm(cols, wmat.t(), out=_rows(grad_x, chunk))
    return grad_x, grad_w
