"""`denoise bench --task sr`: the SR literature's protocol on its own inputs, the tables beside
the published figures, skipped scales and missing weights, the JSON file and the errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from denoise.cli import main
from denoise.degrade import bicubic_down, sr_psnr, sr_ssim
from denoise.errors import InputError, ModelError
from denoise.evaluation.sr_bench import SRModel, resolve_sr_model, sr_bench, sr_upscale
from denoise.evaluation.sr_report import PUBLISHED
from denoise.io import read_image
from denoise.models.registry import save_weights
from denoise.models.sr import ESPCN
from denoise.upscale import upscale

pytestmark = pytest.mark.usefixtures("one_thread")


def _save(path, x: torch.Tensor) -> None:
    a = (x[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    Image.fromarray(a[..., 0] if a.shape[2] == 1 else a).save(path)


def make_sr_set(folder, scales=(2, 3), n: int = 2, size: int = 48, gray_last: bool = False,
                frame: bool = False):
    """An SR set as SR_LR lays it out: HR/xS/img_00i_SRF_S_HR.png and the LR made from it
    by MATLAB's bicubic (uint8 path), smooth colour images (the last gray if asked; with a
    white one-pixel frame if asked, which no upscaler restores)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    for s in scales:
        (folder / "HR" / f"x{s}").mkdir(parents=True)
        (folder / "LR" / f"x{s}").mkdir(parents=True)
        for i in range(n):
            channels = 1 if gray_last and i == n - 1 else 3
            planes = [0.2 + 0.6 * (0.5 + 0.5 * np.sin(2 * np.pi * (xx * (1 + i + c) + yy * (2 - c))))
                      for c in range(channels)]
            hr = torch.from_numpy(np.stack(planes)).float()[None]
            hr = torch.round(hr * 255) / 255
            if frame:
                hr[..., [0, -1], :], hr[..., :, [0, -1]] = 1.0, 1.0
            _save(folder / "HR" / f"x{s}" / f"img_{i + 1:03d}_SRF_{s}_HR.png", hr)
            _save(folder / "LR" / f"x{s}" / f"img_{i + 1:03d}_SRF_{s}_LR.png", bicubic_down(hr, s, uint8=True))
    return folder


def make_x2_model(folder, channels: int = 3):
    """A user model trained for x2 only (random ESPCN weights with its card)."""
    torch.manual_seed(0)
    net = ESPCN(channels, 2, features=(4, 4))
    path = folder / f"tiny-espcn-c{channels}.safetensors"
    save_weights(path, net.state_dict())
    card = {"architecture": "espcn", "channels": channels, "model_kwargs": {"scale": 2, "features": [4, 4]}}
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


# ----------------------------------------------------------------------------- real data

def test_bicubic_reproduces_the_literature_on_sr_lr_set5(data_root):
    if not (data_root / "SR_LR" / "Set5" / "LR" / "x4").is_dir():
        pytest.skip("SR_LR/Set5 not found in the data folder")
    report = sr_bench(["Set5"], [2, 3, 4], ["bicubic"], progress=False)
    found = {(r.set, r.scale): r for r in report.results}
    for s in (2, 3, 4):
        r = found[("Set5", s)]
        assert len(r.images) == 5
        assert abs(r.psnr - PUBLISHED[("Set5", s)]["Bicubic"]) < 0.05, (s, r.psnr)
        assert 0.8 < r.ssim < 0.95
        assert r.seconds > 0 and r.megapixels > 0.5  # output pixels: HR-sized
    assert report.notes == []


# ----------------------------------------------------------------------------- tables

