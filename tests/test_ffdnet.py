"""FFDNet and DnCNN: the published architectures, the noise-level map (constant, per image,
per pixel), the strength factor, range warnings, bad maps, exact tiling, and training
with the noise level passed to the model."""
from __future__ import annotations

import pytest
import torch

from denoise.errors import InputError
from denoise.inference import restore
from denoise.models import create_model
from denoise.models.base import contract
from denoise.models.ffdnet import FFDNet, noise_map
from denoise.tiling import tiled


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_published_architectures():
    gray, color = FFDNet(1), FFDNet(3)
    convs = lambda m: [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]  # noqa: E731
    assert len(convs(gray)) == 15 and convs(gray)[0].in_channels == 5 and convs(gray)[0].out_channels == 64
    assert len(convs(color)) == 12 and convs(color)[0].in_channels == 15 and convs(color)[0].out_channels == 96
    assert convs(gray)[-1].out_channels == 4 and convs(color)[-1].out_channels == 12
    # published sizes: about 0.49 M (gray) and 0.85 M (color) parameters
    assert 0.45e6 < _params(gray) < 0.5e6 and 0.8e6 < _params(color) < 0.9e6
    d1, d3 = create_model("dncnn", pretrained=False), create_model("dncnn", pretrained=False, channels=3)
    assert len(convs(d1)) == 17 and len(convs(d3)) == 20 and not contract(d1).uses_sigma
    assert contract(gray).uses_sigma and contract(gray).receptive_field == 31


@pytest.mark.parametrize("shape", [(2, 1, 33, 40), (1, 3, 17, 9)])
def test_any_size_and_identity_at_start(shape):
    """The last conv starts at zero: an untrained network returns its input."""
    m = FFDNet(shape[1]).eval()
    x = torch.rand(shape)
    with torch.inference_mode():
        assert torch.equal(m(x, 0.1), x)


def test_blind_variant_of_the_real_photo_models(recwarn):
    """blind=True: no map input, sigma ignored (restore warns that it is), any size."""
    torch.manual_seed(0)
    m = create_model("real-color", pretrained=False).eval()
    convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
    assert len(convs) == 12 and convs[0].in_channels == 12 and convs[0].out_channels == 80
    gray = [c for c in create_model("real-gray", pretrained=False).modules() if isinstance(c, torch.nn.Conv2d)]
    assert len(gray) == 12 and gray[0].in_channels == 4 and gray[0].out_channels == 64
    assert not contract(m).uses_sigma and not contract(create_model("real-gray", pretrained=False)).uses_sigma
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = torch.rand(1, 3, 21, 18)
    with torch.inference_mode():
        y = m(x)
        assert y.shape == x.shape and not torch.equal(y, x)
        assert torch.equal(m(x, 0.3), y)  # the level is not an input
    out = restore(x, m, 0.1, tile=None)
    assert torch.equal(out.output, y.clamp(0, 1)) and out.sigma is None
    assert any("blind" in str(w.message) for w in recwarn.list)
    # cheaper than the published colour FFDNet: fewer input channels, 80 features against 96
    assert _params(m) < 0.72 * _params(FFDNet(3))


@pytest.fixture
def trained_like():
    """A small FFDNet with random (non-zero) weights, so that the map matters."""
    torch.manual_seed(0)
    m = FFDNet(1, features=8, layers=4).eval()
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return m


def test_noise_map_forms_agree(trained_like):
    x = torch.rand(2, 1, 20, 24)
    with torch.inference_mode():
        scalar = trained_like(x, 0.1)
        per_image = trained_like(x, torch.tensor([0.1, 0.1]))
        constant_map = trained_like(x, torch.full((2, 1, 20, 24), 0.1))
        other = trained_like(x, 0.3)
    torch.testing.assert_close(per_image, scalar)
    torch.testing.assert_close(constant_map, scalar)
    assert (other - scalar).abs().max() > 1e-3


