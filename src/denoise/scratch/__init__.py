"""A small deep-learning framework written with tensor operations only.

No ``torch.nn`` module and no autograd: every layer computes its own gradients with
tensor operations (``torch.empty``, ``cat``, ``arange``, matrix products, strided views,
tensor methods); ``tests/scratch/test_scratch_purity.py`` scans the package to keep it so.

The contract, shared by every module (see :mod:`denoise.scratch.module`)::

    y = model.forward(x)                 # or model(x); keeps what backward needs
    grad_x = model.backward(grad_y)      # adds to each parameter's .grad, returns dL/dx
    value = loss(y, target)              # losses: forward(prediction, target) -> 0-d tensor
    model.backward(loss.backward())      # loss.backward(grad=1.0) -> dL/dprediction

Each ``forward`` supports one ``backward``. Layers use PyTorch's names, arguments,
weight layouts and default initialisation; ``state_dict()`` / ``load_state_dict()``
exchange weights with the ``torch.nn`` twin in both directions. :class:`Upsampling` is
``Sequential(NearestUpsampling, Conv2d)`` (keys ``"1.weight"``, ``"1.bias"``), the twin
of ``nn.Sequential(nn.Upsample(scale_factor=s), nn.Conv2d(...))``. Outputs are
``(N, C, H, W)`` views of channels-last data (use ``.reshape``, not ``.view``). Bad input raises
:class:`ScratchError`, a :class:`denoise.errors.InputError`. Train under
``torch.set_grad_enabled(False)``::

    from denoise import scratch
    torch.set_grad_enabled(False)
    model, loss = scratch.ee559_net(), scratch.MSE()
    optimizer = scratch.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, target in batches:
        optimizer.zero_grad()
        loss(model(x), target)
        model.backward(loss.backward())
        optimizer.step()

Layout of the package: the layers (:mod:`.layers`: convolutions, upsampling;
:mod:`.pooling`; :mod:`.activations`; :mod:`.losses`), the skeleton (:mod:`.module`),
optimizers (:mod:`.optim`), ready-made networks (:mod:`.nets`), and the convolution
kernels (:mod:`.kernels`):

* :mod:`.kernels.reference`, the one reference convolution: plain im2col, forward and
  backward side by side, on ``(N, C, H, W)``, written to be read. Every fast path is
  tested against it; it also computes convolutions with few input and output channels,
  so the course's check of a ``Conv2d(3, 3, 3)`` against ``F.conv2d`` runs through it
  (its float32 sums are those of PyTorch's own CPU convolution for one image);
* :mod:`.kernels.fast`, where the speed comes from: channels-last data, im2col built by
  strided copies a chunk at a time from an input padded once per call, weight gradients
  as one matrix product per chunk, stride-1 convolutions as shifted products ("same"
  ones on the unpadded input, taking back what wrapped around an image edge), narrow
  outputs by a batched product and ``fold``;
* :mod:`.kernels.routes`, which of those a layer uses, per direction, and
  :mod:`.kernels.geometry` (windows, layouts, the phases that compute an upsampling
  convolution at low resolution).

``benchmarks/scratch_speed.py`` compares a training step with torch.nn + autograd and
records its results in ``benchmarks/results/scratch_speed.md``.
"""
from .activations import LeakyReLU, PReLU, ReLU, Sigmoid, Tanh
from .errors import ScratchError
from .layers import (
    Conv2d,
    ConvTranspose2d,
    NearestUpsampling,
    TransposeConv2d,
    Upsampling,
)
from .losses import L1, MSE
from .module import Module, Parameter, Sequential
from .nets import conv_net, ee559_net
from .optim import SGD, Adam, Optimizer
from .pooling import MaxPool2d

__all__ = [
    "Module", "Parameter", "Sequential",
    "Conv2d", "TransposeConv2d", "ConvTranspose2d", "NearestUpsampling", "Upsampling",
    "MaxPool2d", "ReLU", "LeakyReLU", "PReLU", "Sigmoid", "Tanh",
    "MSE", "L1", "SGD", "Adam", "Optimizer", "ScratchError",
    "ee559_net", "conv_net",
]
