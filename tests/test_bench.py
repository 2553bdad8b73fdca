"""`denoise bench`: the protocol (noise, seeds, clipping), tables, files and errors."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

from denoise import inference
from denoise.cli import main
from denoise.errors import InputError
from denoise.evaluation import bench as bench_module
from denoise.evaluation.bench import (
    NOISY,
    PUBLISHED,
    add_noise,
    bench,
    supports_channels,
)
from denoise.evaluation.testsets import data_root
from denoise.models.base import Restorer


def make_set(folder, n: int = 3, size: int = 40, gray: bool = False):
    """A folder of ``n`` small smooth images (8-bit PNG)."""
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        planes = [0.15 + 0.7 * (0.5 + 0.5 * np.sin(2 * np.pi * (xx * (1 + i + c) + yy * (2 - c))))
                  for c in range(1 if gray else 3)]
        img = (np.stack(planes, -1) * 255).round().astype(np.uint8)
        Image.fromarray(img[..., 0] if gray else img).save(folder / f"img{i}.png")
    return folder


def by_key(report):
    return {(r.set, r.sigma, r.model): r for r in report.results}


# ----------------------------------------------------------------------------- protocol

def test_add_noise_is_seeded_unclipped_and_shared_across_sigmas():
    x = torch.full((1, 3, 32, 32), 0.95)
    a, level = add_noise(x, 25, seed=0, index=2)
    torch.testing.assert_close(level, torch.tensor([25 / 255]))  # the level, 0-1 scale
    assert torch.equal(a, add_noise(x, 25, seed=0, index=2)[0])
    assert not torch.equal(a, add_noise(x, 25, seed=0, index=3)[0])
    assert a.max() > 1  # not clipped
    doubled = add_noise(x, 50, seed=0, index=2)[0]
    torch.testing.assert_close(doubled - x, 2 * (a - x))  # the same normal draw, scaled
    assert abs(float((a - x).std()) - 25 / 255) < 0.1 * 25 / 255


def test_bench_scores_every_model_with_the_same_noise(tmp_path):
    folder = make_set(tmp_path / "mine")
    report = bench([str(folder)], [15, 50], ["dct", "tv"], progress=False)
    found = by_key(report)
    assert set(found) == {("mine", s, m) for s in (15, 50) for m in (NOISY, "dct", "tv")}
    for sigma in (15, 50):
        noisy = found[("mine", sigma, NOISY)]
        assert abs(noisy.psnr - 20 * math.log10(255 / sigma)) < 0.5  # unclipped noise
        for model in ("dct", "tv"):
            result = found[("mine", sigma, model)]
            assert len(result.images) == 3 and result.psnr > noisy.psnr + 2
            assert 0 < result.ssim <= 1 and result.sec_per_mp > 0
    assert found[("mine", 15, "dct")].psnr > found[("mine", 50, "dct")].psnr
    again = by_key(bench([str(folder)], [15], ["dct"], progress=False))
    assert again[("mine", 15, "dct")].psnr == found[("mine", 15, "dct")].psnr


def test_outputs_are_clipped_but_not_quantised(tmp_path, monkeypatch):
    """A model returning its input scores as the clipped noisy image, not a rounded one."""
    folder = make_set(tmp_path / "mine", n=1)

    class Identity(Restorer):
        def forward(self, x, sigma=None):
            return x

    monkeypatch.setattr(inference, "_cached", lambda name, device: Identity())
    found = by_key(bench([str(folder)], [50], ["dct"], progress=False))
    from denoise.evaluation.testsets import load_set
    from denoise.metrics import psnr

    clean = load_set(folder)[0][1]
    noisy = add_noise(clean, 50, 0, 0)[0]
    assert found[("mine", 50, "dct")].psnr == pytest.approx(float(psnr(noisy.clamp(0, 1), clean)[0]))
    assert found[("mine", 50, "dct")].psnr > found[("mine", 50, NOISY)].psnr


# ----------------------------------------------------------------------------- tables

def test_published_figures_beside_ours_for_a_known_set_name(tmp_path):
    folder = make_set(tmp_path / "Set12", n=2, gray=True)
    text = bench([str(folder)], [15], ["dct"], progress=False).to_markdown()
    assert "BM3D †" in text and "32.37" in text and "33.36" in text
    subset = bench([str(folder)], [15], ["dct"], max_images=1, progress=False).to_markdown()
    assert "Set12 (first 1)" in subset and "32.37" not in subset


def test_gray_conversion_is_labelled(tmp_path):
    folder = make_set(tmp_path / "Kodak24", n=1)
    report = bench([str(folder)], [25], ["dct"], gray=True, progress=False)
    assert {r.set for r in report.results} == {"Kodak24 (gray)"}
    assert "34.28" not in report.to_markdown()  # not the published set any more


def test_models_that_do_not_take_the_channels_are_left_out(tmp_path, monkeypatch):
    folder = make_set(tmp_path / "color", n=1)
    monkeypatch.setattr(bench_module, "supports_channels", lambda name, channels: name != "tv")
    report = bench([str(folder)], [25], ["dct", "tv"], progress=False)
    assert {r.model for r in report.results} == {NOISY, "dct"}
    assert "tv" not in report.to_markdown().split("Speed")[0].splitlines()[2]


def test_supports_channels_follows_the_registry():
    assert supports_channels("dct", 1) and supports_channels("dct", 3)
    assert supports_channels("default", 1) and supports_channels("default", 3)
    assert supports_channels("n2n-unet-gray", 1) and not supports_channels("n2n-unet-gray", 3)
    assert supports_channels("n2n-unet-color", 3) and not supports_channels("n2n-unet-color", 1)


def test_published_figures_match_the_data_readme():
    root = data_root()
    readme = root / "README.md" if root else None
    if readme is None or not readme.is_file():
        pytest.skip("no data README (set DENOISE_DATA or provide ../shared/data)")
    text = readme.read_text()
    methods = ("BM3D", "DnCNN", "FFDNet", "DRUNet", "SwinIR")
    rows = re.findall(r"^\| (\w+) / 15, 25, 50 \|(.*)\|\s*$", text, flags=re.M)
    assert len(rows) == 4
    for name, cells in rows:
        for method, cell in zip(methods, cells.split("|")):
            for sigma, value in zip((15, 25, 50), cell.split(",")):
                assert PUBLISHED[(name, sigma)][method] == float(value), (name, method, sigma)
    n2n = re.search(r"clean targets\s+([\d.]+) /.*noisy targets\s+([\d.]+) /.*BM3D\s+([\d.]+) /",
                    text, flags=re.S)
    assert [PUBLISHED[("Kodak24_full", 25)][k] for k in
            ("N2N clean targets", "N2N noisy targets", "BM3D")] == [float(v) for v in n2n.groups()]


# ----------------------------------------------------------------------------- command

def test_bench_command_prints_and_writes(tmp_path, capsys):
    folder = make_set(tmp_path / "mine", n=2)
    code = main(["bench", "--data", str(folder), "--sigma", "25", "--model", "dct", "-q",
                 "--json", str(tmp_path / "r.json"), "--md", str(tmp_path / "r.md")])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert "| mine " in stdout and "s / MP" in stdout
    assert (tmp_path / "r.md").read_text().strip() == stdout.strip()
    data = json.loads((tmp_path / "r.json").read_text())
    assert "not clipped" in data["protocol"].lower() and data["seed"] == 0
    dct = next(r for r in data["results"] if r["model"] == "dct")
    assert dct["n_images"] == 2 and len(dct["per_image"]) == 2
    assert dct["psnr"] == pytest.approx(np.mean([s["psnr"] for s in dct["per_image"]]))


@pytest.mark.parametrize("argv, message", [
    (["--data", "NoSuchSet", "--model", "dct"], "NoSuchSet"),
    (["--data", "{folder}", "--model", "no-such-model"], "unknown model 'no-such-model'"),
    (["--data", "{folder}", "--model", "dct", "--json", "{tmp}/missing/r.json"], "does not exist"),
])
def test_bench_errors_are_one_line(tmp_path, capsys, argv, message):
    folder = make_set(tmp_path / "mine", n=1)
    code = main(["bench", "-q", *(a.format(folder=folder, tmp=tmp_path) for a in argv)])
    err = capsys.readouterr().err
    assert code == 2 and message in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("denoise: error: ")


def test_bench_sigma_must_be_in_range(capsys, tmp_path):
    assert main(["bench", "--data", str(tmp_path), "--sigma", "15,0"]) == 2
    assert "sigma must be in (0, 255]" in capsys.readouterr().err


def test_bench_on_real_set12():
    root = data_root()
    if root is None or not (root / "Set12").is_dir():
        pytest.skip("Set12 not found (set DENOISE_DATA or provide ../shared/data)")
    found = by_key(bench(["Set12"], [25], ["dct"], max_images=2, progress=False))
    noisy, dct = found[("Set12 (first 2)", 25, NOISY)], found[("Set12 (first 2)", 25, "dct")]
    assert abs(noisy.psnr - 20 * math.log10(255 / 25)) < 0.1
    assert dct.psnr > noisy.psnr + 6


def test_any_noise_spec_can_be_benchmarked_without_published_figures(tmp_path):
    folder = make_set(tmp_path / "Set12", n=2, gray=True)
    spec = "gaussian:25+saltpepper:0.05"
    report = bench([str(folder)], [spec], ["dct"], progress=False)
    found = by_key(report)
    noisy = found[("Set12", spec, NOISY)]
    assert noisy.psnr < 20 and found[("Set12", spec, "dct")].psnr > noisy.psnr
    text = report.to_markdown()
    assert spec in text and "32.37" not in text  # the published AWGN table is not beside it
    with pytest.raises(InputError, match="empty part"):
        bench([str(folder)], ["gaussian:25+"], ["dct"], progress=False)
