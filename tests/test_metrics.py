"""PSNR, SSIM and residual_std against scikit-image, the reference implementation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from denoise.errors import InputError
from denoise.metrics import psnr, residual_std, ssim


def _reference_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float) -> list[float]:
    return [structural_similarity(a.numpy(), b.numpy(), gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False, data_range=data_range, channel_axis=0)
            for a, b in zip(x, y)]


def _reference_psnr(x: torch.Tensor, y: torch.Tensor, data_range: float) -> list[float]:
    return [peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=data_range) for a, b in zip(x, y)]


def _photos() -> dict[str, torch.Tensor]:
    """Crops of two scikit-image photos as (1, C, H, W) float64 in [0, 1]."""
    gray = torch.from_numpy(skdata.camera()[100:260, 150:300]).double()[None, None] / 255
    colour = torch.from_numpy(skdata.astronaut()[20:180, 120:270]).double().permute(2, 0, 1)[None] / 255
    return {"gray": gray, "colour": colour}


def _noisy_pair(x: torch.Tensor, sigma: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return x, (x + sigma * torch.randn(x.shape, generator=g, dtype=x.dtype)).clamp(0, 1)


@pytest.mark.parametrize("kind", ["gray", "colour"])
@pytest.mark.parametrize("data_range", [1.0, 255.0, 2.0])
def test_psnr_and_ssim_match_skimage_on_photos(kind, data_range):
    clean, noisy = _noisy_pair(_photos()[kind], 25 / 255)
    clean, noisy = clean * data_range, noisy * data_range
    assert torch.allclose(psnr(clean, noisy, data_range), torch.tensor(_reference_psnr(clean, noisy, data_range),
                                                                        dtype=torch.float64), atol=1e-8)
    assert torch.allclose(ssim(clean, noisy, data_range), torch.tensor(_reference_ssim(clean, noisy, data_range),
                                                                        dtype=torch.float64), atol=1e-8)


@pytest.mark.parametrize("channels", [1, 3])
def test_batches_give_one_value_per_image(channels):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, channels, 23, 31, generator=g)  # odd sizes, float32
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    for metric, reference in ((psnr, _reference_psnr), (ssim, _reference_ssim)):
        values = metric(x, y)
        assert values.shape == (4,) and values.dtype == torch.float32
        expected = torch.tensor(reference(x.double(), y.double(), 1.0), dtype=torch.float32)
        assert torch.allclose(values, expected, atol=1e-5)
        assert len(set(values.tolist())) == 4


@settings(max_examples=25, deadline=None)
@given(h=st.integers(11, 40), w=st.integers(11, 40), channels=st.sampled_from([1, 3]),
       scale=st.sampled_from([1.0, 255.0]), seed=st.integers(0, 2 ** 16))
def test_ssim_matches_skimage_on_any_shape(h, w, channels, scale, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, channels, h, w, generator=g, dtype=torch.float64) * scale
    y = torch.rand(1, channels, h, w, generator=g, dtype=torch.float64) * scale * 0.5 + x * 0.5
    assert ssim(x, y, scale).item() == pytest.approx(_reference_ssim(x, y, scale)[0], abs=1e-8)


def test_known_values():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    assert torch.isinf(psnr(x, x)).all()
    assert torch.allclose(ssim(x, x), torch.ones(2))
    shifted = x + 0.1
    assert torch.allclose(psnr(x, shifted), torch.full((2,), 20.0), atol=1e-4)  # MSE 0.01
    assert torch.allclose(residual_std(x, shifted), torch.zeros(2), atol=1e-6)  # a shift has no spread
    assert torch.allclose(ssim(x, shifted), ssim(shifted, x))


def test_residual_std_measures_the_noise():
    clean = _photos()["colour"]
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(3), dtype=clean.dtype)
    difference = (noisy - clean).numpy()
    assert residual_std(noisy, clean).item() == pytest.approx(float(np.std(difference)), rel=1e-12)
    assert residual_std(noisy, clean).item() == pytest.approx(0.1, rel=0.01)


@pytest.mark.parametrize("call, match", [
    (lambda: psnr(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9)), "same shape"),
    (lambda: ssim(torch.rand(1, 1, 10, 30), torch.rand(1, 1, 10, 30)), "11x11"),
    (lambda: psnr(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), data_range=0), "data_range"),
    (lambda: ssim(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16), data_range=None), "data_range"),
    (lambda: psnr(torch.rand(8, 8), torch.rand(8, 8)), r"\(N, C, H, W\)"),
    (lambda: residual_std(np.zeros((1, 1, 4, 4)), torch.zeros(1, 1, 4, 4)), "float tensor"),
])
def test_bad_arguments(call, match):
    with pytest.raises(InputError, match=match):
        call()


def test_real_images_match_skimage(data_root):
    from denoise.io import list_images, read_image

    for name in ("Set12", "CBSD68"):
        clean = read_image(list_images(data_root / name)[0])[0][..., :200, :200]
        clean, noisy = _noisy_pair(clean.double(), 15 / 255, seed=4)
        assert ssim(clean, noisy).item() == pytest.approx(_reference_ssim(clean, noisy, 1.0)[0], abs=1e-8)
        assert psnr(clean, noisy).item() == pytest.approx(_reference_psnr(clean, noisy, 1.0)[0], abs=1e-8)
