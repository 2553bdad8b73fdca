"""The U-Nets: architecture, any input size, honest receptive field, registry names."""
import pytest
import torch

from denoise.models import create_model, get_entry
from denoise.models.unet import (
    N2NUNet,
    SmallUNet,
    conv_receptive_radius,
    pad_to_multiple,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _gradient_reach(model, size: int, pos: int) -> int:
    """Largest distance (pixels) from output pixel (pos, pos) to an input pixel that changes it."""
    x = torch.rand(1, model.channels, size, size, requires_grad=True)
    model(x)[0, 0, pos, pos].backward()
    nz = (x.grad.abs().sum(1)[0] != 0).nonzero() - pos
    return int(nz.abs().max())


@pytest.mark.parametrize("cls", [N2NUNet, SmallUNet])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("hw", [(32, 32), (37, 50), (5, 3), (1, 7)])
def test_any_size_gives_same_size(cls, channels, hw):
    torch.manual_seed(0)
    model = cls(channels=channels, features=8)
    x = torch.rand(2, channels, *hw)
    y = model(x, sigma=0.1)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_sigma_is_ignored():
    torch.manual_seed(0)
    model = N2NUNet(channels=1, features=8).eval()
    x = torch.rand(1, 1, 20, 24)
    assert torch.equal(model(x), model(x, sigma=torch.tensor([0.3])))


def test_n2n_architecture():
    model = N2NUNet(channels=3)
    assert model.enc0.out_channels == 48
    assert all(c.out_channels == 48 for c in model.enc)
    # five 2x2 poolings: a 64x64 input reaches the bottleneck at 2x2
    shapes = []
    model.enc[5].register_forward_hook(lambda m, i, o: shapes.append(o.shape[-2:]))
    model(torch.rand(1, 3, 64, 64))
    assert tuple(shapes[0]) == (2, 2)
    # the last skip concatenates the input itself; the output is linear (can leave [0, 1])
    assert model.dec1a.in_channels == 96 + 3
    with torch.no_grad():
        model.dec1c.bias.fill_(5.0)
    assert model(torch.rand(1, 3, 32, 32)).min() > 1.0


def test_small_unet_has_sigmoid_output_and_prelu():
    model = SmallUNet(channels=3)
    assert any(isinstance(m, torch.nn.PReLU) for m in model.modules())
    assert len(model.encoders) == 4
    y = model(10 * torch.randn(2, 3, 32, 32))
    assert 0 <= y.min() and y.max() <= 1


@pytest.mark.parametrize("cls,size,offsets", [(N2NUNet, 384, [0, 9, 23]), (SmallUNet, 128, [0, 3, 5])])
def test_receptive_field_bounds_the_gradient_reach(cls, size, offsets):
    """receptive_field is an upper bound of the measured reach, and not a loose one."""
    torch.manual_seed(0)
    model = cls(channels=1, features=4)
    reach = max(_gradient_reach(model, size, size // 2 + o) for o in offsets)
    assert reach <= model.receptive_field
    assert reach >= 0.9 * model.receptive_field


def test_receptive_radius_rules():
    assert conv_receptive_radius([("conv", 3)] * 4) == 4
    assert conv_receptive_radius([("conv", 3), ("pool", 2), ("conv", 3), ("up", 2), ("conv", 3)]) == 1 + 2 + 1 + 1
    with pytest.raises(ValueError):
        conv_receptive_radius([("dilate", 2)])


def test_pad_to_multiple_reflects_and_crops_back():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    y, hw = pad_to_multiple(x, 8)
    assert y.shape[-2:] == (8, 8) and hw == (3, 4)
    assert torch.equal(y[..., :3, :4], x)
    assert torch.equal(y[..., :3, 4], x[..., :3, 2])  # reflect, not zeros
    assert pad_to_multiple(x, 1)[0] is x
    tiny, _ = pad_to_multiple(torch.rand(1, 1, 2, 1), 32)  # reflect repeated, replicate for 1 px
    assert tiny.shape[-2:] == (32, 32)


def test_residual_form_starts_as_the_identity():
    torch.manual_seed(0)
    model = N2NUNet(channels=3, features=8, residual=True)
    x = torch.rand(2, 3, 21, 34)
    assert torch.equal(model(x), x)
    assert not torch.equal(N2NUNet(channels=3, features=8)(x), x)


@pytest.mark.parametrize("name,channels", [("n2n-unet-gray", 1), ("n2n-unet-color", 3)])
def test_registered_shipped_names(name, channels):
    model = create_model(name, pretrained=False)
    assert isinstance(model, N2NUNet) and model.channels == channels and model.residual
    entry = get_entry(name)
    assert entry.kind == "learned"
    card = entry.card()
    if card is not None:  # the shipped weights were trained with the registered defaults
        assert card["architecture"] == name
        assert all(getattr(model, k) == v for k, v in card["model_kwargs"].items())
        assert card["channels"] == channels


def test_registered_architectures():
    assert create_model("n2n-unet", pretrained=False, channels=1).channels == 1
    small = create_model("unet-small", pretrained=False, channels=1)
    assert isinstance(small, SmallUNet) and small.receptive_field > 0
    assert not get_entry("n2n-unet").has_weights()