def test_tables_show_ours_beside_the_published_figures(tmp_path):
    folder = make_sr_set(tmp_path / "Set5", scales=(2, 3))
    report = sr_bench([str(folder)], [2, 3], ["bicubic"], progress=False)
    text = report.to_markdown()
    header = next(line for line in text.splitlines() if line.startswith("| set"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "set", "scale", "n", "bicubic", "Bicubic †", "SRCNN †", "ESPCN †", "RDN †"]
    row2 = next(line for line in text.splitlines() if line.startswith("| Set5 ") and "x2" in line)
    cells = [c.strip() for c in row2.strip("|").split("|")]
    ours = next(r for r in report.results if r.scale == 2)
    assert cells == ["Set5", "x2", "2", f"{ours.psnr:.2f}", "33.66", "36.66", "–", "38.24"]
    row3 = next(line for line in text.splitlines() if line.startswith("| Set5 ") and "x3" in line)
    assert [c.strip() for c in row3.strip("|").split("|")][4:] == ["30.39", "32.75", "33.13", "34.71"]
    assert "33.13" in text and "34.71" in text and "SSIM on Y" in text and "CPU s / MP" in text
    data = report.to_dict()
    assert data["task"] == "sr" and data["published_psnr"]["Set5 / x3"]["ESPCN"] == 33.13
    assert "ESPCN" not in data["published_psnr"]["Set5 / x2"]
    # a subset, or a set with another name, gets no published figures
    partial = sr_bench([str(folder)], [2], ["bicubic"], max_images=1, progress=False)
    assert partial.results[0].set == "Set5 (first 1)" and "33.66" not in partial.to_markdown()


def test_scores_follow_the_papers_protocol(tmp_path):
    folder = make_sr_set(tmp_path / "mine", scales=(3,), frame=True)
    report = sr_bench([str(folder)], [3], ["bicubic"], progress=False)
    for score, i in zip(report.results[0].images, (1, 2), strict=True):
        lr = read_image(folder / f"LR/x3/img_00{i}_SRF_3_LR.png")[0]
        hr = read_image(folder / f"HR/x3/img_00{i}_SRF_3_HR.png")[0]
        sr = upscale(lr, 3, "bicubic")
        assert score.name == f"img_00{i}_SRF_3"
        assert score.psnr == pytest.approx(float(sr_psnr(sr, hr, 3)[0]), abs=1e-9)
        assert score.ssim == pytest.approx(float(sr_ssim(sr, hr, 3)[0]), abs=1e-9)
        assert score.psnr > float(sr_psnr(sr, hr, 0)[0]) + 1  # the border shave matters here
        assert score.pixels == 48 * 48


def test_published_table_holds_the_papers_figures():
    assert [PUBLISHED[("Set5", s)]["RDN"] for s in (2, 3, 4)] == [38.24, 34.71, 32.47]
    assert [PUBLISHED[("Set14", s)]["SRCNN"] for s in (2, 3, 4)] == [32.42, 29.28, 27.49]
    assert [PUBLISHED[("Set14", s)]["Bicubic"] for s in (2, 3, 4)] == [30.24, 27.55, 26.00]
    assert "ESPCN" not in PUBLISHED[("Set14", 2)] and PUBLISHED[("Set14", 4)]["ESPCN"] == 27.73


# ----------------------------------------------------------------------------- models

def test_a_model_lacking_a_scale_is_skipped_with_a_note(tmp_path):
    folder = make_sr_set(tmp_path / "mine", scales=(2, 3))
    model = str(make_x2_model(tmp_path))
    report = sr_bench([str(folder)], [2, 3], ["bicubic", model], progress=False)
    found = {(r.scale, r.model): r for r in report.results}
    assert len(found[(2, model)].images) == 2 and found[(3, model)].images == []
    assert len(found[(3, "bicubic")].images) == 2
    assert report.notes == [f"{model}: upscales by x2 only; x3 skipped"]
    text = report.to_markdown()
    row3 = next(line for line in text.splitlines() if line.startswith("| mine ") and "x3" in line)
    assert [c.strip() for c in row3.strip("|").split("|")][3:] == [f"{found[(3, 'bicubic')].psnr:.2f}", "–"]
    assert "x3 skipped" in text
    with pytest.raises(InputError, match="no model asked for upscales by x3"):
        sr_bench([str(folder)], [3], [model], progress=False)


def test_missing_weights_are_reported(tmp_path):
    assert "architecture only: train it" in resolve_sr_model("espcn").missing
    folder = make_sr_set(tmp_path / "mine", scales=(2,), n=1)
    report = sr_bench([str(folder)], [2], ["bicubic", "espcn"], progress=False)
    assert [r.model for r in report.results if r.images] == ["bicubic"]
    assert report.notes and report.notes[0].startswith("espcn: not run: architecture only")
    with pytest.raises(ModelError, match="no model can run here: espcn"):
        sr_bench([str(folder)], [2], ["espcn"], progress=False)
    with pytest.raises(InputError, match="does not upscale"):
        resolve_sr_model("dct")


def test_channel_adaptation_keeps_the_chroma_bicubic(tmp_path):
    folder = make_sr_set(tmp_path / "mine", scales=(2,), n=2, gray_last=True)
    rgb = read_image(folder / "LR/x2/img_001_SRF_2_LR.png")[0]
    # bicubic used as a luma model: the luma upscaled, the chroma bicubic = plain bicubic
    as_luma = SRModel("bicubic", "bicubic", (2, 3, 4), channels=1)
    assert (sr_upscale(rgb, 2, as_luma) - upscale(rgb, 2, "bicubic")).abs().max() < 1e-5
    # a colour model on a gray image, a luma model on a colour one: the input's channels
    c3, c1 = resolve_sr_model(str(make_x2_model(tmp_path, 3))), resolve_sr_model(str(make_x2_model(tmp_path, 1)))
    assert (c3.channels, c1.channels, c3.scales) == (3, 1, (2,))
    assert sr_upscale(rgb[:, :1], 2, c3).shape == (1, 1, 48, 48)
    assert sr_upscale(rgb, 2, c1).shape == (1, 3, 48, 48)
    report = sr_bench([str(folder)], [2], [c1.label, c3.label], progress=False)
    assert all(len(r.images) == 2 for r in report.results)


# ----------------------------------------------------------------------------- command

def test_command_prints_the_table_and_writes_json(tmp_path, capsys):
    folder = make_sr_set(tmp_path / "Set14", scales=(2, 3))
    model = str(make_x2_model(tmp_path))
    out = tmp_path / "sr.json"
    code = main(["bench", "--task", "sr", "--data", str(folder), "--scale", "2,3",
                 "--model", f"bicubic,{model}", "-q", "--json", str(out), "--md", str(tmp_path / "sr.md")])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert "| Set14 " in stdout and "30.24" in stdout and "x3 skipped" in stdout
    assert (tmp_path / "sr.md").read_text().strip() == stdout.strip()
    data = json.loads(out.read_text())
    assert data["task"] == "sr" and "rgb2ycbcr" in data["protocol"]
    runs = {(r["scale"], r["model"]): r for r in data["results"]}
    assert runs[(3, model)]["ran"] is False and runs[(3, model)]["psnr"] is None
    bic = runs[(2, "bicubic")]
    assert bic["n_images"] == 2 and bic["psnr"] == pytest.approx(np.mean([s["psnr"] for s in bic["per_image"]]))
    assert bic["cpu_sec_per_mp"] >= 0 and bic["sec_per_mp"] > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic: no temporaries


@pytest.mark.parametrize("argv, message", [
    (["--data", "{folder}", "--scale", "2"], "--scale only applies to --task sr"),
    (["--task", "sr", "--data", "NoSuchSet"], "unknown SR test set 'NoSuchSet'"),
    (["--task", "sr", "--data", "{folder}", "--scale", "5"], "scale 5 is not supported"),
    (["--task", "sr", "--data", "{folder}", "--scale", "2,x"], "the scale must be an integer"),
    (["--task", "sr", "--data", "{folder}", "--sigma", "25"], "--sigma only applies to --task denoise"),
    (["--task", "sr", "--data", "{folder}", "--noise", "gaussian:5", "--gray"], "--noise, --gray only apply"),
    (["--task", "sr", "--data", "{folder}", "--model", "dct"], "'dct' does not upscale"),
    (["--task", "sr", "--data", "{folder}", "--scale", "4"], "has no x4 images"),
])
def test_command_errors_are_one_line(tmp_path, capsys, argv, message, monkeypatch):
    monkeypatch.setenv("DENOISE_DATA", str(tmp_path))
    (tmp_path / "SR_LR").mkdir()
    folder = make_sr_set(tmp_path / "SR_LR" / "Set5", scales=(2,), n=1)
    code = main(["bench", "-q", *(a.format(folder=folder) for a in argv)])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("denoise: error: ")


def test_denoise_task_keeps_its_defaults(tmp_path, capsys):
    folder = tmp_path / "clean"
    folder.mkdir()
    Image.fromarray((np.random.default_rng(0).random((24, 24)) * 255).astype(np.uint8)).save(folder / "a.png")
    out = tmp_path / "d.json"
    assert main(["bench", "--data", str(folder), "--model", "dct", "-q", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["seed"] == 0 and sorted({r["sigma"] for r in data["results"]}) == [15.0, 25.0, 50.0]
    capsys.readouterr()
