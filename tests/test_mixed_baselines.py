"""Classical baselines for mixed noise: the median filters and the median-first pipelines
(denoise.models.pipeline): the switching rule, the contract, and what they gain on real images."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from denoise.errors import DenoiseError, InputError
from denoise.estimate import estimate_sigma
from denoise.inference import restore
from denoise.io import read_image
from denoise.metrics import psnr
from denoise.models.base import contract
from denoise.models.pipeline import (
    AdaptiveMedian,
    MedianFilter,
    MedianThen,
    impulse_mask,
    median_filter,
    switching_median,
)
from denoise.models.registry import create_model, get_entry
from denoise.noise import parse_noise
from denoise.tiling import tiled

pytestmark = pytest.mark.usefixtures("one_thread")

HAVE_BM3D = importlib.util.find_spec("bm3d") is not None
needs_bm3d = pytest.mark.skipif(not HAVE_BM3D, reason="optional package bm3d not installed "
                                "(pip install 'denoise[bm3d]')")
NAMES = ["median", "median-adaptive", "median+dct", pytest.param("median+bm3d", marks=[needs_bm3d, pytest.mark.slow])]
SIGMA = 25 / 255


def _crop(data_root, name: str = "Kodak24/kodim05.png", size: int = 96) -> torch.Tensor:
    x, _ = read_image(data_root / name)
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size].contiguous()


def _noisy(clean: torch.Tensor, spec: str, seed: int = 0) -> torch.Tensor:
    return parse_noise(spec)(clean, generator=torch.Generator().manual_seed(seed))


def _gain(out: torch.Tensor, noisy: torch.Tensor, clean: torch.Tensor) -> float:
    return float(psnr(out.clamp(0, 1), clean)[0] - psnr(noisy, clean)[0])


# ---------------------------------------------------------------- the filters themselves


def test_median_filter_matches_a_direct_median():
    x = torch.rand(2, 3, 11, 9, generator=torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    ref = torch.stack([padded[..., i:i + 11, j:j + 9] for i in range(3) for j in range(3)], -1).median(-1).values
    torch.testing.assert_close(median_filter(x, 3), ref)
    torch.testing.assert_close(median_filter(x, 3, chunk_elements=50), ref)  # one row per band
    assert torch.equal(median_filter(x, 1), x)


def test_switching_median_changes_only_the_impulses():
    g = torch.Generator().manual_seed(2)
    clean = 0.2 + 0.6 * torch.rand(1, 3, 20, 24, generator=g)
    noisy = _noisy(clean, "saltpepper:0.2")
    bad = impulse_mask(noisy)
    assert bad.any() and not impulse_mask(clean).any()
    out = switching_median(noisy)
    assert torch.equal(out[~bad], noisy[~bad])  # every other value is kept exactly
    assert not impulse_mask(out).any()  # and no impulse is left at 20 %
    torch.testing.assert_close(switching_median(noisy, chunk_elements=100), out)


def test_switching_median_window_rules():
    x = torch.full((1, 1, 9, 9), 0.5)
    x[..., 3:6, 3:6] = 1.0  # a 3x3 block of salt: the centre's 3x3 window holds no good value
    x[..., 0, 0] = 0.0
    out = switching_median(x)
    assert torch.equal(out, torch.full_like(x, 0.5))  # the 5x5 window fills the centre
    white = torch.ones(1, 3, 10, 10)
    assert torch.equal(switching_median(white), white)  # saturated: the plain median, 1
    # the median of the non-impulse values only; an even count takes the mean of the middle two
    y = torch.tensor([[[[0.1, 0.2, 0.0], [0.3, 1.0, 1.0], [0.4, 1.0, 0.0]]]])
    assert abs(float(switching_median(y, max_size=3)[0, 0, 1, 1]) - 0.25) < 1e-6


def test_bad_arguments_are_input_errors():
    with pytest.raises(InputError, match="odd"):
        MedianFilter(4)
    with pytest.raises(InputError, match="max_size"):
        AdaptiveMedian(max_size=1)
    with pytest.raises(InputError, match="tolerance"):
        AdaptiveMedian(tolerance=0.7)
    with pytest.raises(InputError, match="median"):
        MedianThen("dct", median="mean")
    with pytest.raises(DenoiseError):
        create_model("median+dct", denoiser="n2n-unet-gray")  # a learned model is no second stage


# ---------------------------------------------------------------- the model contract


@pytest.mark.parametrize("name", NAMES)
def test_contract_and_registry(name):
    entry = get_entry(name)
    assert entry.kind == "classical" and not entry.missing_extras()
    model = create_model(name)
    c = contract(model)
    assert c.scale == 1 and c.alignment == 1 and c.uses_sigma == name.startswith("median+")
    assert not model.exportable
    x = _noisy(torch.full((1, 3, 30, 26), 0.5), "gaussian:10+saltpepper:0.05")
    with torch.inference_mode():
        assert restore(x, name, SIGMA, tile=None, warn_ignored_sigma=False).output.shape == x.shape
    if name == "median+bm3d":
        assert entry.requires == "bm3d"


@pytest.mark.parametrize("name", ["median", "median-adaptive", "median+dct"])
def test_tiles_reproduce_the_whole_image(name):
    """The receptive field is exact: tiles with that overlap give the untiled output."""
    x = _noisy(torch.rand(1, 3, 70, 57, generator=torch.Generator().manual_seed(3)).mul(0.8).add(0.1),
               "gaussian:15+saltpepper:0.1")
    model = create_model(name)
    sigma = torch.tensor([15 / 255])
    whole = model(x, sigma)
    parts = tiled(model, x, sigma, tile=32, overlap=model.receptive_field)
    torch.testing.assert_close(parts, whole, atol=1e-5, rtol=0)


def test_pipeline_estimates_sigma_after_the_median():
    clean = torch.full((1, 3, 40, 40), 0.5)
    x = _noisy(clean, "gaussian:20+saltpepper:0.05")
    model = create_model("median+dct")
    first = model.first(x)
    torch.testing.assert_close(model(x), model(x, estimate_sigma(first)))
    assert float(estimate_sigma(first)) < float(estimate_sigma(x))  # the impulses inflate it


# ---------------------------------------------------------------- real images


def test_medians_remove_impulses_on_a_real_image(data_root):
    clean = _crop(data_root)
    noisy = _noisy(clean, "saltpepper:0.05")
    gains = {name: _gain(create_model(name)(noisy), noisy, clean) for name in ("median", "median-adaptive")}
    # measured on this crop: +8.5 dB (3x3 median) and +14.2 dB (switching median)
    assert gains["median"] > 5.0, gains
    assert gains["median-adaptive"] > gains["median"] + 4.0, gains


def test_median_then_dct_beats_dct_on_mixed_noise(data_root):
    clean = _crop(data_root)
    noisy = _noisy(clean, "gaussian:25+saltpepper:0.05")
    dct = create_model("dct")(noisy, SIGMA)
    both = create_model("median+dct")(noisy, SIGMA)
    plain = _gain(dct, noisy, clean)
    piped = _gain(both, noisy, clean)
    # measured on this crop: dct alone gains +3.0 dB, median+dct +9.7 dB, the 3x3 median +7.4 dB
    assert piped > plain + 4.0, (plain, piped)
    assert piped > _gain(create_model("median")(noisy), noisy, clean) + 1.0


@pytest.mark.slow  # BM3D takes 1-20 s even on 48x48 pixels, depending on the load
@needs_bm3d
def test_median_then_bm3d_beats_bm3d_on_mixed_noise(data_root):
    clean = _crop(data_root, size=48)
    noisy = _noisy(clean, "gaussian:25+saltpepper:0.05")
    plain = _gain(create_model("bm3d")(noisy, SIGMA), noisy, clean)
    piped = _gain(create_model("median+bm3d")(noisy, SIGMA), noisy, clean)
    # measured on this crop: bm3d alone gains +2.6 dB, median+bm3d +10.3 dB
    assert piped > plain + 5.0, (plain, piped)
