"""The convolution kernels: the reference against torch, every fast path against the reference.

``denoise.scratch.kernels.reference`` is the one reference convolution (plain im2col,
forward and backward). It is checked first against ``torch.nn.functional.conv2d`` and
autograd, and bit for bit against ``F.conv2d`` on the EE-559 course's check (float32,
one image). Then each fast formulation of ``denoise.scratch.kernels.fast`` (and the
choice of ``routes``) is checked against the reference in float64, for random output
gradients, on a table of geometries (strides, padding, dilation, even kernels, one-row
images, 1x1 kernels), whole, in chunks of single images and in row blocks. The internal
pieces (column writers, col2im, padding, chunk plans) are tested at the end.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as TF

from denoise import scratch
from denoise.scratch.kernels import fast, reference, routes
from denoise.scratch.kernels.geometry import (
    Window,
    conv_matrix,
    flip,
    folds_exactly,
    from_nhwc,
    to_nhwc,
    transposed_matrix,
)

F64 = torch.float64

#: name -> (kernel, stride, padding, dilation, (H, W)) of a convolution's input
GEOMETRIES = {
    "3x3-same": ((3, 3), (1, 1), (1, 1), (1, 1), (7, 9)),
    "3x3-valid": ((3, 3), (1, 1), (0, 0), (1, 1), (6, 5)),
    "3x3-s2-p1": ((3, 3), (2, 2), (1, 1), (1, 1), (9, 8)),
    "3x3-s3-p2": ((3, 3), (3, 3), (2, 2), (1, 1), (10, 11)),
    "3x2-s(2,3)-p(1,2)-d(2,1)": ((3, 2), (2, 3), (1, 2), (2, 1), (9, 11)),
    "5x3-same-d(2,1)": ((5, 3), (1, 1), (4, 1), (2, 1), (9, 6)),
    "5x5-p1": ((5, 5), (1, 1), (1, 1), (1, 1), (9, 7)),
    "1x1": ((1, 1), (1, 1), (0, 0), (1, 1), (4, 5)),
    "1x1-s2": ((1, 1), (2, 2), (0, 0), (1, 1), (5, 6)),
    "even-2x2": ((2, 2), (1, 1), (0, 0), (1, 1), (5, 6)),
    "even-2x2-p1": ((2, 2), (1, 1), (1, 1), (1, 1), (4, 5)),
    "even-2x2-same-d2": ((2, 2), (1, 1), (1, 1), (2, 2), (6, 5)),
    "even-2x4-p(1,2)-d(2,1)": ((2, 4), (1, 1), (1, 2), (2, 1), (6, 7)),
    "even-2x2-s2": ((2, 2), (2, 2), (0, 0), (1, 1), (6, 7)),
    "row-1x3-same": ((1, 3), (1, 1), (0, 1), (1, 1), (1, 8)),
    "row-1x5-s2-p2": ((1, 5), (1, 2), (0, 2), (1, 1), (1, 9)),
    "row-3x3-p1": ((3, 3), (1, 1), (1, 1), (1, 1), (1, 6)),
    "row-3x3-s2-p1": ((3, 3), (2, 2), (1, 1), (1, 1), (1, 7)),
}
STRIDE1 = [name for name, geometry in GEOMETRIES.items() if geometry[1] == (1, 1)]
CHUNKS = ["whole", "images", "rows"]


def _random(shape, seed, dtype=F64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _case(name, in_channels=5, out_channels=4, batch=3, bias=True):
    """Input ``(N, C, H, W)``, weight, bias, window and output size of a geometry."""
    kernel, stride, padding, dilation, size = GEOMETRIES[name]
    win = Window(kernel, stride, padding, dilation)
    x = _random((batch, in_channels, *size), 1)
    weight = _random((out_channels, in_channels, *kernel), 2)
    b = _random((out_channels,), 3) if bias else None
    return x, weight, b, win, win.output_size(*size)


def _chunked(mode, monkeypatch):
    """Force the fast kernels' chunk plans: one image per chunk, or rows of one image."""
    if mode == "images":
        def one_image_each(batch, small, row_bytes, *activations):
            return [fast._Chunk(n, n + 1, 0, small[0]) for n in range(batch)], False
        monkeypatch.setattr(fast, "_plan", one_image_each)
        monkeypatch.setattr(fast, "CHUNK_BYTES", 1)  # one image per block for the reference
        monkeypatch.setattr(fast, "CHUNK_ACTIVATIONS", 1e-9)
    elif mode == "rows":
        monkeypatch.setattr(fast, "_budget", lambda *activations: 1)


