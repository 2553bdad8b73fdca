"""RED-Net and the gated DSC network: shapes, identity at start, parameter counts, the gates
(fixed, learned and kept in (0, 1), absent), the forward pass against a written-out reference,
the receptive fields (gradient support and exact tiling), a short training run, bad input."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from denoise.errors import InputError
from denoise.models import rednet  # noqa: F401 - registers "rednet" and "dsc"
from denoise.models.base import Contract, contract
from denoise.models.rednet import DEFAULT_GATES, GatedDSC, REDNet
from denoise.models.registry import create_model
from denoise.tiling import tiled

pytestmark = pytest.mark.usefixtures("one_thread")


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _randomise(m: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-zero weights everywhere (the zero-initialised last layer too) and random biases,
    so that every path and every zero-padded border matters."""
    torch.manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            fan = mod.weight[0].numel() if isinstance(mod, torch.nn.Conv2d) else mod.weight.shape[0] * 9
            torch.nn.init.normal_(mod.weight, std=(2 / fan) ** 0.5)
            torch.nn.init.normal_(mod.bias, std=0.05)
    return m.eval()


# ---------------------------------------------------------------- shapes and start


@pytest.mark.parametrize("make", [lambda c: REDNet(c, depth=20), lambda c: REDNet(c, depth=30),
                                  lambda c: GatedDSC(c, "fixed"), lambda c: GatedDSC(c, "learned"),
                                  lambda c: GatedDSC(c, "none")],
                         ids=["red20", "red30", "dsc-fixed", "dsc-learned", "dsc-none"])
