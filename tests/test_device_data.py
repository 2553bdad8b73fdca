"""Batches drawn on the training device (device_data=True) against the CPU path.

Runs on the CPU: the device path is the same code on any device, so the crops, the
symmetries and the SR pairs can be compared with the CPU path's exactly here.
"""
from __future__ import annotations

import pytest
import torch

from denoise.errors import InputError
from denoise.noise import parse_noise
from denoise.training import TrainConfig, Trainer
from denoise.training.data import CleanFolderData, PairData
from denoise.training.device_data import DeviceBatches
from denoise.training.sr_data import SRData


def _images(sizes, channels=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(channels, h, w, generator=g) for h, w in sizes]


SIZES = [(40, 52), (52, 40), (33, 61), (48, 48)]  # mixed shapes, like BSDS's portrait/landscape


def test_folder_crops_equal_the_cpu_path_and_noise_has_its_level():
    images = _images(SIZES)
    data = CleanFolderData(images, parse_noise("gaussian:25"), target="clean", crop=16)
    dev = DeviceBatches(data, "cpu")
    for seed in range(3):  # a fresh pair of generators each time: the noise draws differ
        g_cpu, g_dev = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        ref = data.sample(64, g_cpu)
        got = dev.sample(64, g_dev)
        # same images, positions and symmetries: the clean targets are identical
        assert torch.equal(got.target, ref.target)
        resid = got.input - got.target
        assert abs(float(resid.std()) - 25 / 255) < 0.004
        assert torch.allclose(got.sigma, torch.full((64,), 25 / 255))
        assert not torch.equal(got.input, ref.input)  # the noise comes from the device generator


def test_folder_batches_are_a_function_of_the_generator_state():
    data = CleanFolderData(_images(SIZES), parse_noise("gaussian:0-75"), target="noisy", crop=16)
    dev = DeviceBatches(data, "cpu")
    g = torch.Generator().manual_seed(7)
    state = g.get_state()
    a = dev.sample(8, g)
    g.set_state(state)
    b = dev.sample(8, g)
    assert torch.equal(a.input, b.input) and torch.equal(a.target, b.target)
    # noisy target: a second, independent draw of the same level
    assert not torch.equal(a.input, a.target)


def test_sr_batches_equal_the_cpu_path_exactly():
    images = _images([(96, 120), (120, 96), (100, 100)])
    data = SRData(images, 2, patch=12)
    dev = DeviceBatches(data, "cpu")
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    for _ in range(3):
        ref, got = data.sample(16, g1), dev.sample(16, g2)
        assert torch.equal(got.input, ref.input) and torch.equal(got.target, ref.target)
        assert got.input.shape == (16, 3, 12, 12) and got.target.shape == (16, 3, 24, 24)


def test_unsupported_data_is_refused_clearly():
    pairs = [(torch.rand(1, 20, 20), torch.rand(1, 20, 20)) for _ in range(3)]
    with pytest.raises(InputError, match="device-data"):
        DeviceBatches(PairData(pairs, crop=8), "cpu")
    whole = CleanFolderData(_images([(16, 16)] * 2), parse_noise("gaussian:25"), target="clean", crop=None)
    with pytest.raises(InputError, match="--crop"):
        DeviceBatches(whole, "cpu")
    zoomed = CleanFolderData(_images([(16, 16)] * 2), parse_noise("gaussian:25"), target="clean", crop=8, zoom=2)
    with pytest.raises(InputError, match="--zoom"):
        DeviceBatches(zoomed, "cpu")


def test_trainer_runs_and_resumes_with_device_data(tmp_path):
    data = CleanFolderData(_images(SIZES, channels=1), parse_noise("gaussian:0-50"), target="clean", crop=16,
                           val_images=_images([(24, 24)], channels=1, seed=9))
    cfg = dict(model="ffdnet-gray", model_kwargs={"layers": 3, "features": 8}, train_dir=str(tmp_path),
               steps=6, batch_size=4, lr=1e-3, device="cpu", device_data=True, checkpoint_every=3,
               log_every=1, progress=False, plot=False, out=str(tmp_path / "a"))
    full = Trainer(TrainConfig(**cfg), data=data).fit()
    assert full.step == 6 and full.val_psnr is not None
    # the same run in two invocations (stopped at 3, resumed) ends with the same weights
    half = dict(cfg, out=str(tmp_path / "b"))
    Trainer(TrainConfig(**half, stop_at=3), data=data).fit()
    Trainer(TrainConfig(**half), data=data).fit(resume=True)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_validation_of_noise_map_models_clips_and_scores_on_the_cpu(tmp_path):
    """The Trainer's validation clips the output of a model that takes the noise level to
    [0, 1] and scores it against the (CPU) reference, as for blind models: a model that
    outputs 2 everywhere scores like an all-white image (the GPU run of session 12 crashed
    there: the output stayed on the device and was not clipped)."""
    class White(torch.nn.Module):
        uses_sigma = True

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, sigma):
            return torch.full_like(x, 2.0) + 0 * self.w

    val = _images([(24, 24)], channels=1, seed=9)
    data = CleanFolderData(_images(SIZES, channels=1), parse_noise("gaussian:25"), target="clean", crop=16,
                           val_images=val)
    cfg = TrainConfig(model="ffdnet-gray", train_dir=str(tmp_path), steps=1, batch_size=2, device="cpu",
                      progress=False, plot=False, out=str(tmp_path / "run"))
    trainer = Trainer(cfg, data=data, model=White())
    from denoise.metrics import psnr

    assert trainer.validate() == pytest.approx(float(psnr(torch.ones_like(val[0])[None], val[0][None],
                                                          data_range=1.0)))