def _same(actual, expected, what, **tolerances):
    assert actual.shape == expected.shape, f"{what}: {tuple(actual.shape)} != {tuple(expected.shape)}"
    torch.testing.assert_close(actual, expected, msg=lambda m: f"{what}: {m}", **tolerances)


def _conv_gradient_matrix(grad_m, weight):
    """A ``(O, kh * kw * C)`` gradient of :func:`conv_matrix` as a weight gradient."""
    out_channels, in_channels, kh, kw = weight.shape
    return grad_m.view(out_channels, kh, kw, in_channels).permute(0, 3, 1, 2)


# -- the reference against torch ----------------------------------------------------------

@pytest.mark.parametrize("name", list(GEOMETRIES))
@pytest.mark.parametrize("bias", [True, False])
def test_reference_matches_torch(name, bias):
    x, weight, b, win, _ = _case(name, bias=bias)
    x_t, w_t = x.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    b_t = b.clone().requires_grad_(True) if bias else None
    _, stride, padding, dilation, _ = GEOMETRIES[name]
    with torch.enable_grad():
        expected = TF.conv2d(x_t, w_t, b_t, stride, padding, dilation)
    grad = _random(expected.shape, 4)
    expected.backward(grad)
    y = reference.forward(x, weight, b, win)
    grad_x, grad_w, grad_b = reference.backward(x, weight, grad, win)
    _same(y, expected.detach(), "output")
    _same(grad_x, x_t.grad, "input gradient")
    _same(grad_w, w_t.grad, "weight gradient")
    if bias:
        _same(grad_b, b_t.grad, "bias gradient")
    assert reference.backward(x, weight, grad, win, input_grad=False)[0] is None


@pytest.mark.parametrize("seed", range(10))
def test_reference_is_torch_s_own_float32_convolution_for_one_image(seed):
    """The course's check: ``F.conv2d`` of one 3x32x32 image (PyTorch's im2col and product,
    slow_conv2d) is the reference bit for bit, so ``allclose`` holds at ``atol=1e-8``,
    and the course's ``Conv2d`` (the scratch layer) computes exactly the reference."""
    torch.manual_seed(seed)
    x = torch.randn(1, 3, 32, 32)
    conv = scratch.Conv2d(3, 3, 3)
    expected = TF.conv2d(x, conv.weight.data, conv.bias.data)
    y = reference.forward(x, conv.weight.data, conv.bias.data, conv.window)
    assert torch.equal(y, expected)
    assert torch.equal(conv.forward(x), y)
    assert torch.allclose(conv.forward(x), expected)


def test_reference_columns_are_unfold_s():
    x = _random((2, 3, 7, 6), 1)
    win = Window((3, 2), (2, 1), (1, 2), (1, 2))
    small = win.output_size(7, 6)
    expected = TF.unfold(x, win.kernel, win.dilation, win.padding, win.stride)
    assert torch.equal(reference.columns(x, win, small), expected)
    v = _random(tuple(expected.shape), 2)
    torch.testing.assert_close(reference.fold(v, win, small, (7, 6)),
                               TF.fold(v, (7, 6), win.kernel, win.dilation, win.padding, win.stride))


# -- each fast formulation against the reference ------------------------------------------