@pytest.mark.parametrize("shape", [(2, 1, 33, 19), (1, 3, 17, 40), (1, 3, 1, 5)])
def test_any_size_and_identity_at_start(make, shape):
    """Odd sizes (the DSC pads to 16 and crops back); the residual forms start at identity."""
    m = make(shape[1]).eval()
    x = torch.rand(shape)
    with torch.inference_mode():
        assert torch.equal(m(x), x)
        y = _randomise(m)(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_direct_output_is_not_identity_and_has_the_shape():
    m = GatedDSC(1, "fixed", output="direct").eval()
    x = torch.rand(1, 1, 21, 35)
    with torch.inference_mode():
        y = m(x)
    assert y.shape == x.shape and not torch.equal(y, x)


def test_parameter_counts():
    """3x3 layers: conv k -> f has 9 k f + f parameters; a transposed conv f -> k, 9 f k + k."""
    def red(c, depth, f=64):
        n = depth // 2
        return (9 * c * f + f) + (n - 1) * (9 * f * f + f) + (n - 1) * (9 * f * f + f) + (9 * f * c + c)

    def dsc(c):
        w = (c, 64, 64, 128, 256, 512)
        return sum(9 * w[i] * w[i + 1] + w[i + 1] + 9 * w[i + 1] * w[i] + w[i] for i in range(5))

    counts = {}
    for c in (1, 3):
        for depth in (20, 30):
            counts[f"red{depth}-c{c}"] = _params(REDNet(c, depth))
            assert counts[f"red{depth}-c{c}"] == red(c, depth)
        counts[f"dsc-c{c}"] = _params(GatedDSC(c, "fixed"))
        assert counts[f"dsc-c{c}"] == dsc(c) == _params(GatedDSC(c, "none"))
        assert _params(GatedDSC(c, "learned")) == dsc(c) + 4  # one scalar per connection
    assert counts == {"red20-c1": 665_921, "red30-c1": 1_035_201, "red20-c3": 668_227,
                      "red30-c3": 1_037_507, "dsc-c1": 3_172_993, "dsc-c3": 3_175_299}


def test_contract_and_registry():
    assert contract(REDNet(3, 20)) == Contract(20, False, 1, 1)
    assert contract(REDNet(1, 30)) == Contract(30, False, 1, 1)
    for gates in ("fixed", "learned", "none"):
        assert contract(GatedDSC(3, gates)) == Contract(32, False, 1, 16)
    red = create_model("rednet", pretrained=False, channels=1, depth=30)
    assert isinstance(red, REDNet) and red.depth == 30 and red.channels == 1
    dsc = create_model("dsc", pretrained=False, gates="learned")
    assert isinstance(dsc, GatedDSC) and dsc.gate_mode == "learned"


# ---------------------------------------------------------------- structure and gates


def test_rednet_skips_every_second_layer():
    assert REDNet(3, 20).skip_from == (2, 4, 6, 8)
    assert REDNet(3, 30).skip_from == (2, 4, 6, 8, 10, 12, 14)
    m = REDNet(1, 20)
    convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
    deconvs = [c for c in m.modules() if isinstance(c, torch.nn.ConvTranspose2d)]
    assert len(convs) == len(deconvs) == 10 and deconvs[-1].out_channels == 1


def _rednet_reference(m: REDNet, x):
    """RED-Net written out: X_k = relu(conv_k(X_{k-1})); deconv j gives conv (n - j)'s shape,
    plus X_{n-j} when n - j is even, then ReLU; the last is linear, plus the input."""
    n = m.depth // 2
    xs = [x]
    for conv in m.convs:
        xs.append(F.relu(conv(xs[-1])))
    y = xs[n]
    for j in range(1, n):
        y = m.deconvs[j - 1](y)
        y = F.relu(y + xs[n - j] if (n - j) % 2 == 0 else y)
    return x + m.deconvs[n - 1](y)


def _dsc_reference(m: GatedDSC, x, delta):
    """The DSC written out with explicit gates (delta = [1] * 4 and no skips: plain)."""
    h, w = x.shape[-2:]
    xp = F.pad(x, (0, (-w) % 16, 0, (-h) % 16), mode="reflect")
    x1 = F.relu(m.convs[0](xp))
    x2 = F.relu(m.convs[1](delta[0] * x1))
    x3 = F.relu(m.convs[2](delta[1] * x2))
    x4 = F.relu(m.convs[3](delta[2] * x3))
    x5 = F.relu(m.convs[4](delta[3] * x4))
    y4 = F.relu(m.deconvs[4](x5))
    y3 = F.relu(m.deconvs[3](y4 + (1 - delta[3]) * x4))
    y2 = F.relu(m.deconvs[2](y3 + (1 - delta[2]) * x3))
    y1 = F.relu(m.deconvs[1](y2 + (1 - delta[1]) * x2))
    out = m.deconvs[0](y1 + (1 - delta[0]) * x1)[..., :h, :w]
    return x + out if m.output == "residual" else out


def test_forward_matches_the_written_out_networks():
    x = torch.rand(2, 1, 30, 27)
    with torch.inference_mode():
        red = _randomise(REDNet(1, 20, features=16))
        torch.testing.assert_close(red(x), _rednet_reference(red, x))
        for gates, fixed in (("fixed", DEFAULT_GATES), ("fixed", (0.5, 0.9, 0.01, 0.7)),
                             ("learned", (0.3, 0.6, 0.2, 0.8))):
            m = _randomise(GatedDSC(1, gates, fixed=fixed))
            torch.testing.assert_close(m.gates(), torch.tensor(fixed), atol=1e-6, rtol=0)
            torch.testing.assert_close(m(x), _dsc_reference(m, x, list(fixed)))
        plain = _randomise(GatedDSC(1, "none", output="direct"))
        assert plain.gates() is None
        torch.testing.assert_close(plain(x), _dsc_reference(plain, x, [1.0] * 4))


def test_plain_network_has_no_skip_effect():
    """Without gates the decoder sees only the deepest feature X_5: the output equals the
    plain chain conv 1..5, deconv 5..1 (no skip, main path unscaled); the same weights with
    the report's gates give another output (the skips are used there)."""
    m = _randomise(GatedDSC(1, "none"))
    x = torch.rand(1, 1, 32, 32)
    with torch.inference_mode():
        out = m(x)
        # decoder from X_5 alone
        y = F.relu(m.convs[4](F.relu(m.convs[3](F.relu(m.convs[2](F.relu(m.convs[1](
            F.relu(m.convs[0](x))))))))))
        for i in range(4, 0, -1):
            y = F.relu(m.deconvs[i](y))
        torch.testing.assert_close(out, x + m.deconvs[0](y))
    # the gated network does use the skips: the same weights give another output
    gated = GatedDSC(1, "fixed")
    gated.load_state_dict({**m.state_dict(), "gate_values": torch.tensor(DEFAULT_GATES)})
    with torch.inference_mode():
        assert (gated.eval()(x) - out).abs().max() > 1e-3


def test_fixed_gates_are_buffers_not_parameters():
    m = GatedDSC(3, "fixed", fixed=(0.2, 0.4, 0.6, 0.8))
    names = {n for n, _ in m.named_parameters()}
    assert not any("gate" in n for n in names)
    assert "gate_values" in dict(m.named_buffers()) and "gate_values" in m.state_dict()
    assert m.gates().tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert not any("gate" in n for n, _ in GatedDSC(3, "none").named_parameters())
    assert "gate_values" not in GatedDSC(3, "none").state_dict()


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_learned_gates_stay_inside_zero_one(sign):
    """One SGD step with a huge learning rate drives the logits far out; the gates saturate
    but stay strictly inside (0, 1) (a plain float32 sigmoid would reach exactly 0 or 1)."""
    torch.manual_seed(0)
    m = GatedDSC(1, "learned")
    assert "gate_logits" in dict(m.named_parameters())
    opt = torch.optim.SGD([m.gate_logits], lr=1e8)
    # push every gate the same way: maximise or minimise the sum of the gates
    (sign * m.gates().sum()).backward()
    opt.step()
    g = m.gates().detach()
    assert g.dtype == torch.float32 and ((g > 0) & (g < 1)).all(), g
    assert (g > 0.99).all() if sign < 0 else (g < 0.01).all()
    # and through the network's own loss (Adam moves each logit by about lr per step)
    x = torch.rand(2, 1, 16, 16)
    m2 = _randomise(GatedDSC(1, "learned")).train()
    opt2 = torch.optim.Adam([m2.gate_logits], lr=1e3)
    for _ in range(2):
        opt2.zero_grad()
        ((m2(x) - x.flip(-1)) ** 2).mean().backward()
        opt2.step()
    g2 = m2.gates().detach()
    assert ((g2 > 0) & (g2 < 1)).all(), g2


# ---------------------------------------------------------------- receptive field


def _support_radius(m, x, rows, col):
    """The largest distance from output pixel (row, col) to an input pixel it depends on."""
    worst = 0
    for r in rows:
        xi = x.clone().requires_grad_(True)
        m(xi)[0, 0, r, col].backward()
        nz = xi.grad[0].abs().sum(0).nonzero()
        worst = max(worst, int((nz[:, 0] - r).abs().max()), int((nz[:, 1] - col).abs().max()))
    return worst


def test_receptive_fields_are_true_bounds_and_tight():
    """Gradient support over all 16 phases of the DSC grid: never beyond the stated radius,
    and it is reached (so the bound is exact for these weights)."""
    dsc = _randomise(GatedDSC(1, "fixed"))
    x = torch.rand(1, 1, 112, 112)
    assert _support_radius(dsc, x, range(40, 56), 48) == dsc.receptive_field == 32
    red = _randomise(REDNet(1, 20, features=8), seed=1)
    x = torch.rand(1, 1, 48, 48)
    assert _support_radius(red, x, [24], 24) == red.receptive_field == 20


@pytest.mark.parametrize("make", [lambda: GatedDSC(3, "fixed"), lambda: GatedDSC(3, "learned"),
                                  lambda: GatedDSC(3, "none", output="direct"),
                                  lambda: REDNet(3, 20, features=8)],
                         ids=["dsc-fixed", "dsc-learned", "dsc-none", "red20"])
@pytest.mark.parametrize("blend", [None, 0], ids=["blend", "no-blend"])
def test_tiled_equals_untiled(make, blend):
    """With the stated receptive field as the overlap (and no cross-fade to hide errors)."""
    m = _randomise(make())
    torch.manual_seed(3)
    x = torch.rand(1, 3, 150, 173)
    with torch.inference_mode():
        whole = m(x)
        parts = tiled(m, x, tile=24, blend=blend)
    # several tiles per axis
    from denoise.tiling import axis_spans
    c = contract(m)
    window = 24 + 2 * c.receptive_field + min(c.receptive_field, 16) + c.alignment - 1
    assert len(axis_spans(150, window, c.receptive_field, min(c.receptive_field, 16), c.alignment)) >= 3
    torch.testing.assert_close(parts, whole, atol=1e-5, rtol=0)


@pytest.mark.parametrize("make", [lambda: GatedDSC(1, "learned"), lambda: REDNet(1, 20, features=8)],
                         ids=["dsc", "red20"])
def test_traced_network_takes_other_sizes(make):
    """A trace (the export path) pads any size, not only the example's."""
    m = _randomise(make())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript's deprecation notice
        traced = torch.jit.trace(m, torch.rand(1, 1, 40, 40))
    x = torch.rand(1, 1, 37, 53)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), m(x))


