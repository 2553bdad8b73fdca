"""Blur estimation through a frozen SR network (denoise.blur), its re-degradation
(denoise.redegrade) and ``denoise estimate-blur``.

The estimator is tested with an "oracle" network that returns the true high-resolution
image: then the fit must recover the blur the test applied (the optimiser and the forward
model isolated from any network's errors)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from denoise.blur import (
    BlurEstimate,
    estimate_blur,
    fit_kernel,
    gaussian_kernel,
    redegrade,
    textured_window,
)
from denoise.cli import main
from denoise.degrade import bicubic_down, blur_decimate
from denoise.errors import InputError
from denoise.io import read_image
from denoise.metrics import psnr
from denoise.models.base import Restorer
from denoise.models.sr import Bicubic

pytestmark = pytest.mark.usefixtures("one_thread")

WIDTHS = (0.8, 1.2, 2.0)


class Oracle(Restorer):
    """A stand-in SR network that returns the true high-resolution image."""

    receptive_field = 0

    def __init__(self, hr: torch.Tensor, scale: int = 2) -> None:
        super().__init__()
        self.hr, self.scale = hr, scale

    def forward(self, x, sigma=None):
        return self.hr.clone().to(x.dtype)


def quantize(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0, 1) * 255) / 255


def textured(size: int = 96, seed: int = 0) -> torch.Tensor:
    """A synthetic colour image with texture at every scale: smoothed noise, edges, stripes."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, size, size, generator=g, dtype=torch.float64)
    fine = blur_decimate(noise, 2, 0.7).repeat_interleave(2, -1).repeat_interleave(2, -2)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    stripes = 0.5 + 0.5 * torch.sin(0.45 * xx + 0.2 * yy)
    square = ((yy - size / 2).abs() < size / 4) & ((xx - size / 3).abs() < size / 5)
    img = 0.35 * noise + 0.25 * fine[..., :size, :size] + 0.25 * stripes + 0.15 * square
    return img.clamp(0, 1).float()


@pytest.fixture(scope="module", autouse=True)
def optimizers_imported():
    """The first torch.optim optimizer imports torch._dynamo (seconds, once per process): done
    here once, so that no test's time includes it."""
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


@pytest.fixture(scope="module")
def set5_crop(data_root):
    path = data_root / "Set5" / "baby.png"
    if not path.is_file():
        pytest.skip("Set5 not found in the data folder")
    return read_image(path)[0][..., 160:288, 160:288]


def relative_error(est: BlurEstimate, width: float) -> float:
    return abs(est.width - width) / width


# ----------------------------------------------------------------------------- kernels

def test_gaussian_kernel_is_normalised_symmetric_and_matches_blur_decimate():
    for width in (0.5, 1.0, 2.3):
        k = gaussian_kernel(width)
        assert k.shape == (2 * math.ceil(3 * width) + 1,) * 2 and k.dtype == torch.float64
        assert float(k.sum()) == pytest.approx(1.0, abs=1e-12)
        assert torch.equal(k, k.flip(0)) and torch.equal(k, k.flip(1)) and torch.allclose(k, k.T)
        assert int(k.argmax()) == k.numel() // 2 and bool((k > 0).all())
    # it is the blur blur_decimate applies: width 1.3 has radius 4, so the valid convolution's
    # pixel 2j is the HR pixel 4 + 2j = 2 (2 + j), the LR pixel 2 + j (away from the borders)
    x = textured(48).double()
    k = gaussian_kernel(1.3)
    assert k.shape == (9, 9)
    via_conv = torch.nn.functional.conv2d(x.reshape(3, 1, 48, 48), k[None, None], stride=2)
    reference = blur_decimate(x, 2, 1.3)[0, :, 2:2 + via_conv.shape[-2], 2:2 + via_conv.shape[-1]]
    assert torch.allclose(via_conv[:, 0], reference, atol=1e-12)
    assert gaussian_kernel(1.0, 9).shape == (9, 9)
    for bad in (0, -1, float("nan"), "1"):
        with pytest.raises(InputError):
            gaussian_kernel(bad)
    with pytest.raises(InputError):
        gaussian_kernel(1.0, 8)  # even