@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_im2col_matches_the_reference(name, chunks, monkeypatch):
    _chunked(chunks, monkeypatch)
    x, weight, b, win, small = _case(name)
    x_nhwc = to_nhwc(x)
    y = fast.im2col_conv(x_nhwc, conv_matrix(weight), b, win, small)
    _same(from_nhwc(y), reference.forward(x, weight, b, win), "output")
    grad = _random((x.shape[0], weight.shape[0], *small), 4)
    grad_x, grad_m = fast.im2col_conv_backward(x_nhwc, to_nhwc(grad), conv_matrix(weight), win)
    expected_x, expected_w, _ = reference.backward(x, weight, grad, win)
    _same(from_nhwc(grad_x), expected_x, "input gradient")
    _same(_conv_gradient_matrix(grad_m, weight), expected_w, "weight gradient")


@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("out_channels", [4, 20], ids=["narrow", "wide"])
@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_few_channels_route_matches_the_reference(name, out_channels, chunks, monkeypatch):
    """The route of inputs with few channels: the reference's columns, a block of whole
    images at a time; for narrow outputs the reference itself, bit for bit in one block."""
    _chunked(chunks, monkeypatch)
    x, weight, b, win, small = _case(name, in_channels=3, out_channels=out_channels)
    x_nhwc = to_nhwc(x)
    y = from_nhwc(fast.few_channels_conv(x_nhwc, weight, b, win, small))
    expected = reference.forward(x, weight, b, win)
    if chunks == "whole" and out_channels < fast.WIDE_OUTPUT:
        assert torch.equal(y, expected)
    _same(y, expected, "output")
    grad = _random((x.shape[0], weight.shape[0], *small), 4)
    grad_w = fast.few_channels_weight_grad(x_nhwc, to_nhwc(grad), weight, win)
    _same(grad_w, reference.backward(x, weight, grad, win)[1], "weight gradient")


@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("name", STRIDE1)
def test_shifted_products_match_the_reference(name, chunks, monkeypatch):
    _chunked(chunks, monkeypatch)
    x, weight, b, win, small = _case(name)
    y = fast.shifted_conv(to_nhwc(x), conv_matrix(weight), b, win, small)
    _same(from_nhwc(y), reference.forward(x, weight, b, win), "output")


@pytest.mark.parametrize("name", [n for n in STRIDE1 if "same" in n])
@pytest.mark.parametrize("bias", [True, False])
def test_wrapped_products_match_the_reference(name, bias):
    x, weight, b, win, small = _case(name, bias=bias)
    x_nhwc = to_nhwc(x)
    assert fast.wraps(win, x_nhwc, small)
    y = fast.wrapped_conv(x_nhwc, conv_matrix(weight), b, win)
    _same(from_nhwc(y), reference.forward(x, weight, b, win), "output")


def _transposable(name):
    kernel, stride, padding, dilation, _ = GEOMETRIES[name]
    return stride == (1, 1) and min(flip(Window(kernel, stride, padding, dilation)).padding) >= 0


@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("name", [n for n in STRIDE1 if _transposable(n)])
def test_transposed_form_matches_the_reference(name, chunks, monkeypatch):
    """A stride-1 convolution as a transposed one with the flipped kernel: col2im forward,
    fold forward (where fold's geometry fits), and the backward by the columns of the
    output gradient."""
    _chunked(chunks, monkeypatch)
    x, weight, b, win, small = _case(name, in_channels=9, out_channels=2)
    x_nhwc, flipped = to_nhwc(x), flip(win)
    expected = reference.forward(x, weight, b, win)
    y = fast.col2im_conv(x_nhwc, routes.transposed_form(weight), b, flipped, small)
    _same(from_nhwc(y), expected, "col2im output")
    if folds_exactly(flipped, small, (x.shape[2], x.shape[3])):
        folded = weight.flip(2, 3).transpose(0, 1).reshape(x.shape[1], -1)
        _same(from_nhwc(fast.fold_conv(x_nhwc, folded, b, flipped, small)), expected, "fold output")
    grad = _random(tuple(expected.shape), 4)
    grad_x, grad_t = fast.col2im_conv_backward(x_nhwc, to_nhwc(grad), routes.transposed_form(weight),
                                               flipped)
    expected_x, expected_w, _ = reference.backward(x, weight, grad, win)
    _same(from_nhwc(grad_x), expected_x, "input gradient")
    _same(routes.from_transposed_form(grad_t, weight.shape), expected_w, "weight gradient")


