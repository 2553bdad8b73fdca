"""Camera noise (denoise.noise.camera): each stage, the noise statistics, specs, seeding.

Statistical checks allow about 5 standard errors (fixed seeds keep them deterministic).
"""
from __future__ import annotations

import math

import pytest
import torch

from denoise import noise as nz
from denoise.errors import InputError
from denoise.noise import Camera, PoissonGaussian, parse_noise
from denoise.noise import camera as cam

pytestmark = pytest.mark.usefixtures("one_thread")


def _rand(*shape, seed=1, dtype=torch.float64):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ----------------------------------------------------------------------------- stages

def test_tone_curve_inverse():
    t = torch.linspace(-0.2, 1.5, 10001, dtype=torch.float64)
    assert torch.allclose(cam.srgb_to_linear(cam.linear_to_srgb(t)), t, atol=1e-5, rtol=0)
    x = torch.linspace(0, 1, 10001, dtype=torch.float64)
    assert torch.allclose(cam.linear_to_srgb(cam.srgb_to_linear(x)), x, atol=1e-5, rtol=0)
    assert cam.srgb_to_linear(torch.tensor(0.5)).item() == pytest.approx(0.2140, abs=1e-4)  # the sRGB curve


def test_ccm_and_gain_inverses():
    x = _rand(4, 3, 16, 16)
    weights = _rand(4, len(cam.CCMS), seed=2)
    ccm = torch.einsum("nk,kij->nij", weights / weights.sum(1, keepdim=True), cam.CCMS)
    assert torch.allclose(ccm.sum(2), torch.ones(4, 3, dtype=torch.float64))  # grey stays grey
    back = cam.apply_ccm(cam.apply_ccm(x, torch.linalg.inv(ccm)), ccm)
    assert (back - x).abs().max() < 1e-5
    red, blue = torch.tensor([1.9, 2.0, 2.2, 2.4]), torch.tensor([1.5, 1.6, 1.8, 1.9])
    back = cam.apply_gains(cam.apply_gains(x, 1 / red, 1 / blue), red, blue)
    assert (back - x).abs().max() < 1e-5
    assert torch.equal(cam.apply_gains(x, red, blue)[:, 1], x[:, 1])  # green gain 1


@pytest.mark.parametrize("h, w", [(16, 16), (7, 9)])
def test_mosaic_and_demosaic(h, w):
    colour = _rand(3, 3, 1, 1)
    flat = colour.expand(3, 3, h, w)
    raw = cam.mosaic(flat)
    assert raw.shape == (3, 1, h, w)
    assert raw[0, 0, 0, 0] == colour[0, 0, 0, 0] and raw[0, 0, 1, 1] == colour[0, 2, 0, 0]  # RGGB
    assert raw[0, 0, 0, 1] == colour[0, 1, 0, 0] and raw[0, 0, 1, 0] == colour[0, 1, 0, 0]
    assert (cam.demosaic(raw) - flat).abs().max() < 1e-12  # a constant stays constant, borders too
    noise = _rand(2, 1, h, w)
    assert torch.allclose(cam.mosaic(cam.demosaic(noise)), noise)  # known samples are kept
    ramp = torch.arange(w, dtype=torch.float64).view(1, 1, 1, w).expand(1, 3, h, w)
    inner = (cam.demosaic(cam.mosaic(ramp)) - ramp)[..., 1:-1, 1:-1]
    assert inner.abs().max() < 1e-12  # bilinear: exact for a linear ramp away from the borders


def test_raw_noise_variance_is_linear_in_the_signal(generator):
    shot, read = 0.01, 4e-4
    levels = torch.linspace(0.05, 0.95, 10, dtype=torch.float64)
    signal = levels.view(10, 1, 1, 1).expand(10, 1, 200, 500).contiguous()
    noise = cam.raw_noise(signal, torch.tensor(shot).view(1, 1, 1, 1), torch.tensor(read).view(1, 1, 1, 1),
                          generator)
    mean, var = noise.flatten(1).mean(1), noise.flatten(1).var(1)
    m = signal[0].numel()
    assert (mean.abs() < 5 * torch.sqrt((shot * levels + read) / m)).all()  # zero-mean
    slope, intercept = _fit(levels, var)
    assert slope == pytest.approx(shot, rel=0.03)
    assert intercept == pytest.approx(read, abs=1.5e-4)


