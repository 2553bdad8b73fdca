"""Ready-made networks built from scratch modules (their ``torch.nn`` twins share the keys)."""
from __future__ import annotations

from .activations import ReLU, Sigmoid
from .errors import ScratchError
from .layers import Conv2d, Upsampling
from .module import Sequential


def _check_channels(channels: int) -> int:
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ScratchError(f"channels must be a positive int, got {channels!r}")
    return channels


def ee559_net(channels: int = 48) -> Sequential:
    """The network the EE-559 course requires, for RGB images with even height and width.

    ``Conv2d(stride 2), ReLU, Conv2d(stride 2), ReLU, Upsampling, ReLU, Upsampling,
    Sigmoid`` with 3x3 kernels and padding 1: two halvings then two doublings, so the
    output has the input's size (a multiple of 4 keeps every stage exact). State-dict
    keys: ``0.*``, ``2.*``, ``4.1.*``, ``6.1.*``.
    """
    c = _check_channels(channels)
    return Sequential(
        Conv2d(3, c, 3, stride=2, padding=1), ReLU(),
        Conv2d(c, c, 3, stride=2, padding=1), ReLU(),
        Upsampling(c, c, 3, scale_factor=2, padding=1), ReLU(),
        Upsampling(c, 3, 3, scale_factor=2, padding=1), Sigmoid(),
    )


def conv_net(channels: int = 48, depth: int = 5, image_channels: int = 3) -> Sequential:
    """A plain full-resolution network: ``depth`` 3x3 convolutions with ReLU between them.

    ``Conv2d(image_channels, channels)``, then ``depth - 2`` times
    ``Conv2d(channels, channels)``, then ``Conv2d(channels, image_channels)``, all with
    padding 1 (the benchmark's "48-channel five-layer conv net").
    """
    c = _check_channels(channels)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2:
        raise ScratchError(f"depth must be an int >= 2, got {depth!r}")
    widths = [_check_channels(image_channels)] + [c] * (depth - 1) + [image_channels]
    modules = []
    for index, (cin, cout) in enumerate(zip(widths[:-1], widths[1:])):
        modules.append(Conv2d(cin, cout, 3, padding=1))
        if index < depth - 1:
            modules.append(ReLU())
    return Sequential(*modules)