@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("name", list(GEOMETRIES))
@pytest.mark.parametrize("extra", [0, 1])
def test_transposed_convolution_is_the_reference_s_input_gradient(name, extra, chunks, monkeypatch):
    """A transposed convolution (any stride, ``extra`` rows and columns no window reads,
    like an output padding) is the reference's input gradient, and its gradients are the
    reference's forward and weight gradient with the roles of the images swapped."""
    _chunked(chunks, monkeypatch)
    x, weight, _, win, small = _case(name, in_channels=4, out_channels=5)
    large = (x.shape[2] + extra, x.shape[3] + extra)
    v = _random((x.shape[0], weight.shape[0], *small), 5)  # the transposed conv's input
    wmat = transposed_matrix(weight)  # weight (5, 4, kh, kw): a transposed conv from 5 to 4
    y = fast.col2im_conv(to_nhwc(v), wmat, None, win, large)
    image = x.new_zeros(x.shape[0], x.shape[1], *large)
    _same(from_nhwc(y), reference.backward(image, weight, v, win)[0], "output")
    grad = _random(tuple(image.shape), 6)
    grad_v, grad_m = fast.col2im_conv_backward(to_nhwc(v), to_nhwc(grad), wmat, win)
    _same(from_nhwc(grad_v), reference.forward(grad, weight, None, win, small), "input gradient")
    kh, kw = win.kernel
    _same(grad_m.view(weight.shape[0], kh, kw, weight.shape[1]).permute(0, 3, 1, 2),
          reference.backward(grad, weight, v, win)[1], "weight gradient")


@pytest.mark.parametrize("chunks", ["whole", "rows"])
@pytest.mark.parametrize("channels", [(3, 4), (3, 20), (20, 18), (16, 24), (30, 3), (17, 20)],
                         ids=lambda c: f"{c[0]}-to-{c[1]}")
@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_routes_match_the_reference(name, channels, chunks, monkeypatch):
    """Whatever formulation ``routes`` picks for the channels and geometry (the reference's
    columns, wrapped or shifted products, transposed form by fold or col2im, im2col),
    forward and backward, with and without the input gradient."""
    _chunked(chunks, monkeypatch)
    x, weight, b, win, small = _case(name, *channels, batch=2)
    x_nhwc = to_nhwc(x)
    _same(from_nhwc(routes.conv_forward(x_nhwc, weight, b, win, small)),
          reference.forward(x, weight, b, win), "output")
    grad = _random((x.shape[0], weight.shape[0], *small), 4)
    expected_x, expected_w, _ = reference.backward(x, weight, grad, win)
    for input_grad in (True, False):
        grad_x, grad_w = routes.conv_backward(x_nhwc, to_nhwc(grad), weight, win, input_grad)
        _same(grad_w, expected_w, "weight gradient")
        if input_grad:
            _same(from_nhwc(grad_x), expected_x, "input gradient")
        else:
            assert grad_x is None


@pytest.mark.parametrize("scale", [2, 3, (2, 3)], ids=["x2", "x3", "x(2,3)"])
@pytest.mark.parametrize("args", [{"kernel_size": 3, "padding": 1},
                                  {"kernel_size": (2, 5), "padding": (0, 2), "dilation": (1, 2)},
                                  {"kernel_size": 3, "padding": 2, "dilation": 2}],
                         ids=["3x3-p1", "2x5-p(0,2)-d(1,2)", "3x3-p2-d2"])