# ----------------------------------------------------------------------------- the Gaussian width

@pytest.mark.parametrize("width", WIDTHS)
def test_oracle_recovers_the_gaussian_width_on_a_set5_crop(set5_crop, width):
    lr = quantize(blur_decimate(set5_crop, 2, width))  # an 8-bit photo
    est = estimate_blur(lr, Oracle(set5_crop), 2)
    assert relative_error(est, width) < 0.10, est.width
    assert est.kind == "gaussian" and est.width_lr == pytest.approx(est.width / 2)
    assert max(abs(v) for v in est.shift) < 0.1  # no sampling offset to absorb
    assert est.rms_levels < 0.5  # down to the 8-bit rounding (0.29 levels RMS)
    assert len(est.curve) == 30 and est.curve[-1] <= est.curve[0] + 1e-12


@pytest.mark.parametrize("width", WIDTHS)
def test_oracle_recovers_the_gaussian_width_on_a_textured_image(width):
    hr = textured(96, seed=1)
    lr = blur_decimate(hr, 2, width)
    est = estimate_blur(lr, Oracle(hr), 2)
    assert relative_error(est, width) < 0.10, est.width
    # without rounding the fit is much closer than the 10 % asked (truncation of the tails)
    assert relative_error(est, width) < 0.02, est.width


def test_the_estimate_follows_the_data_not_a_default():
    """Two blurs give two widths, each near its own truth; an HR estimate that is itself
    blurred (by 1.0) explains part of the blur, leaving the rest: sqrt(1.8^2 - 1.0^2)."""
    hr = textured(96, seed=2).double()
    narrow = fit_kernel(hr, blur_decimate(hr, 2, 0.9), 2)
    wide = fit_kernel(hr, blur_decimate(hr, 2, 1.8), 2)
    assert narrow.width == pytest.approx(0.9, rel=0.05) and wide.width == pytest.approx(1.8, rel=0.05)
    g = gaussian_kernel(1.0)
    soft = torch.nn.functional.conv2d(torch.nn.functional.pad(hr, (3, 3, 3, 3), mode="reflect")
                                      .reshape(3, 1, 102, 102), g[None, None]).reshape(1, 3, 96, 96)
    rest = fit_kernel(soft, blur_decimate(hr, 2, 1.8), 2)
    assert rest.width == pytest.approx(math.sqrt(1.8 ** 2 - 1.0), rel=0.1)


# ----------------------------------------------------------------------------- the free kernel

@pytest.mark.parametrize("width", (0.8, 2.0))
def test_free_kernel_is_a_blur_kernel_close_to_the_true_one(set5_crop, width):
    lr = quantize(blur_decimate(set5_crop, 2, width))
    est = estimate_blur(lr, Oracle(set5_crop), 2, kind="free")
    k = est.kernel
    assert k.shape == (13, 13) and bool((k >= 0).all())
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-9)
    truth = gaussian_kernel(width, 13)
    error = float((k - truth).abs().sum())
    assert error < 0.15, error
    other = gaussian_kernel(width * 1.5 if width < 1.5 else width / 1.5, 13)
    assert error < 0.5 * float((other - truth).abs().sum())
    assert est.moment_width == pytest.approx(width, rel=0.1)
    assert est.width is None and est.shift is None


