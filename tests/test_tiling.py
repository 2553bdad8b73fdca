"""Overlap-tiled inference equals untiled inference for models with a known receptive field."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from denoise.errors import InputError, ModelError
from denoise.models.base import Restorer
from denoise.models.dct import DCTDenoiser
from denoise.tiling import axis_spans, tiled


class SmallConvNet(Restorer):
    """Three zero-padded convs (3x3, 5x5, 3x3): an output pixel sees a radius of 1 + 2 + 1."""

    receptive_field = 4

    def __init__(self, channels: int):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(8, 8, 5, padding=2), nn.ReLU(),
                                 nn.Conv2d(8, channels, 3, padding=1))

    def forward(self, x, sigma=None):
        return self.net(x)


def _models(channels):
    return {"dct": DCTDenoiser(), "dct-valid": DCTDenoiser(border="valid"),
            "convnet": SmallConvNet(channels)}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", ["dct", "dct-valid", "convnet"])
@pytest.mark.parametrize("shape,tile", [((97, 83), 40), ((64, 130), 33), ((50, 61), 512), ((45, 45), 45)])
def test_tiled_equals_untiled(name, channels, shape, tile, generator):
    model = _models(channels)[name]
    x = torch.rand(2, channels, *shape, generator=generator)
    sigma = torch.tensor([0.05, 0.15])
    with torch.inference_mode():
        whole = model(x, sigma)
    torch.testing.assert_close(tiled(model, x, sigma, tile=tile), whole, atol=1e-5, rtol=0)


def test_an_overlap_below_the_receptive_field_shows(generator):
    """The exactness comes from the crop: without it, the tile borders differ."""
    model = SmallConvNet(1)
    x = torch.rand(1, 1, 90, 90, generator=generator)
    with torch.inference_mode():
        whole = model(x)
    assert (tiled(model, x, tile=32, overlap=0, blend=0) - whole).abs().max() > 1e-3
    assert (tiled(model, x, tile=32, overlap=2) - whole).abs().max() > 1e-4
    torch.testing.assert_close(tiled(model, x, tile=32, overlap=4, blend=0), whole, atol=1e-5, rtol=0)


@settings(max_examples=200, deadline=None)
@given(length=st.integers(1, 400), tile=st.integers(1, 150), overlap=st.integers(0, 20),
       blend=st.integers(0, 20))
def test_axis_plan(length, tile, overlap, blend):
    """Tiles cover the axis, keep only pixels at least `overlap` from inner tile edges,
    overlap their neighbours by at least `blend`, and their weights sum to one."""
    try:
        spans = axis_spans(length, tile, overlap, blend)
    except InputError:
        assert length > tile and tile - 2 * overlap - blend < 1
        return
    total = torch.zeros(length, dtype=torch.float64)
    for s in spans:
        assert 0 <= s.start <= s.keep_start < s.keep_stop <= s.stop <= length
        assert s.stop - s.start == min(tile, length)
        assert s.keep_start == 0 or s.keep_start - s.start >= overlap
        assert s.keep_stop == length or s.stop - s.keep_stop >= overlap
        assert (s.weight > 0).all()
        total[s.keep_start:s.keep_stop] += s.weight
    torch.testing.assert_close(total, torch.ones(length, dtype=torch.float64))
    for a, b in zip(spans, spans[1:]):
        assert a.keep_stop - b.keep_start >= blend


def test_blending_ramps_are_linear_and_complementary():
    left, right = axis_spans(20, 14, 2, 4)
    torch.testing.assert_close(right.weight[:4], torch.tensor([0.125, 0.375, 0.625, 0.875], dtype=torch.float64))
    torch.testing.assert_close(left.weight[-4:] + right.weight[:4], torch.ones(4, dtype=torch.float64))


def test_sigma_is_passed_to_every_tile_as_given(generator):
    """Choosing sigma is the caller's job (denoise.inference): the tiler passes it through."""
    seen = []

    class Spy(Restorer):
        uses_sigma = True

        def forward(self, x, sigma=None):
            seen.append(sigma)
            return x

    tiled(Spy(), torch.rand(1, 1, 50, 50), 0.1, tile=16)
    assert len(seen) > 1 and all(s == 0.1 for s in seen)


def test_any_tile_size_works_with_any_receptive_field():
    """``tile`` is the region each tile contributes; the margin comes on top of it."""
    x = torch.rand(1, 1, 64, 64)
    torch.testing.assert_close(tiled(DCTDenoiser(), x, 0.1, tile=3), DCTDenoiser()(x, 0.1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("tile", [0, -5, 2.5, "big", True])
def test_bad_tile(tile):
    with pytest.raises(InputError):
        tiled(DCTDenoiser(), torch.rand(1, 1, 16, 16), 0.1, tile=tile)


def test_model_without_the_contract_needs_an_overlap_and_scale():
    class Plain(nn.Module):
        def forward(self, x, sigma=None):
            return 1 - x

    x = torch.rand(1, 1, 16, 16)
    with pytest.raises(ModelError, match="Restorer"):
        tiled(Plain(), x, tile=8)
    torch.testing.assert_close(tiled(Plain(), x, tile=8, overlap=1, blend=1, scale=1, align=1), 1 - x)


def test_output_of_another_shape_is_reported():
    class Shrink(Restorer):
        receptive_field = 0

        def forward(self, x, sigma=None):
            return x[:, :, 1:]

    with pytest.raises(ModelError, match="shape"):
        tiled(Shrink(), torch.rand(1, 1, 16, 16), tile=8)


def test_progress_bar_runs(capsys):
    y = tiled(DCTDenoiser(), torch.rand(1, 1, 40, 40), 0.1, tile=24, progress=True)
    assert y.shape == (1, 1, 40, 40)
