"""Module mechanics, state dicts, optimizers and error messages of the scratch framework."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from denoise import scratch
from denoise.errors import DenoiseError, InputError

from .twins import torch_twin

F64 = torch.float64


# -- registration and state dicts ----------------------------------------------------------

class _Block(scratch.Module):
    def __init__(self):
        super().__init__()
        self.conv = scratch.Conv2d(2, 3, 3, padding=1)
        self.act = scratch.PReLU()
        self.scale = scratch.Parameter(torch.ones(1))

    def forward(self, x):
        return self.act(self.conv(x))


def test_parameters_are_registered_automatically():
    block = _Block()
    assert [name for name, _ in block.named_parameters()] == \
        ["scale", "conv.weight", "conv.bias", "act.weight"]
    block.scale = None  # replacing an attribute unregisters it
    assert "scale" not in block.state_dict()
    assert len(block.param()) == 3
    value, grad = block.param()[0]
    assert value is block.conv.weight.data and grad is block.conv.weight.grad


def test_state_dict_is_interchangeable_with_torch():
    model = scratch.ee559_net(channels=8)
    twin = torch_twin(model)
    assert list(model.state_dict()) == list(twin.state_dict()) == \
        ["0.weight", "0.bias", "2.weight", "2.bias", "4.1.weight", "4.1.bias", "6.1.weight", "6.1.bias"]
    torch.manual_seed(7)
    other = nn.Sequential(*twin)  # same architecture, fresh torch weights
    for module in other.modules():
        if isinstance(module, nn.Conv2d):
            module.reset_parameters()
    model.load_state_dict(other.state_dict())
    for key, value in other.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), other(x))


def test_load_state_dict_rejects_mismatches():
    model = scratch.Sequential(scratch.Conv2d(2, 3, 3), scratch.ReLU())
    good = model.state_dict()
    with pytest.raises(scratch.ScratchError, match="missing .*0.bias"):
        model.load_state_dict({"0.weight": good["0.weight"]})
    with pytest.raises(scratch.ScratchError, match="unexpected .*extra"):
        model.load_state_dict({**good, "extra": torch.zeros(1)})
    with pytest.raises(scratch.ScratchError, match=r"shape \(3, 2, 3, 3\)"):
        model.load_state_dict({**good, "0.weight": torch.zeros(3, 2, 2, 2)})
    with pytest.raises(scratch.ScratchError, match="mapping"):
        model.load_state_dict([good["0.weight"]])
    model.load_state_dict({"0.bias": torch.full((3,), 2.0)}, strict=False)
    assert torch.equal(model[0].bias.data, torch.full((3,), 2.0))


def test_zero_grad_and_dtype_conversion():
    model = scratch.Sequential(scratch.Conv2d(2, 3, 3), scratch.Tanh()).double()
    assert all(p.data.dtype == F64 and p.grad.dtype == F64 for p in model.parameters())
    x = torch.rand(1, 2, 5, 5, dtype=F64)
    model(x)
    model.backward(torch.ones(1, 3, 3, 3, dtype=F64))
    assert model[0].weight.grad.abs().sum() > 0
    model.zero_grad()
    assert all(p.grad.abs().sum() == 0 for p in model.parameters())


def test_backward_accumulates_like_torch():
    conv = scratch.Conv2d(2, 3, 3).double()
    x = torch.rand(1, 2, 5, 5, dtype=F64)
    grad = torch.rand(1, 3, 3, 3, dtype=F64)
    conv(x)
    conv.backward(grad)
    once = conv.weight.grad.clone()
    conv(x)
    conv.backward(grad)
    torch.testing.assert_close(conv.weight.grad, 2 * once)


def test_first_layer_can_skip_the_input_gradient():
    conv = scratch.Conv2d(3, 4, 3, padding=1).double()
    conv.input_grad = False
    conv(torch.rand(1, 3, 4, 4, dtype=F64))
    assert conv.backward(torch.rand(1, 4, 4, 4, dtype=F64)) is None
    assert conv.weight.grad.abs().sum() > 0


# -- optimizers -------------------------------------------------------------------------------

@pytest.mark.parametrize("scratch_cls,torch_cls,kwargs", [
    (scratch.SGD, torch.optim.SGD, dict(lr=0.1)),
    (scratch.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    (scratch.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.8, dampening=0.3)),
    (scratch.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (scratch.Adam, torch.optim.Adam, dict()),
    (scratch.Adam, torch.optim.Adam, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
], ids=["sgd", "sgd-momentum-wd", "sgd-dampening", "sgd-nesterov", "adam", "adam-wd"])
def test_optimizers_follow_torch(scratch_cls, torch_cls, kwargs):
    model = scratch.Sequential(scratch.Conv2d(2, 3, 3), scratch.PReLU()).double()
    twin = torch_twin(model)
    optimizer, reference = scratch_cls(model.parameters(), **kwargs), torch_cls(twin.parameters(), **kwargs)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        optimizer.zero_grad()
        reference.zero_grad()
        for (name, param), (_, twin_param) in zip(model.named_parameters(), twin.named_parameters()):
            grad = torch.randn(param.shape, generator=generator, dtype=F64)
            param.grad.add_(grad)
            twin_param.grad = grad.clone()
        optimizer.step()
        reference.step()
    for key, value in twin.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)


def test_optimizer_accepts_the_course_param_pairs():
    conv = scratch.Conv2d(1, 1, 1, bias=False)
    conv.weight.data.fill_(1.0)
    optimizer = scratch.SGD(conv.param(), lr=0.5)
    conv.weight.grad.fill_(1.0)
    optimizer.step()
    assert conv.weight.data.item() == 0.5


# -- errors: clear messages, never silent broadcasting ----------------------------------------

def _raises(match, call, *args, **kwargs):
    with pytest.raises(scratch.ScratchError, match=match) as info:
        call(*args, **kwargs)
    assert isinstance(info.value, InputError) and isinstance(info.value, DenoiseError)


def test_bad_inputs_to_forward():
    conv = scratch.Conv2d(3, 4, 3)
    _raises("4-D input", conv, torch.rand(3, 5, 5))
    _raises("expects 3 channels", conv, torch.rand(1, 2, 5, 5))
    _raises("float input", conv, torch.ones(1, 3, 5, 5, dtype=torch.uint8))
    _raises("float64 .* parameters are torch.float32", conv, torch.rand(1, 3, 5, 5, dtype=F64))
    _raises("torch.Tensor", conv, [[1.0]])
    _raises("smaller than the kernel", conv, torch.rand(1, 3, 2, 5))
    _raises("same shape", scratch.MSE(), torch.rand(2, 3), torch.rand(3))
    _raises("4-D", scratch.NearestUpsampling(2), torch.rand(2, 3))
    _raises("dimension 1 must have 3", scratch.PReLU(3), torch.rand(2, 4, 2, 2))


def test_bad_calls_to_backward():
    for layer, x in ((scratch.Conv2d(3, 4, 3), torch.rand(1, 3, 5, 5)), (scratch.ReLU(), torch.rand(2, 3)),
                     (scratch.Upsampling(3, 2, 3), torch.rand(1, 3, 4, 4)), (scratch.MSE(), None)):
        _raises("before forward", layer.backward, torch.rand(1))
        if x is None:
            continue
        y = layer(x)
        _raises("gradient of the output's shape", layer.backward, torch.rand(y.shape[0] + 1, *y.shape[1:]))
        _raises("float64 gradient|torch.float32 gradient", layer.backward, torch.rand(y.shape, dtype=F64))
        layer.backward(torch.rand(y.shape))
        _raises("before forward", layer.backward, torch.rand(y.shape))  # one backward per forward
    loss = scratch.MSE()
    loss(torch.rand(2), torch.rand(2))
    _raises("scalar gradient", loss.backward, torch.rand(2))


@pytest.mark.parametrize("make,match", [
    (lambda: scratch.NearestUpsampling(1.5), "positive integer"),
    (lambda: scratch.Upsampling(3, 3, 3, scale_factor=2.5), "positive integer"),
    (lambda: scratch.NearestUpsampling(0), "positive integer"),
    (lambda: scratch.NearestUpsampling(True), "positive integer"),
    (lambda: scratch.Conv2d(3, 3, 0), "kernel_size must be >= 1"),
    (lambda: scratch.Conv2d(3, 3, 3, padding=-1), "padding must be >= 0"),
    (lambda: scratch.Conv2d(3, 3, (3, 3, 3)), "pair of ints"),
    (lambda: scratch.Conv2d(4, 4, 3, groups=2), "groups=1"),
    (lambda: scratch.Conv2d(0, 4, 3), "in_channels"),
    (lambda: scratch.TransposeConv2d(3, 3, 3, stride=2, output_padding=2), "output_padding"),
    (lambda: scratch.MaxPool2d(2, padding=2), "at most half"),
    (lambda: scratch.MSE(reduction="none"), "reduction"),
    (lambda: scratch.SGD([], lr=0.1), "no parameters"),
    (lambda: scratch.SGD(scratch.Conv2d(1, 1, 1).parameters(), lr=-1), "lr"),
    (lambda: scratch.SGD(scratch.Conv2d(1, 1, 1).parameters(), lr=0.1, nesterov=True), "nesterov"),
    (lambda: scratch.Adam(scratch.Conv2d(1, 1, 1).parameters(), betas=(0.9, 1.0)), "betas"),
    (lambda: scratch.Sequential(nn.ReLU()), "scratch modules"),
    (lambda: scratch.ee559_net(channels=0), "channels"),
])
def test_bad_arguments(make, match):
    _raises(match, make)