def _fit(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    design = torch.stack([x, torch.ones_like(x)], 1)
    solution = torch.linalg.lstsq(design, y.unsqueeze(1)).solution.flatten()
    return solution[0].item(), solution[1].item()


def test_grey_pipeline_variance_in_linear_space_fits_shot_and_read(generator):
    shot, read = 0.004, 2e-4
    x = torch.linspace(0.2, 1.0, 512).view(1, 1, 1, 512).expand(8, 1, 512, 512).contiguous().double()
    noisy = Camera(shot, read)(x, generator)
    linear = cam.srgb_to_linear(x)
    residual = cam.srgb_to_linear(noisy) - linear  # exact: the curve is inverted outside [0, 1] too
    bins = torch.linspace(0, 512, 9).long()
    signal = torch.stack([linear[..., a:b].mean() for a, b in zip(bins[:-1], bins[1:])])
    var = torch.stack([residual[..., a:b].var() for a, b in zip(bins[:-1], bins[1:])])
    slope, intercept = _fit(signal, var)
    assert slope == pytest.approx(shot, rel=0.05)
    assert intercept == pytest.approx(read, abs=5e-5)


def _neighbour_correlation(r: torch.Tensor) -> float:
    a, b = r[..., :, :-1].flatten(), r[..., :, 1:].flatten()
    return torch.corrcoef(torch.stack([a, b]))[0, 1].item()


def test_demosaicing_correlates_the_noise(generator):
    x = torch.full((2, 3, 128, 128), 0.5, dtype=torch.float64)
    residual = Camera(0.01, 1e-4)(x, generator) - x
    for c in range(3):
        assert _neighbour_correlation(residual[:, c]) > 0.1
    plain = PoissonGaussian(100, 0.01)(x, generator) - x
    assert abs(_neighbour_correlation(plain)) < 0.02


def test_mosaic_grey_is_a_colour_photo_turned_grey(generator):
    # camera:mosaic on grey images: the colour path on the replicated image, then BT.601 luma
    x = torch.full((2, 1, 128, 128), 0.5, dtype=torch.float64)
    noisy = Camera(0.01, 1e-4, mosaic=True)(x, generator)
    assert noisy.shape == x.shape
    residual = noisy - x
    assert _neighbour_correlation(residual) > 0.1  # demosaicing correlates it
    plain = Camera(0.01, 1e-4)(x, generator) - x  # the simple grey path: white in space
    assert abs(_neighbour_correlation(plain)) < 0.02
    # the same draws as the colour path, turned grey
    colour = Camera(0.01, 1e-4)(x.expand(2, 3, 128, 128), torch.Generator().manual_seed(5))
    grey = Camera(0.01, 1e-4, mosaic=True)(x, torch.Generator().manual_seed(5))
    luma = torch.tensor(cam.LUMA, dtype=x.dtype).view(1, 3, 1, 1)
    assert torch.allclose(grey, (colour * luma).sum(1, keepdim=True))
    # colour images ignore the option
    rgb = _rand(1, 3, 16, 16, dtype=torch.float64)
    assert torch.equal(Camera(mosaic=True)(rgb, 2), Camera()(rgb, 2))


def _correlation_at(r: torch.Tensor, lag: int) -> float:
    a, b = r[..., :, :-lag].flatten(), r[..., :, lag:].flatten()
    return torch.corrcoef(torch.stack([a, b]))[0, 1].item()


def test_corr_spreads_the_noise_and_keeps_its_level(generator):
    # in-camera processing spread: luma blurred by w, chroma by 2 w, each rescaled
    x = torch.full((2, 3, 128, 128), 0.5, dtype=torch.float64)
    base = Camera(0.01, 1e-4)(x, torch.Generator().manual_seed(1)) - x
    spread = Camera(0.01, 1e-4, corr=1.5)(x, torch.Generator().manual_seed(1)) - x
    # raw level kept per channel; after colour processing within 20 % (channel mixing)
    assert spread.std().item() == pytest.approx(base.std().item(), rel=0.2)
    assert _correlation_at(spread, 3) > 0.4 > _correlation_at(base, 3) + 0.3
    # chroma spreads further than luma
    luma = spread.mean(1, keepdim=True)
    assert _correlation_at(spread - luma, 4) > _correlation_at(luma, 4) + 0.1
    # width 0 is the plain camera noise, from the same draws up to the extra width draw
    zero = cam.correlate(base, torch.zeros(2, dtype=torch.float64))
    assert torch.equal(zero, base)
    grey = torch.full((2, 1, 64, 64), 0.5, dtype=torch.float64)
    assert _correlation_at(Camera(0.01, 1e-4, corr=1.0)(grey, generator) - grey, 2) > 0.3  # a Gaussian of width 1: exp(-1) = 0.37 at lag 2


def test_chroma_reduction_scales_the_colour_part_only(generator):
    field = torch.randn(4, 3, 32, 32, generator=generator, dtype=torch.float64)
    factor = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    out = cam.reduce_chroma(field, factor)
    assert torch.allclose(out.mean(1), field.mean(1))  # luma kept
    chroma_in, chroma_out = field - field.mean(1, keepdim=True), out - out.mean(1, keepdim=True)
    assert torch.allclose(chroma_out, chroma_in * factor.view(-1, 1, 1, 1))


def _flat_noise(**options) -> torch.Tensor:
    """The camera noise (weak, fixed seed) of a flat 0.4 grey batch (4, 3, 64, 64) with ``options``."""
    x = torch.full((4, 3, 64, 64), 0.4, dtype=torch.float64)
    return Camera(0.0005, 1e-6, **options)(x, torch.Generator().manual_seed(3)) - x


def test_chroma_option_makes_camera_noise_grey(generator):
    # in-camera chroma noise reduction, in processed linear RGB: f = 1 is the plain noise,
    # f = 0 leaves noise equal in the three channels of the sRGB photo (the tone curve is
    # the same per channel); the brightness part keeps its level (weak noise: the tone
    # curve is nearly linear over it)
    plain, same = _flat_noise(), _flat_noise(chroma=1.0)
    assert (same - plain).abs().max() < 1e-9
    grey = _flat_noise(chroma=0.0)
    chroma = grey - grey.mean(1, keepdim=True)
    assert chroma.std() < 1e-6 * grey.std()
    plain_chroma = plain - plain.mean(1, keepdim=True)
    assert plain_chroma.std() > 0.3 * plain.std()  # raw demosaiced noise is far from grey
    assert grey.mean(1).std().item() == pytest.approx(plain.mean(1).std().item(), rel=0.05)
    half = _flat_noise(chroma=0.5)
    half_chroma = half - half.mean(1, keepdim=True)
    assert half_chroma.std().item() == pytest.approx(0.5 * plain_chroma.std().item(), rel=0.05)


def test_chroma_lowpass_blurs_the_colour_part_only_and_weakens_it(generator):
    field = torch.randn(3, 3, 64, 64, generator=generator, dtype=torch.float64)
    out = cam.lowpass_chroma(field, torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64))
    assert torch.allclose(out.mean(1), field.mean(1))  # luma kept
    assert torch.allclose(out[0], field[0])  # width 0: unchanged
    chroma = out - out.mean(1, keepdim=True)
    before = (field - field.mean(1, keepdim=True)).std().item()
    # white noise through a Gaussian of width b keeps 1 / (2 b sqrt(pi)) of its standard
    # deviation in 2-D: 0.28 at b = 1, 0.094 at b = 3
    assert chroma[1].std().item() == pytest.approx(before / (2 * math.sqrt(math.pi)), rel=0.1)
    assert chroma[2].std().item() == pytest.approx(before / (6 * math.sqrt(math.pi)), rel=0.15)
    assert _correlation_at(chroma[2:3], 2) > 0.7  # smooth blotches: exp(-4/36) = 0.89 at lag 2


