"""Super-resolution training: data=sr patches, config checks, a short run, export, use."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from denoise.cli.main import main
from denoise.errors import InputError
from denoise.io import write_image
from denoise.training import TrainConfig
from denoise.training.build import build_model
from denoise.training.sr_data import SRData, degrade_pair

pytestmark = pytest.mark.usefixtures("one_thread")


def _images(n=3, size=(60, 75), seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, size[0] // 5, size[1] // 5, generator=g)
    return list(F.interpolate(base, size=size, mode="bilinear", align_corners=False).clamp(0, 1))


def test_patches_are_aligned_pairs(generator):
    data = SRData(_images(), 3, patch=8)
    batch = data.sample(6, generator)
    assert batch.input.shape == (6, 3, 8, 8) and batch.target.shape == (6, 3, 24, 24)
    # each LR patch is the bicubic image of its HR patch: block means agree closely
    assert (F.avg_pool2d(batch.target, 3) - batch.input).abs().mean() < 0.02
    # and not of another patch of the batch
    assert (F.avg_pool2d(batch.target.roll(1, 0), 3) - batch.input).abs().mean() > 0.05


def test_degrade_pair_crops_to_the_scale_and_quantises():
    lr, hr = degrade_pair(_images(1, (61, 74))[0], 4)
    assert hr.shape[-2:] == (60, 72) and lr.shape[-2:] == (15, 18)
    assert torch.equal(lr, (lr * 255).round() / 255)  # 8-bit levels, as the test sets' inputs


def test_validation_pairs_and_holdout_sizes():
    data = SRData(_images(2), 2, patch=8, val_images=_images(1, (70, 70), seed=1), val_crop=41)
    (lr, hr), = data.validation()
    assert lr.shape == (1, 3, 20, 20) and hr.shape == (1, 3, 40, 40)


@pytest.mark.parametrize("kwargs, message", [
    ({"scale": 2}, "--scale"),  # scale without data=sr
    ({"data": "sr"}, "--scale"),  # data=sr without scale
    ({"data": "sr", "scale": 5}, "2, 3 or 4"),
    ({"data": "sr", "scale": 2, "target": "self"}, "does not apply"),
])
def test_config_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        TrainConfig(train_dir="x", **kwargs).validate()


def test_sr_uses_l1_and_needs_an_upscaler():
    cfg = TrainConfig(model="espcn", data="sr", scale=3, train_dir="x")
    assert cfg.loss_name() == "l1"
    assert build_model(cfg, 3).scale == 3
    with pytest.raises(InputError, match="upscaler"):
        build_model(TrainConfig(model="dncnn", data="sr", scale=2, train_dir="x"), 1)
    with pytest.raises(InputError, match="--data sr"):
        build_model(TrainConfig(model="espcn", train_dir="x"), 3)


def test_train_export_and_upscale(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "train"
    folder.mkdir()
    for i, img in enumerate(_images(4, (64, 64))):
        write_image(folder / f"{i}.png", img[None])
    monkeypatch.setenv("DENOISE_MODELS", str(tmp_path / "models"))
    run = tmp_path / "run"
    assert main(["train", "--data", "sr", "--scale", "2", "--model", "espcn", "--train-dir", str(folder),
                 "--val-count", "1", "--steps", "12", "--crop", "16", "--batch-size", "4",
                 "--lr", "0.003", "--out", str(run), "--checkpoint-every", "6", "--no-progress"]) == 0
    log = (run / "log.csv").read_text().splitlines()
    assert log[-1].split(",")[-1] != ""  # a validation PSNR was measured
    capsys.readouterr()
    assert main(["export-weights", str(run), "my-sr"]) == 0
    assert "denoise upscale IMAGE --scale 2" in capsys.readouterr().out
    card = json.loads((tmp_path / "models" / "my-sr.json").read_text())
    assert card["model_kwargs"]["scale"] == 2 and card["targets"].startswith("clean")
    assert "bicubic" in card["noise"] and card["validation"]["degradation"] == "bicubic x2 (8-bit)"
    out = tmp_path / "up"
    assert main(["upscale", str(folder / "0.png"), "--scale", "2", "-m", "my-sr", "-o", str(out), "--mkdir", "-q"]) == 0
    from denoise.io import read_image

    assert read_image(out / "0.png")[0].shape[-2:] == (128, 128)


def test_a_run_folder_at_another_scale_loads_as_that_upscaler(tmp_path):
    """A checkpoint of an upscaler trained at x4 (its entry's default is x2) is rebuilt at x4."""
    from denoise.models.user import model_from_path

    folder = tmp_path / "train"
    folder.mkdir()
    for i, img in enumerate(_images(3, (64, 64))):
        write_image(folder / f"{i}.png", img[None])
    run = tmp_path / "run"
    assert main(["train", "--data", "sr", "--scale", "4", "--model", "rdn", "--model-kwargs",
                 '{"blocks": 1, "layers": 2, "features": 8, "growth": 4}', "--train-dir", str(folder),
                 "--val-count", "1", "--steps", "2", "--crop", "8", "--batch-size", "2",
                 "--out", str(run), "--no-progress", "--no-plot"]) == 0
    _, model = model_from_path(run)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 8, 8)).shape[-2:] == (32, 32)
