"""Classical denoisers: conventions of the wrapped libraries, batches, sigma, dependencies."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch

from denoise.errors import InputError, MissingDependencyError
from denoise.estimate import estimate_sigma
from denoise.metrics import psnr
from denoise.models import create_model, get_entry
from denoise.models.classical import BM3D, sigma_per_image

HAVE_BM3D = importlib.util.find_spec("bm3d") is not None
needs_bm3d = pytest.mark.skipif(not HAVE_BM3D, reason="optional package bm3d not installed (pip install 'denoise[bm3d]')")
BM3D_PARAM = pytest.param("bm3d", marks=needs_bm3d)
CLASSICAL = [BM3D_PARAM, "nlm", "wavelet", "tv", "dct"]
SIGMA = 25 / 255


def _clean(channels: int, size: int = 48) -> torch.Tensor:
    """A piecewise-smooth test image: a shaded gradient with a bright disc and a dark bar."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = 0.25 + 0.4 * xx * (1 - 0.5 * yy)
    disc = ((xx - 0.6) ** 2 + (yy - 0.4) ** 2 < 0.05).float() * 0.3
    bar = ((yy > 0.7) & (yy < 0.8)).float() * -0.2
    image = (base + disc + bar).clamp(0, 1)
    tints = torch.tensor([1.0, 0.8, 0.6])[:channels, None, None]
    return (image[None] * tints)[None].contiguous()


def _noisy(clean: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return clean + sigma * torch.randn(clean.shape, generator=generator)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", CLASSICAL)
def test_denoising_improves_psnr(name, channels):
    clean = _clean(channels)
    noisy = _noisy(clean, SIGMA)
    with torch.inference_mode():
        out = create_model(name)(noisy, SIGMA)
    assert out.shape == clean.shape and out.dtype == torch.float32
    gain = float(psnr(out.clamp(0, 1), clean)[0] - psnr(noisy, clean)[0])
    assert gain > 4.0, f"{name}: only {gain:.2f} dB better than the noisy input"


def _direct(name: str, image: np.ndarray, sigma: float) -> np.ndarray:
    """The wrapped library called directly, with the parameters the wrappers document."""
    from skimage import restoration

    axis = -1 if image.ndim == 3 else None
    if name == "bm3d":
        import bm3d

        return bm3d.bm3d_rgb(image, sigma) if image.ndim == 3 else bm3d.bm3d(image, sigma)
    if name == "nlm":
        return restoration.denoise_nl_means(image, patch_size=5, patch_distance=6, h=0.6 * sigma,
                                            sigma=sigma, fast_mode=True, channel_axis=axis)
    if name == "wavelet":
        return restoration.denoise_wavelet(image, sigma=sigma, method="BayesShrink", mode="soft",
                                           rescale_sigma=True, channel_axis=axis,
                                           convert2ycbcr=image.ndim == 3)
    weight = create_model("tv").weight_factor * sigma
    return restoration.denoise_tv_chambolle(image, weight=weight, channel_axis=axis)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", [BM3D_PARAM, "nlm", "wavelet", "tv"])
def test_wrappers_pass_values_and_sigma_on_the_0_1_scale(name, channels):
    """Same result as the library on the HxW(x3) float array: no rescaling, no channel mix-up."""
    noisy = _noisy(_clean(channels, 40), SIGMA)
    out = create_model(name)(noisy, SIGMA)[0].permute(1, 2, 0).numpy()
    image = noisy[0].permute(1, 2, 0).double().numpy()
    ref = _direct(name, image[:, :, 0] if channels == 1 else image, SIGMA)
    np.testing.assert_allclose(out, ref.reshape(out.shape), atol=1e-5)


@pytest.mark.parametrize("name", ["nlm", "wavelet", "tv", "dct"])
def test_batches_use_one_sigma_per_image(name):
    noisy = torch.cat([_noisy(_clean(1, 32), 0.05, seed=1), _noisy(_clean(1, 32), 0.2, seed=2)])
    model = create_model(name)
    both = model(noisy, torch.tensor([0.05, 0.2]))
    torch.testing.assert_close(both[:1], model(noisy[:1], 0.05), atol=1e-6, rtol=0)
    torch.testing.assert_close(both[1:], model(noisy[1:], 0.2), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["nlm", "wavelet", "tv"])
def test_sigma_none_is_estimated(name):
    noisy = _noisy(_clean(3, 32), 0.1)
    model = create_model(name)
    torch.testing.assert_close(model(noisy), model(noisy, estimate_sigma(noisy)))


def test_sigma_per_image():
    x = torch.zeros(3, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(sigma_per_image(x, 0.1), torch.full((3,), 0.1, dtype=torch.float64))
    torch.testing.assert_close(sigma_per_image(x, torch.tensor(0.2)), torch.full((3,), 0.2, dtype=torch.float64))
    with pytest.raises(InputError, match="one value per image"):
        sigma_per_image(x, torch.tensor([0.1, 0.2]))


def test_registry_entries():
    for name in ["bm3d", "nlm", "wavelet", "tv", "dct"]:
        if name == "bm3d" and not HAVE_BM3D:
            continue
        entry = get_entry(name)
        assert entry.kind == "classical" and entry.description
        model = create_model(name)
        assert isinstance(model.receptive_field, int) and model.receptive_field >= 0
        assert model.uses_sigma
    assert get_entry("bm3d").requires == "bm3d"
    nlm = create_model("nlm", patch_size=7, patch_distance=11)
    assert nlm.receptive_field == 11 + 3


def test_bm3d_missing_is_a_clear_error(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "bm3d" else real_find_spec(name, *a, **k))
    assert not get_entry("bm3d").available()
    with pytest.raises(MissingDependencyError, match=r"pip install 'denoise\[bm3d\]'"):
        create_model("bm3d")
    monkeypatch.setitem(sys.modules, "bm3d", None)  # `import bm3d` now raises ImportError
    with pytest.raises(MissingDependencyError, match="bm3d"):
        BM3D()


def test_unknown_wavelet_method():
    with pytest.raises(InputError, match="BayesShrink"):
        create_model("wavelet", method="SureShrink")


def test_tv_weight_grows_with_sigma():
    noisy = _noisy(_clean(1, 32), 0.1)
    tv = create_model("tv")
    weak, strong = tv(noisy, 0.02), tv(noisy, 0.3)
    # A larger weight flattens more: the total variation of the output drops.
    def total_variation(x):
        return float(x.diff(dim=-1).abs().sum() + x.diff(dim=-2).abs().sum())

    assert total_variation(strong) < 0.5 * total_variation(weak)
