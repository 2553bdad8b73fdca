"""The sliding-window DCT denoiser: transform, thresholding, borders, quality on Set12."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.fft import dctn, idctn

from denoise.errors import InputError
from denoise.models import create_model
from denoise.models.dct import COLOR_TRANSFORM, DCTDenoiser, dct_basis, dct_matrix

# The paper's color transform, written independently of the module.
_OPP = np.array([[1, 1, 1], [1, 0, -1], [1, -2, 1]], dtype=np.float64)
_OPP /= np.linalg.norm(_OPP, axis=1, keepdims=True)


def naive_dct_denoise(image: np.ndarray, sigma: float, *, n: int, r: float, mode: str,
                      border: str, color: bool) -> np.ndarray:
    """Reference: loop over every patch with scipy's orthonormal DCT; image (C, H, W)."""
    if color:
        image = np.einsum("ij,jhw->ihw", _OPP, image)
    c, h, w = image.shape
    pad = n - 1 if border == "reflect" else 0
    out = np.empty_like(image)
    t = r * sigma
    for ch in range(c):
        plane = np.pad(image[ch], pad, mode="reflect")
        acc, count = np.zeros_like(plane), np.zeros_like(plane)
        for i in range(plane.shape[0] - n + 1):
            for j in range(plane.shape[1] - n + 1):
                coef = dctn(plane[i:i + n, j:j + n], norm="ortho")
                dc = coef[0, 0]
                coef = np.where(np.abs(coef) >= t, coef, 0) if mode == "hard" else \
                    np.sign(coef) * np.maximum(np.abs(coef) - t, 0)
                coef[0, 0] = dc
                acc[i:i + n, j:j + n] += idctn(coef, norm="ortho")
                count[i:i + n, j:j + n] += 1
        out[ch] = (acc / count)[pad:pad + h, pad:pad + w]
    return np.einsum("ji,jhw->ihw", _OPP, out) if color else out


def test_dct_matrix_matches_scipy():
    eye = np.eye(8)
    np.testing.assert_allclose(dct_matrix(8).numpy(), dctn(eye, axes=[0], norm="ortho"), atol=1e-12)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_basis_is_orthonormal(n):
    b = dct_basis(n).reshape(n * n, n * n)
    torch.testing.assert_close(b @ b.T, torch.eye(n * n, dtype=torch.float64))
    torch.testing.assert_close(b[0], torch.full((n * n,), 1.0 / n, dtype=torch.float64))  # DC first


def test_color_transform_is_orthonormal():
    torch.testing.assert_close(COLOR_TRANSFORM @ COLOR_TRANSFORM.T, torch.eye(3, dtype=torch.float64))
    np.testing.assert_allclose(COLOR_TRANSFORM.numpy(), _OPP, atol=1e-12)


def test_separable_inverse_is_the_adjoint_of_the_forward(generator):
    """<conv2d(x, B), c> == <x, inverse(c)>: the separable inverse is conv_transpose2d(., B)."""
    model = DCTDenoiser(patch_size=4).double()
    x = torch.randn(2, 1, 9, 11, generator=generator, dtype=torch.float64)
    c = torch.randn(2, 16, 6, 8, generator=generator, dtype=torch.float64)
    inverse = F.conv_transpose2d(F.conv_transpose2d(c, model.inverse_columns, groups=4), model.inverse_rows)
    torch.testing.assert_close(inverse, F.conv_transpose2d(c, model.basis))
    torch.testing.assert_close((F.conv2d(x, model.basis) * c).sum(), (x * inverse).sum())


@pytest.mark.parametrize("border", ["reflect", "valid"])
@pytest.mark.parametrize("channels", [1, 3])
def test_zero_threshold_reconstructs_exactly(border, channels, generator):
    x = torch.rand(2, channels, 23, 17, generator=generator)
    y = DCTDenoiser(threshold=0.0, border=border)(x, 0.1)
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["hard", "soft"])
@pytest.mark.parametrize("border", ["reflect", "valid"])
@pytest.mark.parametrize("channels", [1, 3])
def test_matches_naive_per_patch_reference(mode, border, channels, generator):
    n, r, sigma = 4, 2.7, 0.1
    x = torch.rand(1, channels, 13, 11, generator=generator, dtype=torch.float64)
    model = DCTDenoiser(patch_size=n, threshold=r, mode=mode, border=border).double()
    y = model(x, sigma)[0].numpy()
    ref = naive_dct_denoise(x[0].numpy(), sigma, n=n, r=r, mode=mode, border=border, color=channels == 3)
    assert np.abs(y - x[0].numpy()).max() > 0.05  # the thresholds do act
    np.testing.assert_allclose(y, ref, atol=1e-10)