def test_free_kernel_on_a_textured_image_and_a_shifted_blur():
    hr = textured(96, seed=3).double()
    truth = torch.zeros(9, 9, dtype=torch.float64)
    truth[3:6, 4:7] = gaussian_kernel(0.7, 3)  # a small blur displaced by one HR pixel
    pad = torch.nn.functional.pad(hr, (4, 4, 4, 4), mode="reflect")
    blurred = torch.nn.functional.conv2d(pad.reshape(3, 1, 104, 104), truth.flip(0, 1)[None, None])
    lr = blurred.reshape(1, 3, 96, 96)[..., ::2, ::2]
    est = fit_kernel(hr, lr, 2, kind="free", size=9)
    assert float((est.kernel - truth).abs().sum()) < 0.1
    gauss = fit_kernel(hr, lr, 2, size=9)  # the Gaussian's centre takes the shift
    assert gauss.shift[1] == pytest.approx(1.0, abs=0.15) and abs(gauss.shift[0]) < 0.15


# ----------------------------------------------------------------------------- input checks

def test_bad_inputs_are_one_line_input_errors():
    hr = textured(64)
    lr = blur_decimate(hr, 2, 1.0)
    oracle = Oracle(hr)
    with pytest.raises(InputError, match="too small"):
        estimate_blur(lr[..., :20, :20], Oracle(hr[..., :40, :40]), 2)
    with pytest.raises(InputError, match="upscales by 3"):
        estimate_blur(lr, Bicubic(scale=3), 2)
    bad = lr.clone()
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        estimate_blur(bad, oracle, 2)
    with pytest.raises(InputError, match="enlarged 2 times"):
        fit_kernel(hr[..., :60, :60], lr, 2)
    for kwargs in ({"kind": "motion"}, {"size": 8}, {"steps": 0}, {"lr": -1.0}, {"init": 0}):
        with pytest.raises(InputError):
            estimate_blur(lr, oracle, 2, **kwargs)
    with pytest.raises(InputError):
        estimate_blur(lr, oracle, 5)


def test_large_images_are_fitted_on_their_most_textured_window():
    flat = torch.full((1, 3, 160, 160), 0.5)
    hr = textured(192, seed=4)
    big = flat.clone()
    lr = blur_decimate(hr, 2, 1.4)
    big[..., 64:160, 64:160] = lr  # detail in the bottom-right corner only
    assert textured_window(big, 96) == (64, 64, 96, 96)
    assert textured_window(big, 400) == (0, 0, 160, 160)

    # the network runs on the window only: the oracle returns the HR of the corner
    est = estimate_blur(big, Oracle(hr), 2, crop=96)
    assert est.window == (64, 64, 96, 96)
    assert est.width == pytest.approx(1.4, rel=0.02)


# ----------------------------------------------------------------------------- re-degradation

def test_redegrade_brings_the_input_near_the_bicubic_condition(set5_crop):
    hr = set5_crop
    target = bicubic_down(hr, 2)
    inner = (..., slice(6, -6), slice(6, -6))
    for width in (0.8, 1.6):
        lr = quantize(blur_decimate(hr, 2, width))
        fixed = redegrade(lr, gaussian_kernel(width, 13), 2)
        assert fixed.shape == lr.shape and float(fixed.min()) >= 0 and float(fixed.max()) <= 1
        before = psnr(lr[inner], target[inner], data_range=1).item()
        after = psnr(fixed[inner], target[inner], data_range=1).item()
        assert after > before + 3, (width, before, after)
        # the estimate itself works as well (a BlurEstimate is accepted)
        est = fit_kernel(hr, lr, 2, kind="free")
        with_estimate = psnr(redegrade(lr, est, 2)[inner], target[inner], data_range=1).item()
        assert with_estimate > after - 1.0
    with pytest.raises(InputError):
        redegrade(lr, torch.ones(3, 3), 2)  # does not sum to 1
    with pytest.raises(InputError):
        redegrade(lr, gaussian_kernel(1.0), 2, eps=0)


# ----------------------------------------------------------------------------- the command line

def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def save_png(path, x: torch.Tensor):
    arr = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def tiny(tmp_path):
    return save_png(tmp_path / "tiny.png", blur_decimate(textured(96), 2, 1.2))


