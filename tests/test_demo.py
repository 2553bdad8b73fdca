"""`denoise demo` and the report helpers it draws with (tables, comparison sheets)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from denoise.cli import main
from denoise.evaluation.demo import DEMO_IMAGES, load_demo_image, run_demo
from denoise.evaluation.report import (
    Panel,
    comparison_sheet,
    detail_crop,
    markdown_table,
)
from denoise.utils import write_json

# ----------------------------------------------------------------------------- the demo

def test_demo_command_writes_sheets_table_and_results(capsys, tmp_path):
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--models", "dct", "--size", "64",
                 "--images", "astronaut,camera", "-q"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    for name in ("astronaut", "camera"):
        sheet = Image.open(out / f"{name}.png")
        assert sheet.format == "PNG" and sheet.size[0] > sheet.size[1]
        noisy = Image.open(out / "noisy" / f"{name}.png")
        assert max(noisy.size) == 64
    assert "| noisy input " in stdout and "| dct " in stdout
    results = json.loads((out / "results.json").read_text())
    by_model = {r["model"]: r for r in results["results"]}
    assert set(by_model) == {"noisy", "dct"}
    noisy = {s["name"]: s["psnr"] for s in by_model["noisy"]["per_image"]}
    for score in by_model["dct"]["per_image"]:
        assert score["psnr"] > noisy[score["name"]] + 3
        assert 0 < score["ssim"] <= 1 and score["seconds"] > 0
    assert "| dct " in (out / "results.md").read_text()
    assert [p.name for p in out.rglob(".*")] == []  # no temporary files left


def test_demo_noisy_psnr_matches_sigma(tmp_path):
    """The noise is not clipped, so the input PSNR is 20 log10(255 / sigma) give or take."""
    demo = run_demo(tmp_path, models=["dct"], sigma=25, images=["camera"], size=96, progress=False)
    noisy = demo.score("noisy", "camera")
    assert abs(noisy.psnr - 20 * np.log10(255 / 25)) < 0.3


def test_demo_is_reproducible_and_seeded(tmp_path):
    kwargs = dict(models=["dct"], images=["coffee"], size=48, progress=False)
    a = run_demo(tmp_path / "a", seed=3, **kwargs).score("dct", "coffee").psnr
    b = run_demo(tmp_path / "b", seed=3, **kwargs).score("dct", "coffee").psnr
    c = run_demo(tmp_path / "c", seed=4, **kwargs).score("dct", "coffee").psnr
    assert a == b and a != c


def test_demo_runs_again_over_its_own_files(tmp_path, capsys):
    argv = ["demo", "--out", str(tmp_path), "--models", "dct", "--size", "32", "--images", "camera", "-q"]
    assert main(argv) == 0
    assert main(argv) == 0


@pytest.mark.parametrize("argv, message", [
    (["--images", "lena"], "unknown demo image 'lena'"),
    (["--models", "no-such-model"], "unknown model 'no-such-model'"),
])
def test_demo_errors_are_one_line(capsys, tmp_path, argv, message):
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--size", "32", *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().splitlines() == [f"denoise: error: {err.split('error: ', 1)[1].strip()}"]
    assert message in err
    assert not out.exists()  # checked before anything is written


def test_demo_sigma_out_of_range(capsys):
    assert main(["demo", "--sigma", "0"]) == 2
    assert "sigma must be in (0, 255]" in capsys.readouterr().err


def test_load_demo_image_scales_and_quantises():
    for name in DEMO_IMAGES:
        x = load_demo_image(name, 80)
        assert x.dtype == torch.float32 and max(x.shape[-2:]) == 80
        assert x.shape[1] == (1 if name == "camera" else 3)
        assert torch.equal(x, (x * 255).round() / 255)
    assert load_demo_image("camera", None).shape == (1, 1, 512, 512)


# ----------------------------------------------------------------------------- report helpers

def test_markdown_table_aligns_and_escapes():
    table = markdown_table(["model", "PSNR"], [["dct", "30.12"], ["a|b", "9.5"]])
    lines = table.splitlines()
    assert len({len(line) for line in lines}) == 1  # columns line up
    assert lines[1].endswith(":|")  # numbers right-aligned
    assert "a\\|b" in table and table.count("|") == 3 * 4 + 1  # 3 separators per row + escape
    with pytest.raises(ValueError):
        markdown_table(["a", "b"], [["only one"]])


def test_detail_crop_finds_the_textured_region():
    x = torch.full((1, 3, 100, 120), 0.5)
    x[..., 60:90, 10:40] = torch.rand(1, 3, 30, 30, generator=torch.Generator().manual_seed(0))
    top, left, side = detail_crop(x, 30)
    assert side == 30
    assert abs(top - 60) <= 4 and abs(left - 10) <= 4
    assert detail_crop(x[..., :20, :20], 30)[2] == 20  # capped by the image


def test_comparison_sheet_writes_png(tmp_path):
    x = torch.rand(1, 3, 50, 70, generator=torch.Generator().manual_seed(0))
    gray = x.mean(dim=1, keepdim=True)
    panels = [Panel("a", x, "30 dB"), Panel("b", gray)]
    zoomed = comparison_sheet(tmp_path / "zoomed.png", panels, title="t", crop=(10, 10, 20))
    flat = comparison_sheet(tmp_path / "flat.png", panels)
    wide = comparison_sheet(tmp_path / "wide.png", panels * 2)
    with Image.open(zoomed) as z, Image.open(flat) as f, Image.open(wide) as w:
        assert z.format == f.format == "PNG"
        assert z.size[1] > f.size[1]  # the zoomed row
        assert w.size[0] > f.size[0]  # a column per panel
    with pytest.raises(ValueError):
        comparison_sheet(tmp_path / "empty.png", [])


def test_write_json_is_strict(tmp_path):
    path = write_json(tmp_path / "r.json", {"psnr": float("inf"), "x": [1.5, float("nan")]})
    assert json.loads(path.read_text()) == {"psnr": None, "x": [1.5, None]}
