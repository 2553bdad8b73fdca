"""A small deep-learning framework written with tensor operations only.

No ``torch.nn`` module and no autograd: every layer computes its own gradients, with
tensor operations (``torch.empty``, ``cat``, ``arange``, matrix products, tensor methods)
and strided views. A test scans this package to keep it that way.

The contract, shared by every module (see :mod:`denoise.scratch.module`)::

    y = model.forward(x)                 # or model(x); saves what backward needs
    grad_x = model.backward(grad_y)      # accumulates parameter .grad, returns dL/dx
    loss = criterion(y, target); model.backward(criterion.backward())

Layers use PyTorch's names, arguments, weight layouts and default initialisation, and
``state_dict()`` / ``load_state_dict()`` exchange weights with the ``torch.nn`` twin.
Train under ``torch.set_grad_enabled(False)``::

    from denoise import scratch
    torch.set_grad_enabled(False)
    model, loss = scratch.ee559_net(), scratch.MSE()
    optimizer = scratch.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, y in batches:
        optimizer.zero_grad()
        value = loss(model(x), y)
        model.backward(loss.backward())
        optimizer.step()
"""
from .activations import LeakyReLU, PReLU, ReLU, Sigmoid, Tanh
from .errors import ScratchError
from .layers import (Conv2d, ConvTranspose2d, MaxPool2d, NearestUpsampling, TransposeConv2d,
                     Upsampling)
from .losses import L1, MSE
from .module import Module, Parameter, Sequential
from .nets import conv_net, ee559_net
from .optim import SGD, Adam, Optimizer

__all__ = [
    "Module", "Parameter", "Sequential",
    "Conv2d", "TransposeConv2d", "ConvTranspose2d", "NearestUpsampling", "Upsampling",
    "MaxPool2d", "ReLU", "LeakyReLU", "PReLU", "Sigmoid", "Tanh",
    "MSE", "L1", "SGD", "Adam", "Optimizer", "ScratchError",
    "ee559_net", "conv_net",
]
