"""The one inference path: names, the model contract over the registry, tiling with
wrappers, scale > 1, noise maps, and the command line on a real image."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from denoise.errors import InputError, ModelError
from denoise.inference import (
    DEFAULT_TILE,
    ModelName,
    load,
    parse_model_name,
    resolve_device,
    restore,
)
from denoise.models.base import Contract, Restorer, Wrapper, contract
from denoise.models.ensemble import SelfEnsemble
from denoise.models.registry import create_model, list_models
from denoise.tiling import tiled


def test_names_are_parsed_once():
    assert parse_model_name("dct+x8") == ModelName("dct", True)
    assert parse_model_name("default") == ModelName("default", False)
    assert str(ModelName("default", True).resolved(3)) in ("n2n-unet-color+x8", "dct+x8")
    for bad in ("", None, 3):
        with pytest.raises(InputError, match="model name"):
            parse_model_name(bad)


@pytest.mark.parametrize("entry", list_models(), ids=lambda e: e.name)
def test_every_registered_model_declares_the_contract(entry):
    if entry.missing_extras():
        pytest.skip(f"needs {entry.missing_extras()}")
    model = create_model(entry.name, pretrained=entry.has_weights())
    assert isinstance(model, Restorer)
    c = contract(model)
    assert isinstance(c, Contract) and c.scale == entry.scale >= 1 and c.receptive_field >= 0
    x = torch.rand(1, entry.channels or getattr(model, "channels", 1), 40, 36)
    with torch.inference_mode():
        y = model(x, torch.tensor([25 / 255]) if c.uses_sigma else None)
    assert y.shape == (1, x.shape[1], 40 * c.scale, 36 * c.scale)
    wrapped = SelfEnsemble(model)
    assert contract(wrapped) == c  # wrappers pass the whole contract through


def test_a_module_without_the_contract_is_refused():
    class Plain(torch.nn.Module):
        def forward(self, x, sigma=None):
            return x

    with pytest.raises(ModelError, match="Restorer"):
        restore(torch.rand(1, 1, 8, 8), Plain())

    class Bad(Restorer):
        receptive_field = -1

    with pytest.raises(ModelError, match="receptive_field"):
        contract(Bad())


class Upscaler(Restorer):
    """A stand-in x2 super-resolution model: a 3x3 blur, then nearest upsampling."""

    receptive_field = 1
    scale = 2

    def forward(self, x, sigma=None):
        y = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        return F.interpolate(y, scale_factor=2, mode="nearest")


def test_tiler_handles_outputs_larger_than_inputs():
    x = torch.rand(2, 3, 45, 70)
    whole = Upscaler()(x)
    out = tiled(Upscaler(), x, tile=16)
    assert out.shape == (2, 3, 90, 140)
    torch.testing.assert_close(out, whole, atol=1e-6, rtol=0)
    torch.testing.assert_close(restore(x, Wrapper(Upscaler()), tile=16).output, whole.clamp(0, 1))


def test_noise_map_is_cropped_with_each_tile():
    class MapScale(Restorer):
        receptive_field = 0
        uses_sigma = True

        def forward(self, x, sigma=None):
            return x * sigma

    x, m = torch.rand(1, 1, 50, 60), torch.rand(1, 1, 50, 60)
    torch.testing.assert_close(restore(x, MapScale(), m, tile=16).output, x * m)


def test_sigma_is_estimated_once_per_image_before_tiling():
    from denoise.estimate import estimate_sigma

    x = (torch.linspace(0, 1, 90).repeat(2, 1, 70, 1) + 0.1 * torch.randn(2, 1, 70, 90)).clamp(0, 1)
    r = restore(x, "dct", tile=32)
    assert r.tiled and r.sigma_estimated
    torch.testing.assert_close(r.sigma, estimate_sigma(x))
    assert restore(x, "n2n-unet-gray", 0.1).sigma is None  # blind: no level used


def test_cached_models_are_not_changed_by_callers():
    _, a = load("dct", 1)
    restore(torch.rand(1, 1, 16, 16), "dct", 0.1, device="cpu")
    assert load("dct", 1)[1] is a and not a.training


def test_devices():
    assert resolve_device("cpu").type == "cpu" and resolve_device(None).type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="not available"):
            resolve_device("cuda")
    with pytest.raises(InputError, match="device"):
        resolve_device("tpu")
    assert DEFAULT_TILE == 1024


@pytest.fixture(scope="module")
def real_gray():
    from denoise.evaluation.testsets import data_root
    from denoise.io import read_image

    root = data_root()
    if root is None or not (root / "BSD68").is_dir():
        pytest.skip("BSD68 not found: set DENOISE_DATA or place the images in ../shared/data")
    x, _ = read_image(sorted((root / "BSD68").glob("*.png"))[0])
    g = torch.Generator().manual_seed(0)
    return (x[..., :160, :] + 25 / 255 * torch.randn(x[..., :160, :].shape, generator=g)).clamp(0, 1)


@pytest.mark.parametrize("name,tile", [("dct+x8", 40), ("n2n-unet-gray+x8", 64)])
def test_self_ensemble_with_tiles_equals_untiled_on_a_real_image(real_gray, name, tile):
    tiled_run = restore(real_gray, name, 25 / 255, tile=tile)
    assert tiled_run.tiled and real_gray.shape[-1] > tile
    whole = restore(real_gray, name, 25 / 255, tile=None)
    torch.testing.assert_close(tiled_run.output, whole.output, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name,tile", [("dct+x8", "40"), ("n2n-unet-gray+x8", "64")])
def test_cli_self_ensemble_with_tiles(real_gray, tmp_path, capsys, name, tile):
    from denoise.cli import main
    from denoise.io import write_image

    write_image(tmp_path / "noisy.png", real_gray)
    code = main(["run", str(tmp_path / "noisy.png"), "-o", str(tmp_path / "out"), "--mkdir",
                 "-m", name, "--tile", tile, "--sigma", "25"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "noisy.png").is_file()


@pytest.mark.parametrize("name", ["n2n-unet-gray", "n2n-unet-gray+x8"])
def test_pooling_models_are_tiled_on_their_own_grid(name):
    """Tiles start at multiples of the model's alignment (32 for the U-Net's five poolings),
    and a self-ensemble tiles each transformed image: without that, tiles at other offsets
    pooled other pixel groups (differences up to 0.02 were measured)."""
    torch.manual_seed(0)
    x = torch.rand(1, 1, 60, 500)
    r = restore(x, name, tile=64)
    assert r.tiled
    torch.testing.assert_close(r.output, restore(x, name, tile=None).output, atol=1e-5, rtol=0)


def test_aligned_tile_plan():
    from denoise.tiling import axis_spans

    spans = axis_spans(500, 100, 10, 4, align=32)
    assert all(s.start % 32 == 0 for s in spans) and spans[-1].stop == 500
    total = torch.zeros(500, dtype=torch.float64)
    for s in spans:
        total[s.keep_start:s.keep_stop] += s.weight
    torch.testing.assert_close(total, torch.ones(500, dtype=torch.float64))
