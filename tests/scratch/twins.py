"""The ``torch.nn`` twin of a scratch module: same architecture, same weights.

This is the one place that maps scratch modules to ``torch.nn`` (tests and the benchmark
``benchmarks/scratch_speed.py`` use it; the scratch package itself never imports
``torch.nn``). A twin is built from the scratch module's own hyper-parameters, then loads
its ``state_dict``, which also checks that the keys of both frameworks agree.
"""
from __future__ import annotations

from torch import nn

from denoise import scratch


def _layer_twin(module: scratch.Module) -> nn.Module:
    """The ``torch.nn`` layer with the hyper-parameters of a (non-container) scratch layer."""
    if isinstance(module, scratch.Conv2d):
        return nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                         module.padding, module.dilation, bias=module.bias is not None)
    if isinstance(module, scratch.TransposeConv2d):
        return nn.ConvTranspose2d(module.in_channels, module.out_channels, module.kernel_size,
                                  module.stride, module.padding, module.output_padding,
                                  bias=module.bias is not None, dilation=module.dilation)
    if isinstance(module, scratch.NearestUpsampling):
        return nn.Upsample(scale_factor=tuple(float(s) for s in module.scale_factor), mode="nearest")
    if isinstance(module, scratch.MaxPool2d):
        win = module.window
        return nn.MaxPool2d(win.kernel, win.stride, win.padding, win.dilation)
    if isinstance(module, scratch.PReLU):
        return nn.PReLU(module.num_parameters)
    if isinstance(module, scratch.LeakyReLU):
        return nn.LeakyReLU(module.negative_slope)
    if isinstance(module, scratch.MSE):
        return nn.MSELoss(reduction=module.reduction)
    if isinstance(module, scratch.L1):
        return nn.L1Loss(reduction=module.reduction)
    simple = {scratch.ReLU: nn.ReLU, scratch.Sigmoid: nn.Sigmoid, scratch.Tanh: nn.Tanh}
    if type(module) in simple:
        return simple[type(module)]()
    raise TypeError(f"no torch.nn twin for {type(module).__name__}")


def torch_structure(module: scratch.Module) -> nn.Module:
    """The ``torch.nn`` architecture of ``module``, with ``torch.nn``'s own initialisation."""
    if isinstance(module, scratch.Sequential):  # also Upsampling: Sequential(Upsample, Conv2d)
        return nn.Sequential(*[torch_structure(child) for child in module])
    return _layer_twin(module)


def torch_twin(module: scratch.Module) -> nn.Module:
    """A ``torch.nn`` module computing what ``module`` computes, with a copy of its weights."""
    twin = torch_structure(module)
    params = module.parameters()
    if params:
        twin.to(dtype=params[0].dtype, device=params[0].data.device)
    twin.load_state_dict(module.state_dict())
    return twin