def test_cblur_option_in_the_camera_pipeline(generator):
    plain, same = _flat_noise(chroma=0.5), _flat_noise(chroma=0.5, cblur=0.0)
    assert (same - plain).abs().max() < 1e-9  # width 0 draws nothing new before it and changes nothing
    blurred = _flat_noise(chroma=0.5, cblur=2.0)
    chroma = lambda n: n - n.mean(1, keepdim=True)
    # demosaiced noise is already smooth over 2-3 pixels, so a blur of width 2 keeps about
    # a third of its chroma part (white noise would keep 0.14)
    assert 0.2 * chroma(plain).std() < chroma(blurred).std() < 0.45 * chroma(plain).std()
    assert blurred.mean(1).std().item() == pytest.approx(plain.mean(1).std().item(), rel=0.05)  # luma level kept


def test_sharpen_boosts_the_fine_luma_grain_only(generator):
    field = torch.randn(3, 3, 64, 64, generator=generator, dtype=torch.float64)
    out = cam.sharpen_luma(field, torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64))
    assert torch.allclose(out[0], field[0])  # amount 0: unchanged
    chroma = lambda n: n - n.mean(1, keepdim=True)
    assert torch.allclose(chroma(out), chroma(field))  # the colour part is kept
    # white luma noise through 1 + a (1 - G): its variance grows to
    # (1 + a)^2 - 2 a (1 + a) g0 + a^2 g1 with g0 = 1 / (4 pi w^2), g1 = 1 / (8 pi w^2) (w = 1)
    g0, g1 = 1 / (4 * math.pi), 1 / (8 * math.pi)
    before = field.mean(1).std().item()
    for k, a in ((1, 1.0), (2, 2.0)):
        gain = math.sqrt((1 + a) ** 2 - 2 * a * (1 + a) * g0 + a * a * g1)
        assert out[k].mean(0).std().item() == pytest.approx(gain * before, rel=0.06)
    # sharpened white noise is anti-correlated between neighbours (a high-pass boost):
    # (-2 a (1 + a) G(1) + a^2 (G*G)(1)) / variance = -0.11 at a = 2
    assert abs(_correlation_at(field[2:3].mean(1, keepdim=True), 1)) < 0.05
    assert _correlation_at(out[2:3].mean(1, keepdim=True), 1) < -0.07


