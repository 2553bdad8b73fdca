"""Noise models: statistics on large samples, coverage, seeding, specs and validation.

Statistical checks allow 5 standard errors of the sample estimate (a fixed seed makes
them deterministic; the margin keeps them meaningful for any seed).
"""
from __future__ import annotations

import math

import pytest
import torch

from denoise import noise as nz
from denoise.errors import InputError
from denoise.noise import (
    Bernoulli,
    Gaussian,
    Impulse,
    Poisson,
    PoissonGaussian,
    SaltPepper,
    Text,
    parse_noise,
    sigma_of,
)


def _levels(n=4, c=3, h=128, w=128) -> torch.Tensor:
    """A batch whose images are flat at 0.1, 0.35, 0.6, 0.85: known intensities."""
    return torch.linspace(0.1, 0.85, n).view(n, 1, 1, 1).expand(n, c, h, w).contiguous()


def _close(value: float, expected: float, standard_error: float) -> bool:
    return abs(value - expected) <= 5 * standard_error


# ----------------------------------------------------------------------------- statistics

def test_gaussian_mean_std_and_shape(generator):
    x = _levels()
    sigma = 25 / 255
    residual = (Gaussian(sigma)(x, generator) - x).flatten(1)
    m = residual.shape[1]
    for row in residual:
        assert _close(row.mean().item(), 0.0, sigma / math.sqrt(m))
        assert _close(row.std().item(), sigma, sigma / math.sqrt(2 * m))
        within = (row.abs() <= sigma).float().mean().item()  # the normal's 68.27 %
        assert _close(within, 0.6827, math.sqrt(0.6827 * 0.3173 / m))


def test_gaussian_is_not_clipped_by_default(generator):
    x = torch.full((1, 1, 64, 64), 0.02)
    assert Gaussian(25 / 255)(x, generator).min() < 0
    clipped = Gaussian(25 / 255, clip=True)(x, generator)
    assert clipped.min() == 0 and clipped.max() <= 1


def test_gaussian_range_draws_one_sigma_per_image(generator):
    x = torch.full((2000, 1, 16, 16), 0.5)
    noisy, sigma = Gaussian((5 / 255, 50 / 255)).sample(x, generator)
    assert sigma.shape == (2000,)
    lo, hi = 5 / 255, 50 / 255
    assert lo <= sigma.min() and sigma.max() <= hi
    assert _close(sigma.mean().item(), (lo + hi) / 2, (hi - lo) / math.sqrt(12 * 2000))
    measured = (noisy - x).flatten(1).std(dim=1)
    relative = (measured / sigma - 1).abs()
    assert relative.mean() < 0.06  # a std from 256 samples is within ~4.4 % on average


def test_poisson_mean_and_variance(generator):
    x, lam = _levels(), 30.0
    noisy = Poisson(lam)(x, generator)
    counts = noisy * lam
    assert torch.equal(counts, counts.round()) and noisy.min() >= 0
    m = x[0].numel()
    for image, level in zip(noisy, x[:, 0, 0, 0].tolist()):
        var = level / lam
        assert _close(image.mean().item(), level, math.sqrt(var / m))
        assert _close(image.var().item(), var, var * math.sqrt(2 / m) * 1.5)


def test_poisson_gaussian_variance_adds(generator):
    x, lam, sigma = _levels(), 20.0, 10 / 255
    noisy = PoissonGaussian(lam, sigma)(x, generator)
    m = x[0].numel()
    for image, level in zip(noisy, x[:, 0, 0, 0].tolist()):
        var = level / lam + sigma ** 2
        assert _close(image.mean().item(), level, math.sqrt(var / m))
        assert _close(image.var().item(), var, var * math.sqrt(2 / m) * 1.5)