# ---------------------------------------------------------------- training and bad input


def test_short_training_lowers_the_loss():
    """20 Adam steps on random smooth 32x32 patches with Gaussian noise (learned gates)."""
    g = torch.Generator().manual_seed(0)

    def batch(n=8):
        clean = F.interpolate(torch.rand(n, 1, 8, 8, generator=g), size=32, mode="bilinear",
                              align_corners=False)
        return clean + 0.1 * torch.randn(clean.shape, generator=g), clean

    torch.manual_seed(0)
    m = GatedDSC(1, "learned").train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    held = batch(16)
    with torch.no_grad():
        before = F.mse_loss(m(held[0]), held[1]).item()
    for _ in range(20):
        noisy, clean = batch()
        opt.zero_grad()
        F.mse_loss(m(noisy), clean).backward()
        opt.step()
    with torch.no_grad():
        after = F.mse_loss(m(held[0]), held[1]).item()
    assert after < 0.8 * before, (before, after)
    assert ((m.gates() > 0) & (m.gates() < 1)).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"fixed": (0.1, 0.2, 0.3, 1.0)}, "strictly between 0 and 1"),
    ({"fixed": (0.0, 0.2, 0.3, 0.4)}, "strictly between 0 and 1"),
    ({"fixed": (0.1, -0.2, 0.3, 0.4), "gates": "learned"}, "strictly between 0 and 1"),
    ({"fixed": (0.1, float("nan"), 0.3, 0.4)}, "strictly between 0 and 1"),
    ({"fixed": (0.1, 0.2, 0.3)}, "4 numbers"),
    ({"fixed": "abcd"}, "4 numbers"),
    ({"gates": "soft"}, "gates must be"),
    ({"output": "clean"}, "output must be"),
    ({"channels": 2}, "channels"),
])
def test_dsc_bad_input(kwargs, match):
    with pytest.raises(InputError, match=match) as e:
        GatedDSC(**kwargs)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("depth", [21, 4, 0, -2, 20.0, True, "20"])
def test_rednet_bad_depth(depth):
    with pytest.raises(InputError, match="even integer >= 6") as e:
        REDNet(3, depth=depth)
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="features"):
        REDNet(3, 20, features=0)