def test_sharp_option_in_the_camera_pipeline(generator):
    x = torch.full((4, 3, 64, 64), 0.4, dtype=torch.float64)
    plain, same = _flat_noise(), _flat_noise(sharp=0.0)
    assert (same - plain).abs().max() < 1e-9
    sharp = _flat_noise(sharp=1.5)
    assert sharp.mean(1).std() > 1.3 * plain.mean(1).std()  # the fine grain is boosted
    chroma = lambda n: n - n.mean(1, keepdim=True)
    assert (chroma(sharp) - chroma(plain)).abs().max() < 1e-9
    model = parse_noise("camera:shot=0.001,sharp=0-1.5")
    assert model.sharp == (0.0, 1.5) and "sharp=0-1.5" in model.spec
    assert parse_noise(model.spec).spec == model.spec
    with pytest.raises(InputError, match="sharpening amount"):
        parse_noise("camera:sharp=5")
    grey = Camera(0.0005, 1e-6, sharp=1.0)(x[:, :1], torch.Generator().manual_seed(3)) - x[:, :1]
    assert grey.shape == (4, 1, 64, 64)


def test_tone_curve_and_its_inverse():
    y = torch.linspace(0, 1, 1001, dtype=torch.float64).view(1, 1, 1, -1).expand(3, 1, 1, -1)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    out = cam.tone_curve(y, t)
    assert torch.equal(out[0], y[0])  # weight 0: the identity
    assert torch.allclose(out[2], 3 * y[2] ** 2 - 2 * y[2] ** 3)  # weight 1: smoothstep
    assert (out.diff(dim=-1) >= 0).all()  # increasing, so invertible
    assert torch.allclose(cam.inverse_tone_curve(out, t), y, atol=1e-9)
    outside = torch.tensor([-0.1, 1.2], dtype=torch.float64).view(1, 1, 1, 2)
    assert torch.equal(cam.tone_curve(outside, t[2:]), outside)


def test_tone_option_moves_the_noise_into_the_mid_tones(generator):
    # a flat mid-grey and a dark patch: the S curve steepens mid-tones, flattens shadows
    x = torch.cat([torch.full((4, 3, 48, 48), 0.5), torch.full((4, 3, 48, 48), 0.06)]).double()
    plain = Camera(0.002, 1e-5)(x, torch.Generator().manual_seed(3)) - x
    tone = Camera(0.002, 1e-5, tone=1.0)(x, torch.Generator().manual_seed(3)) - x
    zero = Camera(0.002, 1e-5, tone=0.0)(x, torch.Generator().manual_seed(3)) - x
    # weight 0: the plain curve (the draw shifts the random stream, so compare statistics)
    assert zero[:4].std().item() == pytest.approx(plain[:4].std().item(), rel=0.05)
    assert zero[4:].std().item() == pytest.approx(plain[4:].std().item(), rel=0.05)
    # mid-grey: the raw signal under tone=1 is the same 0.5, and the slope 1.5 scales the noise
    assert tone[:4].std().item() == pytest.approx(1.5 * plain[:4].std().item(), rel=0.05)
    assert tone[4:].std() < 0.8 * plain[4:].std()  # shadows: flatter curve, less noise
    assert Camera(0, 0, tone=(0.0, 1.0))(x, generator).sub(x).abs().max() < 1e-6  # no noise: the image back
    model = parse_noise("camera:shot=0.001,tone=0-1,sharp=0.5")
    assert model.tone == (0.0, 1.0) and parse_noise(model.spec).spec == model.spec
    with pytest.raises(InputError, match="tone curve weight"):
        parse_noise("camera:tone=1.5")


def test_noise_off_gives_the_input_back(generator):
    x = _rand(3, 3, 32, 40, dtype=torch.float32)
    assert (Camera(0, 0)(x, generator) - x).abs().max() < 1e-4
    assert (Camera(0)(x, generator) - x).abs().max() < 1e-4  # read noise follows shot = 0
    grey = _rand(2, 1, 16, 16, dtype=torch.float32)
    assert (Camera(0, 0)(grey, generator) - grey).abs().max() < 1e-4