@pytest.mark.parametrize("channels", [(4, 3), (16, 16), (40, 3)], ids=lambda c: f"{c[0]}-to-{c[1]}")
def test_upsampling_phases_match_the_reference(scale, args, channels):
    """Upsampling computes its convolution at low resolution, by phases (one product for
    all of them in the transposed form): the reference convolution of the upsampled image."""
    torch.manual_seed(0)
    layer = scratch.Upsampling(*channels, scale_factor=scale, **args).double()
    x = _random((2, channels[0], 3, 4), 1)
    sh, sw = layer.upsample.scale_factor
    upsampled = x.repeat_interleave(sh, 2).repeat_interleave(sw, 3)
    conv = layer.conv
    expected = reference.forward(upsampled, conv.weight.data, conv.bias.data, conv.window)
    y = layer(x)
    _same(y, expected, "output")
    grad = _random(tuple(y.shape), 2)
    grad_up, grad_w, grad_b = reference.backward(upsampled, conv.weight.data, grad, conv.window)
    summed = grad_up.reshape(2, channels[0], 3, sh, 4, sw).sum((3, 5))  # nearest upsampling's adjoint
    _same(layer.backward(grad), summed, "input gradient")
    _same(conv.weight.grad, grad_w, "weight gradient")
    _same(conv.bias.grad, grad_b, "bias gradient")


# -- pieces of the fast kernels -----------------------------------------------------------

def test_fold_of_im2col_is_its_adjoint():
    """The col2im of the kernels is the exact adjoint of their im2col, chunk by chunk."""
    win = Window((3, 2), (2, 1), (1, 2), (1, 2))
    large = _random((2, 7, 6, 3), 1)
    small = win.output_size(7, 6)
    chunk = fast._Chunk(0, 2, 0, small[0])
    cols = torch.empty(2 * small[0] * small[1], win.taps * 3, dtype=F64)
    fast._column_writer(large, win, small)(chunk, cols)
    v = _random(tuple(cols.shape), 2)
    back = torch.zeros_like(large)
    fast._col2im(v, win, chunk, back, small[1], True, fast._Buffers())
    torch.testing.assert_close((cols * v).sum(), (large * back).sum())
    expected = reference.columns(from_nhwc(large), win, small)
    assert torch.equal(cols.view(2, -1, 3, 2, 3).permute(0, 4, 2, 3, 1).reshape(2, 18, -1), expected)


def test_chunks_are_balanced():
    """Blocks of at most ``step``, as few as possible, sizes within one of each other."""
    for total, step in [(100, 11), (100, 100), (7, 3), (5, 1), (1, 4), (33, 8)]:
        blocks = fast._split(total, step)
        sizes = [stop - start for start, stop in blocks]
        assert blocks[0][0] == 0 and blocks[-1][1] == total
        assert all(blocks[k][1] == blocks[k + 1][0] for k in range(len(blocks) - 1))
        assert len(blocks) == -(-total // step) and max(sizes) <= step
        assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("top,left,height,width", [
    (1, 1, 7, 8), (2, 0, 9, 5), (0, 3, 5, 9), (-1, 1, 4, 8), (1, -2, 6, 3), (-1, -1, 3, 3),
    (0, 0, 5, 6), (6, 1, 8, 8)])
def test_padded_moves_and_crops_like_a_constant_pad(top, left, height, width):
    source = _random((2, 5, 6, 3), 4)
    padded = fast._padded(source, top, left, height, width)
    # the same with torch's padding: pad (or crop, negative) the top/left, then the far sides
    expected = TF.pad(source.permute(0, 3, 1, 2), (left, 0, top, 0))
    far_h, far_w = height - expected.shape[2], width - expected.shape[3]
    expected = TF.pad(expected, (0, far_w, 0, far_h)).permute(0, 2, 3, 1)
    assert torch.equal(padded, expected)


@pytest.mark.parametrize("padding", [(0, 0), (1, 0)])
def test_shifted_products_for_part_of_the_outputs(padding):
    """Windows that stop short of the far side (as in upsampling phases): rows still align."""
    x = _random((2, 16, 6, 9), 3)
    weight = _random((5, 16, 3, 3), 4)
    win = Window((3, 3), (1, 1), padding)
    small = (3, 4)  # fewer outputs than the input allows
    y = fast.shifted_conv(to_nhwc(x), conv_matrix(weight), None, win, small)
    expected = reference.forward(x, weight, None, win, small)
    torch.testing.assert_close(from_nhwc(y), expected)
    torch.testing.assert_close(expected, TF.conv2d(x, weight, padding=padding)[:, :, :3, :4])


WRAPPED = [  # (N, H, W, C), kernel, dilation: "same" windows, down to one-row images
    ((2, 7, 9, 5), (3, 3), (1, 1)), ((3, 5, 6, 3), (5, 5), (1, 1)), ((1, 3, 3, 2), (3, 3), (1, 1)),
    ((2, 6, 6, 4), (3, 3), (2, 2)), ((3, 1, 5, 3), (1, 5), (1, 1)), ((2, 9, 6, 3), (5, 3), (2, 1)),
    ((2, 5, 7, 4), (3, 1), (1, 1)), ((2, 4, 8, 3), (1, 3), (1, 3)), ((2, 4, 4, 2), (1, 1), (1, 1)),
    ((2, 5, 8, 3), (2, 4), (2, 2))]  # even kernels: no tap reads the pixel itself


def _same_window(kernel, dilation):
    return Window(kernel, (1, 1), tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation)), dilation)


