"""Noise level estimation: equal to scikit-image's estimator, and close to the truth.

Stated accuracy (Gaussian noise, not clipped, sigma 5..50 on the 0-255 scale): within
2 levels + 5 % of sigma for every image tested. Image texture biases the estimate
upwards, which is why the allowance has a constant part that dominates at low sigma.
"""
from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch
from skimage import data as skdata
from skimage.restoration import estimate_sigma as skimage_estimate_sigma

from denoise.errors import InputError
from denoise.estimate import estimate_sigma

SIGMAS = [5, 10, 15, 25, 50]


def _tolerance(sigma: float) -> float:
    """Allowed |estimate - sigma| on the 0-255 scale."""
    return 2.0 + 0.05 * sigma


def _photos() -> list[torch.Tensor]:
    gray = torch.from_numpy(skdata.camera()).float()[None, None] / 255
    colour = torch.from_numpy(skdata.astronaut()).float().permute(2, 0, 1)[None] / 255
    return [gray, colour]


def _add_noise(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return x + sigma / 255 * torch.randn(x.shape, generator=g, dtype=x.dtype)


def _skimage(x: torch.Tensor) -> float:
    return float(skimage_estimate_sigma(x[0].double().numpy(), channel_axis=0, average_sigmas=True))


@pytest.mark.parametrize("sigma", SIGMAS)
def test_matches_skimage_and_the_truth_on_photos(sigma):
    for seed, clean in enumerate(_photos()):
        noisy = _add_noise(clean, sigma, seed)
        ours = estimate_sigma(noisy).item() * 255
        assert ours == pytest.approx(_skimage(noisy) * 255, rel=1e-5)
        assert abs(ours - sigma) <= _tolerance(sigma)


@pytest.mark.parametrize("shape", [(1, 1, 4, 4), (1, 1, 7, 9), (2, 3, 33, 20), (3, 1, 64, 65)])
def test_matches_skimage_on_any_shape(shape):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    ours = estimate_sigma(x)
    assert ours.shape == (shape[0],) and ours.dtype == torch.float64
    for i in range(shape[0]):
        assert ours[i].item() == pytest.approx(_skimage(x[i:i + 1]), rel=1e-9)


def test_haar_is_the_median_of_pywavelets_haar_diagonal_detail():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(1, 1, 31, 26, generator=g, dtype=torch.float64)
    detail = pywt.dwtn(x[0, 0].numpy(), "haar")["dd"]
    assert (detail[-1] == 0).all()  # the odd last row meets its own mirror image: no information
    expected = np.median(np.abs(detail[detail != 0])) / 0.6744897501960817
    assert estimate_sigma(x, wavelet="haar").item() == pytest.approx(expected, rel=1e-9)


def test_batch_equals_single_images_and_channels_are_averaged():
    g = torch.Generator().manual_seed(6)
    x = torch.rand(3, 3, 40, 40, generator=g)
    x = x + torch.tensor([0.02, 0.1, 0.2]).view(3, 1, 1, 1) * torch.randn(x.shape, generator=g)
    batch = estimate_sigma(x)
    singles = torch.cat([estimate_sigma(x[i:i + 1]) for i in range(3)])
    assert torch.allclose(batch, singles)
    per_channel = torch.stack([estimate_sigma(x[:, c:c + 1]) for c in range(3)], dim=1).mean(dim=1)
    assert torch.allclose(batch, per_channel)
    assert batch[0] < batch[1] < batch[2]


def test_flat_black_regions_are_left_out_like_skimage():
    g = torch.Generator().manual_seed(7)
    x = torch.zeros(1, 1, 64, 64, dtype=torch.float64)
    x[..., 32:] = 0.5 + 0.1 * torch.randn(1, 1, 64, 32, generator=g, dtype=torch.float64)
    assert estimate_sigma(x).item() == pytest.approx(_skimage(x), rel=1e-9)
    assert estimate_sigma(x).item() == pytest.approx(0.1, rel=0.2)  # not dragged to 0 by the black half
    assert estimate_sigma(torch.zeros(1, 1, 8, 8)).item() == 0


def test_bad_arguments():
    with pytest.raises(InputError, match="4x4"):
        estimate_sigma(torch.rand(1, 1, 3, 10))
    with pytest.raises(InputError, match="wavelet"):
        estimate_sigma(torch.rand(1, 1, 8, 8), wavelet="sym8")
    with pytest.raises(InputError):
        estimate_sigma(torch.rand(8, 8))


@pytest.mark.parametrize("set_name", ["Set12", "Kodak24"])
def test_close_to_the_truth_on_real_test_images(data_root, set_name):
    from denoise.datasets import load_set

    images = load_set(set_name)
    for sigma in SIGMAS:
        errors = []
        for seed, (name, clean) in enumerate(images):
            noisy = _add_noise(clean, sigma, seed)
            ours = estimate_sigma(noisy).item() * 255
            if seed < 3:
                assert ours == pytest.approx(_skimage(noisy) * 255, rel=1e-5)
            errors.append(ours - sigma)
            assert abs(ours - sigma) <= _tolerance(sigma), (name, sigma, ours)
        assert abs(np.mean(errors)) <= 1.5  # on average within 1.5 levels