def test_jpeg_stage(generator):
    x = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(2, 3, 64, 64).contiguous()
    out = Camera(0, 0, 90)(x, generator)
    assert out.min() >= 0 and out.max() <= 1
    assert torch.allclose(out * 255, (out * 255).round(), atol=1e-4)  # on the 8-bit grid
    assert (out - x).pow(2).mean() < 1e-4 and not torch.equal(out, x)
    grey = Camera(0.001, quality=(50, 60))(x[:, :1], generator)
    assert grey.shape == (2, 1, 64, 64)


def test_default_levels_are_drawn_log_uniformly(generator):
    like = torch.zeros(1)
    shots = cam._draw(cam.SHOT_RANGE, 20000, generator, like, log=True)
    lo, hi = (math.log(v) for v in cam.SHOT_RANGE)
    assert shots.min() >= cam.SHOT_RANGE[0] and shots.max() <= cam.SHOT_RANGE[1]
    assert shots.log().mean().item() == pytest.approx((lo + hi) / 2, abs=5 * (hi - lo) / math.sqrt(12 * 20000))
    x = torch.full((64, 3, 16, 16), 0.5)
    stds = (Camera()(x, generator) - x).flatten(1).std(1)
    assert stds.max() > 4 * stds.min()  # levels differ per image


# ----------------------------------------------------------------------------- specs, seeding, errors

@pytest.mark.parametrize("spec, expected", [
    ("camera", Camera()),
    ("camera:jpeg", Camera(quality=(70, 95))),
    ("camera:q=90", Camera(quality=90)),
    ("camera:shot=0.001-0.01,read=1e-05,q=60-90:clip", Camera((0.001, 0.01), 1e-5, (60, 90), clip=True)),
    ("camera:shot=1e-05-0.001", Camera((1e-5, 1e-3))),
    ("camera:shot=0.002:jpeg", Camera(0.002, quality=(70, 95))),
    ("camera:q=80-100:mosaic", Camera(quality=(80, 100), mosaic=True)),
    ("camera:q=80-100,corr=0-1.5", Camera(quality=(80, 100), corr=(0, 1.5))),
    ("camera:q=80-100,corr=0-1.5,chroma=0.1-1", Camera(quality=(80, 100), corr=(0, 1.5), chroma=(0.1, 1))),
    ("camera:chroma=0-1,cblur=0-4", Camera(chroma=(0, 1), cblur=(0, 4))),
])
def test_camera_specs_round_trip(spec, expected):
    model = parse_noise(spec)
    assert model == expected
    assert parse_noise(model.spec) == model
    assert eval(repr(model), vars(nz)) == model


def test_seeded_determinism():
    x = _rand(2, 3, 32, 32, dtype=torch.float32)
    for model in (Camera(), Camera(quality=(70, 95)), Camera(0.01, 1e-4)):
        first = model(x, torch.Generator().manual_seed(3))
        assert torch.equal(first, model(x, 3))
        assert not torch.equal(first, model(x, 4))
        assert first.dtype == x.dtype and first.shape == x.shape


@pytest.mark.parametrize("spec, match", [
    ("camera:shot=-0.1", "shot level must be >= 0"),
    ("camera:read=-1e-4", "read variance must be >= 0"),
    ("camera:q=0", "JPEG quality must be >= 1 and <= 100"),
    ("camera:q=101", "JPEG quality must be >= 1 and <= 100"),
    ("camera:corr=-1", "correlation width must be >= 0"),
    ("camera:corr=20", "correlation width must be >= 0 and <= 16"),
    ("camera:chroma=1.5", "chroma factor must be >= 0 and <= 1"),
    ("camera:cblur=-1", "chroma blur width must be >= 0"),
    ("camera:cblur=17", "chroma blur width must be >= 0 and <= 16"),
    ("camera:iso=100", "bad camera option"),
    ("camera:shot=abc", "bad number"),
    ("camera:shot=0.01-0.001", "lo <= hi"),
])
def test_bad_camera_specs(spec, match):
    with pytest.raises(InputError, match=match) as info:
        parse_noise(spec)
    assert "\n" not in str(info.value)


def test_bad_camera_parameters_and_images():
    for build in (lambda: Camera(-1), lambda: Camera(0.01, -1), lambda: Camera(quality=0),
                  lambda: Camera(quality=(50, 101))):
        with pytest.raises(InputError):
            build()
    with pytest.raises(InputError, match="1 .*or 3"):
        Camera()(torch.rand(1, 4, 8, 8), 0)
