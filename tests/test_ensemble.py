"""Geometric self-ensemble (``+x8``): exact symmetries, names, CLI and bench."""
from __future__ import annotations

import pytest
import torch

from denoise.errors import ModelError
from denoise.inference import (
    check_model,
    denoise,
    load,
    parse_model_name,
    supports_channels,
)
from denoise.models.base import Restorer
from denoise.models.ensemble import SelfEnsemble
from denoise.symmetries import inverse, transform


class Ramp(Restorer):
    """Not equivariant: adds a horizontal ramp, so each symmetry adds it along another axis."""

    uses_sigma = True

    def forward(self, x, sigma=None):
        return x + torch.linspace(0, 1, x.shape[-1])


@pytest.mark.parametrize("k", range(4))
@pytest.mark.parametrize("flip", [False, True])
def test_transforms_are_inverted_exactly(k, flip):
    x = torch.rand(2, 3, 5, 7)
    s = k + 4 * flip
    assert torch.equal(inverse(transform(x, s), s), x)


class Identity(Restorer):
    def forward(self, x, sigma=None):
        return x


def test_self_ensemble_of_identity_is_identity():
    x = torch.rand(1, 1, 6, 9)
    assert torch.allclose(SelfEnsemble(Identity())(x), x)


def test_self_ensemble_averages_over_the_eight_symmetries():
    x = torch.zeros(1, 1, 4, 4)
    y = SelfEnsemble(Ramp())(x)
    # the ramp lands once on each side of each axis: its mean over the 8 maps is 0.5
    assert torch.allclose(y, torch.full_like(y, 0.5))
    assert SelfEnsemble(Ramp()).uses_sigma


def test_equivariant_model_is_unchanged():
    """The sliding-window DCT treats the eight symmetries alike: +x8 gives the same output."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, 24, 40)
    single = denoise(x, "dct", 25 / 255)
    assert torch.allclose(denoise(x, "dct+x8", 25 / 255), single, atol=1e-5)


def test_names():
    assert parse_model_name("n2n-unet-gray+x8") == parse_model_name("n2n-unet-gray+x8")
    assert (parse_model_name("n2n-unet-gray+x8").base, parse_model_name("n2n-unet-gray+x8").ensemble) \
        == ("n2n-unet-gray", True)
    assert not parse_model_name("dct").ensemble and str(parse_model_name("dct+x8")) == "dct+x8"
    assert isinstance(load("dct+x8", 3)[1], SelfEnsemble)
    assert supports_channels("n2n-unet-gray+x8", 1) and not supports_channels("n2n-unet-gray+x8", 3)
    check_model("default+x8")
    with pytest.raises(ModelError, match="'nope'"):
        check_model("nope+x8")


def test_cli_run_with_ensemble(capsys, tmp_path):
    import numpy as np
    from PIL import Image

    from denoise.cli import main

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 28), dtype=np.uint8)).save(tmp_path / "a.png")
    code = main(["run", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--mkdir",
                 "-m", "default+x8"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert (tmp_path / "out" / "a.png").is_file()
    assert "n2n-unet-gray+x8" in captured.out + captured.err


def test_polyu_symmetries_benchmark_on_a_tiny_photo_set(benchmark_script, tmp_path, capsys):
    """benchmarks/polyu_symmetries.py: its eight-symmetry row is the ``+x8`` model's PSNR,
    its single row the plain model's; a missing PolyU is a clear error, exit 2."""
    import numpy as np
    from PIL import Image

    from denoise.inference import restore
    from denoise.metrics import psnr

    rng = np.random.default_rng(0)
    for sub in ("clean", "noisy"):
        (tmp_path / "PolyU" / sub).mkdir(parents=True)
    clean_img = (rng.random((32, 40, 3)) * 128 + 64).astype(np.uint8)
    noisy_img = np.clip(clean_img + rng.normal(0, 10, clean_img.shape), 0, 255).astype(np.uint8)
    Image.fromarray(clean_img).save(tmp_path / "PolyU" / "clean" / "Cam_1.png")
    Image.fromarray(noisy_img).save(tmp_path / "PolyU" / "noisy" / "Cam_1.png")
    module = benchmark_script("polyu_symmetries")
    out = tmp_path / "sym.md"
    assert module.main(["dct", "--data", str(tmp_path), "--out", str(out)]) == 0
    text = out.read_text()
    clean = torch.from_numpy(clean_img).permute(2, 0, 1)[None].float() / 255
    noisy = torch.from_numpy(noisy_img).permute(2, 0, 1)[None].float() / 255
    for row, name in (("single (x1)", "dct"), ("all eight (x8)", "dct+x8")):
        expected = float(psnr(restore(noisy, name, None, tile=None).output.clamp(0, 1), clean)[0])
        line = next(line for line in text.splitlines() if line.startswith(f"| {row}"))
        assert [float(c) for c in line.strip("|").split("|")[1:]] == pytest.approx([expected] * 2, abs=0.006)
    assert module.main(["dct", "--data", str(tmp_path / "nowhere")]) == 2
    assert "PolyU not found" in capsys.readouterr().err
