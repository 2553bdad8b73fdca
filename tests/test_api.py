"""denoise.denoise: input checks, model choice, tiling, clamping."""
from __future__ import annotations

import pytest
import torch

import denoise
from denoise import inference as api
from denoise.errors import InputError, ModelError
from denoise.models import create_model, get_entry
from denoise.models.base import Restorer
from denoise.models.registry import ModelEntry


@pytest.fixture
def noisy(generator) -> torch.Tensor:
    clean = torch.linspace(0, 1, 40).repeat(1, 1, 36, 1)
    return clean + 0.1 * torch.randn(clean.shape, generator=generator)


def test_named_model_clamped(noisy):
    y = denoise.denoise(noisy, "dct", 0.1)
    with torch.inference_mode():
        ref = create_model("dct")(noisy, 0.1)
    assert ref.min() < 0 or ref.max() > 1  # clamping has work to do
    torch.testing.assert_close(y, ref.clamp(0, 1))
    assert torch.is_inference(y) and not y.requires_grad


def test_module_is_used_as_given(noisy):
    class Half(Restorer):
        receptive_field = 0

        def forward(self, x, sigma=None):
            return x / 2

    torch.testing.assert_close(denoise.denoise(noisy.clamp(0, 1), Half()), noisy.clamp(0, 1) / 2)


def test_tiled_equals_untiled(noisy):
    torch.testing.assert_close(denoise.denoise(noisy, "dct", 0.1, tile=24),
                               denoise.denoise(noisy, "dct", 0.1), atol=1e-5, rtol=0)


def test_sigma_none_is_estimated(noisy):
    from denoise.estimate import estimate_sigma

    torch.testing.assert_close(denoise.denoise(noisy, "dct"),
                               denoise.denoise(noisy, "dct", float(estimate_sigma(noisy))))


@pytest.mark.parametrize("channels,learned", [(1, "n2n-unet-gray"), (3, "n2n-unet-color")])
def test_default_prefers_shipped_learned_weights(channels, learned, monkeypatch):
    expected = learned if get_entry(learned).has_weights() else "dct"
    assert api.default_model_name(channels) == expected
    monkeypatch.setattr(ModelEntry, "has_weights", lambda self: False)
    assert api.default_model_name(channels) == "dct"
    monkeypatch.setattr(ModelEntry, "has_weights", lambda self: self.name == learned)
    assert api.default_model_name(channels) == learned


def test_default_runs(noisy):
    y = denoise.denoise(noisy.expand(1, 3, -1, -1), sigma=0.1)
    assert y.shape == (1, 3, 36, 40) and 0 <= float(y.min()) and float(y.max()) <= 1


@pytest.mark.parametrize("x", [torch.rand(8, 8), torch.rand(1, 2, 8, 8), torch.zeros(1, 1, 8, 8, dtype=torch.uint8),
                               torch.full((1, 1, 8, 8), float("nan")), "image.png"])
def test_bad_images(x):
    with pytest.raises(InputError):
        denoise.denoise(x, "dct", 0.1)


@pytest.mark.parametrize("sigma", [-0.1, 0.0, 25.0, "high", float("inf")])
def test_bad_sigma(sigma):
    with pytest.raises(InputError, match="sigma"):
        denoise.denoise(torch.rand(1, 1, 8, 8), "dct", sigma)


@pytest.mark.parametrize("tile", [0, -1, 2.5, True, "512"])
def test_bad_tile(tile):
    with pytest.raises(InputError, match="tile"):
        denoise.denoise(torch.rand(1, 1, 8, 8), "dct", 0.1, tile=tile)


def test_bad_model():
    with pytest.raises(ModelError, match="unknown model"):
        denoise.denoise(torch.rand(1, 1, 8, 8), "no-such-model", 0.1)
    with pytest.raises(InputError, match="model"):
        denoise.denoise(torch.rand(1, 1, 8, 8), 42, 0.1)
