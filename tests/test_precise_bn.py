"""Precise batch-norm statistics (``denoise export-weights --precise-bn N``): the running
statistics become the exact mean of N training batches' statistics, nothing else changes,
and the card says so with the validation PSNR before and after."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from denoise.cli import main
from denoise.errors import InputError
from denoise.training.data import Batch
from denoise.training.precise_bn import precise_bn

pytestmark = pytest.mark.usefixtures("one_thread")


class _Batches:
    """Random 8 x 8 crops, one level of noise per crop, from the generator given."""

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        x = torch.rand(batch_size, 1, 8, 8, generator=generator)
        return Batch(x, x, sigma=torch.rand(batch_size, generator=generator))


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))


def test_statistics_are_the_mean_over_the_batches_and_the_weights_stay():
    net = _net()
    net[1].running_mean.fill_(5.0)  # what training's moving average left
    weights = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k and "num_batches" not in k}
    precise_bn(net, _Batches(), 3, batch_size=2, seed=7)
    g = torch.Generator().manual_seed(7)
    feats = [net[0](_Batches().sample(2, g).input).detach() for _ in range(3)]
    mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(net[1].running_mean, mean)
    torch.testing.assert_close(net[1].running_var, var)
    assert net[1].momentum == 0.1 and not net.training
    for k, v in weights.items():
        torch.testing.assert_close(net.state_dict()[k], v)


def test_a_model_without_batch_norm_is_refused():
    with pytest.raises(InputError, match="no batch-norm layer"):
        precise_bn(nn.Conv2d(1, 1, 3), _Batches(), 2)


def test_export_with_precise_statistics(tmp_path, synthetic_folder, capsys):
    synthetic_folder(tmp_path / "clean", 6, 48, seed=0)
    run_dir = tmp_path / "run"
    assert main(["train", "--data", "folder", "--train-dir", str(tmp_path / "clean"), "--gray", "--target",
                 "clean", "--noise", "gaussian:0-75", "--model", "ffdnet", "--model-kwargs",
                 '{"channels": 1, "features": 8, "layers": 4}', "--steps", "3", "--crop", "32",
                 "--batch-size", "4", "--val-count", "2", "--out", str(run_dir), "--no-progress",
                 "--no-plot"]) == 0
    capsys.readouterr()
    assert main(["export-weights", str(run_dir), "plain", "--out", str(tmp_path / "m")]) == 0
    assert main(["export-weights", str(run_dir), "precise", "--out", str(tmp_path / "m"), "--precise-bn", "5"]) == 0
    assert "batch-norm statistics over 5 batches: validation PSNR" in capsys.readouterr().out
    card = json.loads((tmp_path / "m" / "precise.json").read_text())
    bn = card["bn_statistics"]
    assert bn["batches"] == 5 and bn["batch_size"] == 4 and bn["method"].startswith("precise")
    assert isinstance(bn["validation_psnr_before"], float) and isinstance(bn["validation_psnr_after"], float)
    assert "bn_statistics" not in json.loads((tmp_path / "m" / "plain.json").read_text())
    plain, precise = load_file(tmp_path / "m" / "plain.safetensors"), load_file(tmp_path / "m" / "precise.safetensors")
    assert plain.keys() == precise.keys()
    running = [k for k in plain if "running_mean" in k]
    assert running and all(not torch.equal(plain[k], precise[k]) for k in running)
    assert all(torch.equal(plain[k], precise[k]) for k in plain if "running" not in k and "num_batches" not in k)
    assert main(["export-weights", str(run_dir), "bad", "--out", str(tmp_path / "m"), "--precise-bn", "-1"]) == 2
    assert "--precise-bn must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "m" / "bad.json").exists()