def test_cli_estimates_and_writes_the_kernel_and_json(capsys, tmp_path, tiny):
    code, out, err = run(capsys, "estimate-blur", tiny, "--model", "bicubic", "--scale", "2",
                         "--kind", "free", "--kernel-out", tmp_path / "k.png",
                         "--json", tmp_path / "k.json")
    assert code == 0, err
    assert "HR pixels" in out and "LR pixels" in out and "residual" in out
    data = json.loads((tmp_path / "k.json").read_text())
    assert data["kind"] == "free" and data["scale"] == 2 and data["model"] == "bicubic"
    kernel = np.array(data["kernel"])
    assert kernel.shape == (13, 13) and abs(kernel.sum() - 1) < 1e-6 and (kernel >= 0).all()
    img = Image.open(tmp_path / "k.png")
    assert img.size == (13, 13) and img.mode == "L" and int(np.asarray(img).max()) == 255
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.json", "k.png", "tiny.png"]
    # existing outputs need --force
    code, _, err = run(capsys, "estimate-blur", tiny, "-m", "bicubic", "--scale", "2", "--json",
                       tmp_path / "k.json")
    assert code == 2 and "exists" in err and len(err.strip().splitlines()) == 1


def test_cli_gaussian_prints_the_width(capsys, tiny):
    code, out, err = run(capsys, "estimate-blur", tiny, "-m", "bicubic", "--scale", "2", "--steps", "5",
                         "--crop", "0")
    assert code == 0, err
    assert "Gaussian blur width" in out and "HR pixels" in out and "48x48 window" in out


def assert_one_line_error(code, err, contains):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("denoise: error:") and contains in lines[0], err


def test_cli_error_paths(capsys, tmp_path, tiny):
    code, _, err = run(capsys, "estimate-blur", tmp_path / "missing.png", "-m", "bicubic", "--scale", "2")
    assert_one_line_error(code, err, "missing.png")
    small = save_png(tmp_path / "small.png", textured(16))
    code, _, err = run(capsys, "estimate-blur", small, "-m", "bicubic", "--scale", "2")
    assert_one_line_error(code, err, "too small")
    code, _, err = run(capsys, "estimate-blur", tiny, "--scale", "2", "--model", "nope")
    assert_one_line_error(code, err, "unknown model")
    code, _, err = run(capsys, "estimate-blur", tiny, "-m", "bicubic", "--scale", "2", "--crop", "-3")
    assert_one_line_error(code, err, "crop")
    code, _, err = run(capsys, "estimate-blur", tiny, "-m", "bicubic", "--scale", "5")
    assert code == 2 and "scale" in err
    code, _, err = run(capsys, "estimate-blur", tiny, "--scale", "2")  # --model is required
    assert code == 2 and "--model" in err
    code, _, err = run(capsys, "estimate-blur", tiny, "-m", "bicubic", "--scale", "2", "--json",
                       tmp_path / "no" / "x.json")
    assert_one_line_error(code, err, "does not exist")


def test_cli_refuses_a_model_of_another_scale(capsys, tmp_path, tiny):
    """A model named by a path (weights and card) that upscales by 3, asked for x2."""
    from denoise.models.registry import save_weights
    from denoise.models.sr import ESPCN

    net = ESPCN(channels=3, scale=3)
    save_weights(tmp_path / "espcn3.safetensors", net.state_dict())
    (tmp_path / "espcn3.json").write_text(json.dumps(
        {"architecture": "espcn", "channels": 3, "model_kwargs": {"scale": 3}}))
    code, _, err = run(capsys, "estimate-blur", tiny, "--scale", "2", "--model",
                       tmp_path / "espcn3.safetensors")
    assert_one_line_error(code, err, "upscales by 3")
    # the same file at its own scale runs (any SR model by path)
    code, out, err = run(capsys, "estimate-blur", tiny, "--scale", "3", "--model",
                         tmp_path / "espcn3.safetensors", "--kind", "free", "--size", "7", "--steps", "5")
    assert code == 0, err
    assert "free 7x7 kernel at x3" in out