def test_bernoulli_keeps_fraction_p_with_a_mask_shared_by_channels(generator):
    x = torch.rand(4, 3, 128, 128, generator=generator) * 0.9 + 0.05
    noisy, mask = Bernoulli(0.3).with_mask(x, generator)
    assert mask.shape == (4, 1, 128, 128) and set(mask.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(noisy, x * mask)
    kept = mask.mean().item()
    assert _close(kept, 0.3, math.sqrt(0.3 * 0.7 / mask.numel()))
    zero_pixels = (noisy == 0)
    assert torch.equal(zero_pixels.all(dim=1), zero_pixels.any(dim=1))  # whole pixels dropped


def test_bernoulli_call_equals_with_mask():
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(Bernoulli(0.5)(x, 7), Bernoulli(0.5).with_mask(x, 7)[0])


@pytest.mark.parametrize("per_channel", [False, True])
def test_impulse_replaces_fraction_p_with_uniform_values(generator, per_channel):
    x = torch.full((4, 3, 128, 128), 0.5)
    p = 0.4
    noisy = Impulse(p, per_channel=per_channel)(x, generator)
    changed = noisy != x
    samples = changed.numel() if per_channel else changed[:, 0].numel()
    fraction = changed.float().mean().item() if per_channel else changed.any(dim=1).float().mean().item()
    assert _close(fraction, p, math.sqrt(p * (1 - p) / samples))
    both = changed.all(dim=1).float().mean().item()  # every channel of a pixel replaced
    expected_both = p ** 3 if per_channel else p
    assert _close(both, expected_both, math.sqrt(expected_both / changed[:, 0].numel()))
    values = noisy[changed]
    assert 0 <= values.min() and values.max() <= 1
    assert _close(values.mean().item(), 0.5, math.sqrt(1 / 12 / values.numel()))
    assert _close(values.var().item(), 1 / 12, math.sqrt(1 / 180 / values.numel()))


def test_salt_and_pepper_sets_fraction_p_to_black_or_white(generator):
    x = torch.full((4, 3, 128, 128), 0.5)
    p = 0.2
    noisy = SaltPepper(p)(x, generator)
    hit = (noisy != x).all(dim=1)
    assert torch.equal(hit, (noisy != x).any(dim=1))
    assert _close(hit.float().mean().item(), p, math.sqrt(p * (1 - p) / hit.numel()))
    values = noisy.permute(0, 2, 3, 1)[hit]
    assert set(values.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(values.min(dim=1).values, values.max(dim=1).values)  # same in all channels
    assert _close((values[:, 0] == 1).float().mean().item(), 0.5, math.sqrt(0.25 / values.shape[0]))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("p", [0.1, 0.25, 0.5])
def test_text_covers_fraction_p(generator, channels, p):
    x = torch.full((3, channels, 128, 128), 0.5)  # no 8-bit text colour equals 0.5
    noisy = Text(p)(x, generator)
    covered = (noisy != x).any(dim=1).flatten(1).float().mean(dim=1)
    assert (covered >= p).all() and (covered <= p + 0.05).all(), covered
    values = noisy.permute(0, 2, 3, 1)[(noisy != x).any(dim=1)]
    assert torch.allclose(values * 255, (values * 255).round(), atol=1e-4)  # 8-bit colours
    assert len({tuple(v) for v in values.tolist()}) > 3  # several colours


def test_text_draws_different_strings_per_image(generator):
    noisy = Text(0.2)(torch.full((2, 3, 64, 64), 0.5), generator)
    assert not torch.equal(noisy[0], noisy[1])


@pytest.mark.parametrize("size, side, low, high", [((10, 30), 64, 10, 30), ((10, 30), 512, 10, 30),
                                                   (None, 512, 25, 102)])
def test_text_font_sizes_fixed_in_pixels_or_scaled_to_the_image(generator, monkeypatch, size, side, low, high):
    """Fixed sizes are the same on a training crop and a whole image; the default scales."""
    asked = []
    font = nz.text._font

    def spy(px):
        asked.append(px)
        return font(px)

    monkeypatch.setattr(nz.text, "_font", spy)
    noisy = Text(0.25, size=size)(torch.full((1, 3, side, side), 0.5), generator)
    assert asked and low <= min(asked) and max(asked) <= high
    assert max(asked) - min(asked) > (high - low) / 3  # sizes spread over the range
    assert (noisy != 0.5).any(dim=1).float().mean() >= 0.25


def test_text_rejects_coverage_it_cannot_reach():
    with pytest.raises(InputError, match="0.95"):
        Text(0.99)


# ----------------------------------------------------------------------------- randomness

ALL_MODELS = [Gaussian(0.1), Gaussian((0.0, 0.2)), Poisson(20), PoissonGaussian(20, 0.05), Bernoulli(0.5),
              Impulse(0.3), Impulse(0.3, per_channel=True), SaltPepper(0.1), Text(0.2),
              nz.Compose([Gaussian(0.1), SaltPepper(0.05)]), nz.Camera(), nz.Camera(quality=(70, 95))]


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.spec)
def test_seeding_reproduces_and_differs(model):
    x = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    first = model(x, torch.Generator().manual_seed(3))
    assert torch.equal(first, model(x, torch.Generator().manual_seed(3)))
    assert torch.equal(first, model(x, 3))  # an int seed means the same
    assert not torch.equal(first, model(x, 4))
    assert first.shape == x.shape and first.dtype == x.dtype


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.spec)
def test_explicit_generator_is_independent_of_the_global_one(model):
    x = torch.rand(2, 3, 32, 32)
    torch.manual_seed(0)
    a = model(x, torch.Generator().manual_seed(5))
    torch.rand(1000)  # move the global generator on
    b = model(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    torch.manual_seed(11)
    c = model(x)  # None: torch's global generator
    torch.manual_seed(11)
    assert torch.equal(c, model(x))


def test_a_generator_advances_between_calls(generator):
    x = torch.rand(1, 3, 32, 32)
    model = Gaussian(0.1)
    assert not torch.equal(model(x, generator), model(x, generator))


def test_float64_images_stay_float64(generator):
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    for model in ALL_MODELS:
        assert model(x, generator).dtype == torch.float64


def test_bad_generator_and_image():
    with pytest.raises(InputError, match="generator"):
        Gaussian(0.1)(torch.rand(1, 1, 8, 8), "seed")
    with pytest.raises(InputError):
        Gaussian(0.1)(torch.rand(8, 8))
    with pytest.raises(InputError, match=">= 0"):
        Poisson(10)(torch.full((1, 1, 8, 8), -0.1))


# ----------------------------------------------------------------------------- specs

@pytest.mark.parametrize("spec, expected", [
    ("gaussian:25", Gaussian(25 / 255)),
    ("gaussian:0-50", Gaussian((0.0, 50 / 255))),
    ("gaussian:15:clip", Gaussian(15 / 255, clip=True)),
    ("poisson:30", Poisson(30)),
    ("poisson:5-50", Poisson((5, 50))),
    ("poissongaussian:30,10", PoissonGaussian(30, 10 / 255)),
    ("bernoulli:0.5", Bernoulli(0.5)),
    ("impulse:0.5", Impulse(0.5)),
    ("impulse:0.5:per_channel", Impulse(0.5, per_channel=True)),
    ("saltpepper:0.1", SaltPepper(0.1)),
    ("salt_pepper:0.1", SaltPepper(0.1)),
    ("text:0.25", Text(0.25)),
    ("text:0.25,10-30", Text(0.25, size=(10, 30))),
    ("text:0.25,12", Text(0.25, size=(12, 12))),
    ("Gaussian:25", Gaussian(25 / 255)),
])
def test_parse_noise(spec, expected):
    model = parse_noise(spec)
    assert model == expected and type(model) is type(expected)
    assert parse_noise(model.spec) == model
    assert eval(repr(model), vars(nz)) == model  # the repr is Python that rebuilds it
    assert parse_noise(model) is model


def test_spec_scales():
    assert Gaussian(25 / 255).spec == "gaussian:25"
    assert Gaussian(25 / 255).sigma == pytest.approx(25 / 255)
    assert repr(Gaussian((0, 50 / 255), clip=True)) == "Gaussian(sigma=(0/255, 50/255), clip=True)"
    assert PoissonGaussian(30, 10 / 255).spec == "poissongaussian:30,10"


@pytest.mark.parametrize("spec, match", [
    ("speckle:3", "unknown noise.*gaussian.*poisson.*bernoulli.*impulse.*saltpepper.*text"),
    ("gaussian:-5", "must be >= 0.*-5/255"),
    ("gaussian:50-5", "lo <= hi"),
    ("gaussian", "needs 1 value"),
    ("poissongaussian:30", "needs 2 values"),
    ("gaussian:abc", "bad number"),
    ("poisson:0", "must be > 0"),
    ("bernoulli:1.5", "<= 1"),
    ("impulse:-0.1", ">= 0"),
    ("text:0.3:bold", "unknown option"),
    ("text:0.3,0-5", "size must be >= 1"),
    ("text:0.3,30-10", "lo <= hi"),
    ("text:0.3,10,20", "needs 1 or 2 values"),
    ("gaussian:25:per_channel", "unknown option"),
])
def test_bad_specs(spec, match):
    with pytest.raises(InputError, match=match):
        parse_noise(spec)


@pytest.mark.parametrize("build", [
    lambda: Gaussian(float("nan")), lambda: Gaussian((0.1, 0.2, 0.3)), lambda: Gaussian("x"),
    lambda: Poisson(-1), lambda: SaltPepper(2), lambda: Bernoulli((0.5, 1.2)),
])
def test_bad_parameters(build):
    with pytest.raises(InputError):
        build()


def test_sigma_of():
    assert sigma_of("gaussian:25") == pytest.approx(25 / 255)
    assert sigma_of(Gaussian(0.1)) == 0.1
    assert sigma_of("gaussian:0-50") is None
    assert sigma_of("poisson:30") is None


def test_every_kind_is_listed():
    assert set(nz.NOISE_KINDS) == {"gaussian", "poisson", "poissongaussian", "bernoulli", "impulse",
                                   "saltpepper", "text", "camera"}


# ----------------------------------------------------------------------------- composed noise

def test_compose_parses_and_round_trips():
    model = parse_noise("gaussian:25+saltpepper:0.05")
    assert isinstance(model, nz.Compose)
    assert model.parts == (Gaussian(25 / 255), SaltPepper(0.05))
    assert model.spec == "gaussian:25+saltpepper:0.05" and model.kind == "gaussian+saltpepper"
    for spec in ("gaussian:25+saltpepper:0.05", "gaussian:0-50:clip+impulse:0.1:per_channel",
                 "poisson:30+gaussian:10+saltpepper:0.02", "gaussian:10+camera:jpeg"):
        model = parse_noise(spec)
        assert parse_noise(model.spec) == model
        assert eval(repr(model), vars(nz)) == model
    # nested compositions flatten
    assert nz.Compose([parse_noise("gaussian:5+poisson:3"), Impulse(0.1)]).spec == "gaussian:5+poisson:3+impulse:0.1"


def test_compose_statistics_gaussian_plus_salt_and_pepper(generator):
    x = torch.full((4, 3, 128, 128), 0.5)
    sigma, p = 25 / 255, 0.05
    noisy, levels = parse_noise("gaussian:25+saltpepper:0.05").sample(x, generator)
    assert torch.allclose(levels, torch.full((4,), sigma))  # the Gaussian part's sigma
    hit = (noisy == 0) | (noisy == 1)
    assert torch.equal(hit, hit[:, :1].expand_as(hit))  # whole pixels, as SaltPepper does
    m = hit[:, 0].numel()
    assert _close(hit[:, 0].float().mean().item(), p, math.sqrt(p * (1 - p) / m))
    rest = (noisy - x)[~hit]
    assert _close(rest.mean().item(), 0.0, sigma / math.sqrt(rest.numel()))
    assert _close(rest.std().item(), sigma, sigma / math.sqrt(2 * rest.numel()))


def test_compose_parts_keep_their_clip_and_draw_in_order(generator):
    x = torch.full((1, 1, 64, 64), 0.02)
    assert parse_noise("gaussian:25+saltpepper:0.01")(x, 0).min() < 0
    assert parse_noise("gaussian:25:clip+saltpepper:0.01")(x, 0).min() >= 0
    composed = parse_noise("gaussian:25+saltpepper:0.05")
    g = torch.Generator().manual_seed(7)
    by_hand = SaltPepper(0.05)(Gaussian(25 / 255)(x, g), g)
    assert torch.equal(composed(x, 7), by_hand)
    assert torch.equal(composed(x, 7), composed(x, torch.Generator().manual_seed(7)))
    assert not torch.equal(composed(x, 7), composed(x, 8))
    assert parse_noise("saltpepper:0.1+poisson:30").sample(x, 0)[1] is None


@pytest.mark.parametrize("spec, match", [
    ("gaussian:25+saltpepper:1.5", "p must be >= 0 and <= 1, got 1.5"),
    ("gaussian:25+saltpepper:-0.1", "p must be >= 0"),
    ("gaussian:25+", "empty part"),
    ("+saltpepper:0.1", "empty part"),
    ("gaussian:25++saltpepper:0.1", "empty part"),
    ("gaussian:25+speckle:3", "unknown noise"),
])
def test_compose_bad_specs(spec, match):
    with pytest.raises(InputError, match=match) as info:
        parse_noise(spec)
    assert "\n" not in str(info.value)


def test_compose_loss_choice():
    from denoise.training.data import noise_kind
    from denoise.training.losses import loss_for_noise

    assert loss_for_noise(noise_kind("gaussian:25+saltpepper:0.05")) == "l1"
    assert loss_for_noise(noise_kind("gaussian:25+impulse:0.1")) == "l0"
    assert loss_for_noise(noise_kind("saltpepper:0.1+impulse:0.1")) == "l0"
    assert loss_for_noise(noise_kind("poisson:30+gaussian:10")) == "l2"
    assert loss_for_noise(noise_kind("camera")) == "l2"
    with pytest.raises(InputError, match="pass the loss explicitly"):
        loss_for_noise(noise_kind("gaussian:25+bernoulli:0.5"))