def test_spatially_varying_map_through_the_api(trained_like):
    """A map with two levels: each half of the output follows its own level."""
    x = torch.rand(1, 1, 32, 64)
    left, right = torch.full((1, 1, 32, 64), 0.05), torch.full((1, 1, 32, 64), 0.4)
    split = torch.cat([left[..., :32], right[..., 32:]], dim=-1)
    y = restore(x, trained_like, split, tile=None).output
    y_left = restore(x, trained_like, 0.05, tile=None).output
    y_right = restore(x, trained_like, 0.4, tile=None).output
    rf = contract(trained_like).receptive_field
    torch.testing.assert_close(y[..., : 32 - rf], y_left[..., : 32 - rf])
    torch.testing.assert_close(y[..., 32 + rf:], y_right[..., 32 + rf:])
    # tiling crops the map with the image
    torch.testing.assert_close(restore(x, trained_like, split, tile=8).output, y, atol=1e-5, rtol=0)


@pytest.mark.parametrize("bad", [torch.rand(1, 1, 5, 5), torch.rand(2, 1, 32, 64), torch.rand(1, 2, 32, 64),
                                 torch.tensor([0.1, 0.2, 0.3])])
def test_a_map_of_the_wrong_shape_is_refused(trained_like, bad):
    with pytest.raises(InputError, match="sigma|noise map"):
        restore(torch.rand(1, 1, 32, 64), trained_like, bad, tile=None)
    with pytest.raises(InputError):
        noise_map(bad, torch.rand(1, 1, 32, 64))


def test_strength_scales_the_map(trained_like):
    x = torch.rand(1, 1, 24, 24)
    torch.testing.assert_close(restore(x, trained_like, 0.1, strength=2.0).output,
                               restore(x, trained_like, 0.2).output)
    for bad in (0, -1, 1e6, float("nan"), "x"):
        with pytest.raises(InputError, match="strength"):
            restore(x, trained_like, 0.1, strength=bad)
    with pytest.warns(UserWarning, match="strength is ignored"):
        restore(x, "n2n-unet-gray", strength=0.8)


def test_sigma_outside_the_training_range_warns(trained_like):
    with pytest.warns(UserWarning, match=r"trained for sigma in \[0, 75\]"):
        restore(torch.rand(1, 1, 16, 16), trained_like, 90 / 255)


def test_tiled_equals_untiled(trained_like):
    x = torch.rand(1, 1, 70, 90)
    with torch.inference_mode():
        whole = trained_like(x, 0.1)
    torch.testing.assert_close(tiled(trained_like, x, 0.1, tile=16), whole, atol=1e-5, rtol=0)


def test_trainer_gives_the_noise_level_to_the_model(tmp_path):
    from denoise.io import write_image
    from denoise.training import TrainConfig, Trainer

    (tmp_path / "imgs").mkdir()
    for i in range(4):
        write_image(tmp_path / "imgs" / f"{i}.png", torch.rand(1, 1, 32, 32))
    seen = []
    cfg = TrainConfig(model="ffdnet", model_kwargs={"features": 8, "layers": 3}, train_dir=str(tmp_path / "imgs"),
                      noise="gaussian:0-75", target="clean", val_count=1, crop=16, batch_size=4, steps=2,
                      out=str(tmp_path / "r"), progress=False, plot=False, checkpoint_every=2)
    trainer = Trainer(cfg)
    forward = trainer.model.forward

    def spy(x, sigma=None):
        seen.append(sigma)
        return forward(x, sigma)

    trainer.model.forward = spy
    result = trainer.fit()
    assert result.step == 2 and result.val_psnr is not None
    train_sigmas = [s for s in seen if s is not None and s.numel() == 4]
    assert train_sigmas and all(((s >= 0) & (s <= 75 / 255 + 1e-6)).all() for s in train_sigmas)
    assert any(s.numel() == 1 and abs(float(s) - 37.5 / 255) < 1e-6 for s in seen)  # validation level


def test_width_cost_benchmark_times_each_width_beside_ffdnet(benchmark_script, capsys):
    """benchmarks/width_cost.py: one row per width plus the FFDNet architecture at 1.00x."""
    module = benchmark_script("width_cost")
    assert module.main(["--widths", "8", "16", "--size", "32", "--repeats", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    assert [r.split("|")[1].strip() for r in rows] == [
        "FFDNet architecture", "blind body, 8 features", "blind body, 16 features"]
    assert rows[0].rstrip(" |").endswith("1.00x")
    assert all(float(r.split("|")[3].strip().rstrip("x")) > 0 for r in rows)
    with pytest.raises(SystemExit):
        module.main(["--widths", "0"])