def test_per_channel_option_differs_from_color_transform(generator):
    x = torch.rand(1, 3, 12, 12, generator=generator, dtype=torch.float64)
    per_channel = DCTDenoiser(patch_size=4, color_transform=False).double()(x, 0.1)[0].numpy()
    ref = np.stack([naive_dct_denoise(x[0, c:c + 1].numpy(), 0.1, n=4, r=2.7, mode="hard",
                                      border="reflect", color=False)[0] for c in range(3)])
    np.testing.assert_allclose(per_channel, ref, atol=1e-10)
    assert np.abs(per_channel - DCTDenoiser(patch_size=4).double()(x, 0.1)[0].numpy()).max() > 1e-3


def test_bands_do_not_change_the_result(generator):
    x = torch.rand(2, 3, 40, 29, generator=generator)
    whole = DCTDenoiser()(x, 0.1)
    banded = DCTDenoiser(chunk_elements=1)(x, 0.1)  # one patch row at a time
    torch.testing.assert_close(banded, whole, atol=1e-6, rtol=0)


def test_sigma_per_image(generator):
    x = torch.rand(2, 1, 20, 20, generator=generator)
    model = DCTDenoiser()
    both = model(x, torch.tensor([0.05, 0.2]))
    torch.testing.assert_close(both[:1], model(x[:1], 0.05))
    torch.testing.assert_close(both[1:], model(x[1:], 0.2))
    with pytest.raises(InputError):
        model(x, torch.tensor([0.1, 0.1, 0.1]))


def test_sigma_none_uses_the_estimate(generator):
    from denoise.estimate import estimate_sigma

    x = (torch.rand(1, 1, 32, 32, generator=generator) * 0.2 + 0.4
         + 0.1 * torch.randn(1, 1, 32, 32, generator=generator))
    model = DCTDenoiser()
    torch.testing.assert_close(model(x), model(x, estimate_sigma(x)))


@pytest.mark.parametrize("shape", [(1, 1, 3, 5), (1, 3, 1, 1), (1, 1, 8, 8), (1, 1, 7, 40)])
@pytest.mark.parametrize("border", ["reflect", "valid"])
def test_images_smaller_than_a_patch(shape, border, generator):
    x = torch.rand(*shape, generator=generator)
    y = DCTDenoiser(border=border)(x, 0.1)
    assert y.shape == x.shape and torch.isfinite(y).all()
    torch.testing.assert_close(DCTDenoiser(threshold=0.0, border=border)(x, 0.1), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kwargs", [{"mode": "median"}, {"border": "zeros"}, {"patch_size": 0},
                                    {"threshold": -1.0}])
def test_bad_options_raise_input_error(kwargs):
    with pytest.raises(InputError):
        DCTDenoiser(**kwargs)


def test_registered_as_classical():
    model = create_model("dct")
    assert isinstance(model, DCTDenoiser)
    assert model.receptive_field == 7
    from denoise.models import get_entry

    assert get_entry("dct").kind == "classical"


def test_set12_sigma25_reaches_the_reference(data_root):
    """Mean PSNR on Set12 at sigma 25 (the benchmark's protocol): a reference implementation
    of the paper's method measures 28.87 dB."""
    from denoise.evaluation.bench import add_noise
    from denoise.evaluation.testsets import load_set
    from denoise.metrics import psnr

    model = create_model("dct")
    scores = []
    with torch.inference_mode():
        for i, (_, clean) in enumerate(load_set("Set12", gray=True)):
            noisy = add_noise(clean, 25, 0, i)[0]
            scores.append(float(psnr(model(noisy, 25 / 255).clamp(0, 1), clean)[0]))
    assert len(scores) == 12
    assert np.mean(scores) >= 28.8