@pytest.mark.parametrize("shape,kernel,dilation", WRAPPED)
@pytest.mark.parametrize("bias", [False, True])
def test_wrapped_products_equal_a_padded_convolution(shape, kernel, dilation, bias):
    """Shifted products on the unpadded input, less the contributions that wrapped around
    an image edge, give the zero-padded convolution."""
    win = _same_window(kernel, dilation)
    x, weight = _random(shape, 1), _random((3, shape[3], *kernel), 2)
    assert fast.wraps(win, x, shape[1:3])
    assert not fast.wraps(win, x, (shape[1], shape[2] + 1))  # another output size: not "same"
    b = _random((3,), 3) if bias else None
    y = fast.wrapped_conv(x, conv_matrix(weight), b, win)
    torch.testing.assert_close(from_nhwc(y), reference.forward(from_nhwc(x), weight, b, win))
    expected = TF.conv2d(from_nhwc(x), weight, b, padding=win.padding, dilation=dilation)
    torch.testing.assert_close(from_nhwc(y), expected)


@pytest.mark.parametrize("shape,kernel,dilation", WRAPPED)
def test_wrapped_columns_equal_the_reference_s_in_every_chunk(shape, kernel, dilation):
    """The columns built without padding equal the reference's (and ``unfold``'s), exactly,
    for the whole batch, for each image and for row blocks of one image (every entry is
    written), also as a block of columns of a wider matrix (the entries beside it are
    left alone)."""
    batch, height, width, channels = shape
    win = _same_window(kernel, dilation)
    x = _random(shape, 4)
    expected = reference.columns(from_nhwc(x), win, (height, width))
    assert torch.equal(expected, TF.unfold(from_nhwc(x), kernel, dilation=dilation, padding=win.padding))
    expected = (expected.view(batch, channels, *kernel, height * width).permute(0, 4, 2, 3, 1)
                .reshape(batch * height * width, -1))
    chunks = [fast._Chunk(0, batch, 0, height)]
    chunks += [fast._Chunk(n, n + 1, 0, height) for n in range(batch)]
    chunks += [fast._Chunk(batch - 1, batch, r0, r1) for r0, r1 in fast._split(height, 2)]
    for chunk in chunks:
        start = (chunk.n0 * height + chunk.r0) * width
        count = chunk.images * chunk.rows * width
        wide = torch.full((count, win.taps * channels + 5), float("nan"), dtype=F64)
        for out in (wide[:, :win.taps * channels].contiguous(), wide[:, 2:-3]):
            fast._wrapped_im2col(x.view(-1, channels), win, (height, width), chunk, out)
            assert torch.equal(out, expected[start:start + count])
        assert wide[:, :2].isnan().all() and wide[:, -3:].isnan().all()


def test_fold_geometry_needs_the_far_side_padded_alike():
    conv = Window((3, 3), (1, 1), (1, 1))
    assert folds_exactly(flip(conv), (6, 7), (6, 7))  # a "same" convolution
    assert folds_exactly(flip(Window((3, 2), (1, 1), (0, 1), (2, 1))), (4, 8), (8, 7))
    # an upsampling phase: the windows stop one row short of the far side
    assert not folds_exactly(Window((2, 2), (1, 1), (1, 1)), (1, 2), (1, 1))
