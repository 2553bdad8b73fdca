"""The results report (``denoise report``): its files and rows on tiny real image sets, the
benchmark's protocol kept, the cost references, the ranking ``default`` follows (and its
fallbacks), the super-resolution part, and the DnCNN recipe's configs."""
from __future__ import annotations

import json
import math
import os
import shlex
from pathlib import Path

import pytest
import torch

from denoise import inference
from denoise.cli.main import build_parser, main
from denoise.cli.report import command_line
from denoise.errors import InputError
from denoise.evaluation.bench import NOISY, ImageScore, bench
from denoise.evaluation.results import REFERENCES, Measured, Report, reference_label, run_report, shipped_models
from denoise.evaluation.results_report import published_mean, to_markdown, write_report
from denoise.evaluation.results_sr import shipped_sr_models
from denoise.evaluation.sr_report import SRBenchReport, SRImageScore, SRResult
from denoise.io import write_image
from denoise.models.ffdnet import DnCNN
from denoise.models.registry import ModelEntry, get_entry

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _report(tiny_sets, out: Path, *extra: str) -> int:
    gray, color = tiny_sets
    return main(["report", "--sets", f"{gray},{color}", "--sigma", "25", "--out", str(out),
                 "--train-steps", "1", "--train-batch", "1", "--train-crop", "16", "-q",
                 "--sr-sets", "none", *extra])


def test_quick_report_writes_results_md_json_and_figure(tiny_sets, tmp_path, capsys):
    out = tmp_path / "report"
    assert _report(tiny_sets, out, "--quick", "--models", "dct,n2n-unet-gray") == 0
    assert "best for gray images" in capsys.readouterr().out
    text = (out / "RESULTS.md").read_text()
    data = json.loads((out / "results.json").read_text())
    assert (out / "quality_speed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert data["sets"] == {"tinygray": 1, "tinycolor": 3}
    assert data["machine"]["cpu_count"] == os.cpu_count() and data["machine"]["torch"] == torch.__version__
    assert data["command"].startswith("denoise report --out ") and "--quick" in data["command"]
    assert f"`{data['command']}`" in text and data["date"] in text
    rows = {(r["set"], r["model"]): r for r in data["results"]}
    # every model on the sets of its channel count, the noisy input everywhere
    assert set(rows) == {("tinygray", NOISY), ("tinygray", "dct"), ("tinygray", "n2n-unet-gray"),
                         ("tinycolor", NOISY), ("tinycolor", "dct")}
    for key in [("tinygray", "dct"), ("tinygray", "n2n-unet-gray"), ("tinycolor", "dct")]:
        r = rows[key]
        assert r["n_images"] == 2 and r["psnr"] > rows[(key[0], NOISY)]["psnr"] + 5
        assert r["cpu_s_per_mp"] > 0 and r["wall_seconds"] > 0
    # the published architectures, timed (not scored) on both kinds of images
    refs = {(r["model"], r["channels"]): r for r in data["references"]}
    assert set(refs) == {(reference_label(n), c) for n in REFERENCES for c in (1, 3)}
    assert all(r["reference"] and r["cpu_s_per_mp"] > 0 and r["psnr"] is None and r["n_images"] == 2
               for r in refs.values())
    assert len(data["training_cost"]) == 4 and all(t["cpu_s_per_mp"] > 0 for t in data["training_cost"])
    for label in REFERENCES:
        assert any(line.startswith(f"| {reference_label(label)} (random weights) ") for line in text.splitlines())
    # the README's model table: PSNR at sigma 25 per set, cost ratio per channel count
    table = (out / "models_table.md").read_text().splitlines()
    assert table[0] == "| model | tinygray | tinycolor | cost × FFDNet arch. (gray / color) |"

    def ratio(key):
        return f"{rows[key]['cpu_seconds'] / rows[key]['ceiling_cpu_seconds']:.2f}"

    unet = ("tinygray", "n2n-unet-gray")
    assert table[2:] == [
        f"| `dct` | {rows[('tinygray', 'dct')]['psnr']:.2f} | {rows[('tinycolor', 'dct')]['psnr']:.2f} "
        f"| {ratio(('tinygray', 'dct'))} / {ratio(('tinycolor', 'dct'))} |",
        f"| `n2n-unet-gray` | {rows[unet]['psnr']:.2f} | – | {ratio(unet)} / – |"]
    ranking = data["ranking"]
    assert [row["model"] for row in ranking["1"]] == sorted(
        ["dct", "n2n-unet-gray"], key=lambda m: -rows[("tinygray", m)]["psnr"])
    assert [row["model"] for row in ranking["3"]] == ["dct"]
    for header in ("## Gray images: tinygray", "## Color images: tinycolor", "## Cost", "## Quality versus speed"):
        assert header in text
    psnr_table = text.split("PSNR (dB)", 1)[1].split("SSIM", 1)[0]
    assert "| tinygray σ=25 |" in psnr_table and f"| {NOISY} (images: 2) " in psnr_table
    assert "| n2n-unet-gray " in psnr_table and f"{rows[('tinygray', 'dct')]['psnr']:.2f}" in psnr_table
    assert "## Super-resolution" not in text and "sr" not in data and "sr_note" not in data  # --sr-sets none
    assert "--sr-sets none" in data["command"]


def test_report_keeps_the_benchmarks_protocol(tiny_sets, tmp_path):
    """Same noise, same scores as ``bench`` (the report is built from its functions)."""
    out = tmp_path / "report"
    assert _report(tiny_sets, out, "--models", "dct", "--train-steps", "0") == 0
    data = json.loads((out / "results.json").read_text())
    assert data["training_cost"] == [] and "## Training cost" not in (out / "RESULTS.md").read_text()
    ours = {(r["set"], r["model"]): r["psnr"] for r in data["results"]}
    theirs = bench([str(p) for p in tiny_sets], [25], ["dct"], progress=False)
    for r in theirs.results:
        assert math.isclose(ours[(r.set, r.model)], r.psnr, rel_tol=0, abs_tol=1e-9)


def test_update_default_writes_the_ranking_default_follows(tiny_sets, tmp_path, monkeypatch):
    ranking = tmp_path / "ranking.json"
    monkeypatch.setattr(inference, "RANKING_FILE", ranking)
    assert _report(tiny_sets, tmp_path / "r", "--quick", "--update-default", "--models", "dct") == 2
    assert not ranking.exists()  # refused before any work
    models = "dct,n2n-unet-gray,dct+x8"
    assert _report(tiny_sets, tmp_path / "r", "--models", models, "--update-default", "--train-steps", "0") == 0
    saved = json.loads(ranking.read_text())
    gray = {row["model"]: row for row in saved["ranking"]["1"]}
    assert not gray["dct+x8"]["eligible"] and gray["dct+x8"]["why_not"] == "not a single pass"
    best = max(["dct", "n2n-unet-gray"], key=lambda m: gray[m]["psnr"])
    assert saved["default"]["1"][0] == best == inference.default_model_name(1)
    assert saved["default"]["3"] == ["dct"] and inference.default_model_name(3) == "dct"


# ----------------------------------------------------------------------------- super-resolution

def _one_image_set(folder: Path) -> Path:
    """A denoising set of one small gray image (no data needed)."""
    folder.mkdir()
    write_image(folder / "a.png", torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0)))
    return folder


def _sr_section(text: str) -> str:
    assert text.count("## Super-resolution") == 1
    return text.split("## Super-resolution", 1)[1]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _row(section: str, name: str, scale: str) -> str:
    """The first table row of a set and scale (the PSNR table's)."""
    return next(line for line in section.splitlines() if line.startswith("|") and _cells(line)[:2] == [name, scale])


def test_shipped_sr_models_are_those_with_weights(monkeypatch):
    names = shipped_sr_models()
    assert {"espcn-x2", "espcn-x3", "espcn-x4"} <= set(names)
    assert all(get_entry(n).has_weights() and get_entry(n).scale > 1 for n in names)
    assert not set(names) & set(shipped_models())  # the denoising part has no SR model
    assert ("rdn-x2" in names) == get_entry("rdn-x2").has_weights()
    monkeypatch.setattr(ModelEntry, "has_weights", lambda self: self.pretrained)  # every weight file there
    assert {"rdn-x2", "rdn-x4"} <= set(shipped_sr_models())
    assert not {"ffdnet-gray", "bicubic", "espcn", "rdn"} & set(shipped_sr_models())
    assert not {"rdn-x2", "espcn-x2"} & set(shipped_models())


def test_report_has_the_super_resolution_rows(data_root, tmp_path):
    if not (data_root / "SR_LR" / "Set5" / "LR" / "x2").is_dir():
        pytest.skip("SR_LR/Set5 not found in the data folder")
    gray = _one_image_set(tmp_path / "gray")
    report = run_report([str(gray)], [25], ["dct"], max_images=1, train_steps=0, progress=False,
                        sr_sets=["Set5"], sr_scales=[2])
    write_report(report, tmp_path / "r")
    text = (tmp_path / "r" / "RESULTS.md").read_text()
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    # after the denoising part, which is unchanged
    assert text.index("## Super-resolution") > text.index("## Protocol") > text.index("## Gray images: gray")
    assert [r["model"] for r in data["results"]] == [NOISY, "dct"] and "sr_note" not in data
    sr = {(r["set"], r["scale"], r["model"]): r for r in data["sr"]["results"]}
    label = "Set5 (first 1)"
    assert set(sr) == {(label, 2, m) for m in ["bicubic", *shipped_sr_models()]}
    espcn, bicubic = sr[(label, 2, "espcn-x2")], sr[(label, 2, "bicubic")]
    assert espcn["n_images"] == bicubic["n_images"] == 1
    assert [s["name"] for s in espcn["per_image"]] == ["img_001_SRF_2"]
    assert 30 < bicubic["psnr"] < espcn["psnr"] < 45 and 0.8 < bicubic["ssim"] < espcn["ssim"] < 1
    assert espcn["cpu_sec_per_mp"] > 0 and espcn["output_megapixels"] == pytest.approx(512 * 512 / 1e6)
    assert not sr[(label, 2, "espcn-x4")]["ran"]  # another scale: in the notes
    assert "espcn-x4: upscales by x4 only; x2 skipped" in data["sr"]["notes"]
    section = _sr_section(text)
    header = next(line for line in section.splitlines() if line.startswith("| set "))
    assert "| bicubic |" in header and "| espcn-x2 |" in header
    header, row = _cells(header), _cells(_row(section, label, "x2"))
    assert row[header.index("espcn-x2")] == f"{espcn['psnr']:.2f}"
    assert row[header.index("bicubic")] == f"{bicubic['psnr']:.2f}" and row[header.index("espcn-x4")] == "–"
    assert "CPU s / MP" in section and "Super-resolution protocol:" in section and "Note:" not in section


def test_report_sr_tables_carry_the_published_figures(tmp_path):
    def result(model: str, psnr: float) -> SRResult:
        return SRResult("Set5", 2, model, [SRImageScore("baby", psnr, 0.95, 0.1, 0.1, 1_000_000)])

    refs = [_measured("g", reference_label(r), math.nan, 3.0, reference=True) for r in REFERENCES]
    sr = SRBenchReport([result("bicubic", 33.7), result("espcn-x2", 36.1)])
    report = Report([_measured("g", "dct", 28.0, 0.5)], refs, [], {"g": 1}, [25.0], 0, 1, sr=sr)
    section = _sr_section(to_markdown(report, "f.png"))
    assert "Bicubic †" in section and "RDN †" in section
    header, row = _cells(next(line for line in section.splitlines() if line.startswith("| set "))), \
        _cells(_row(section, "Set5", "x2"))
    assert row[header.index("bicubic")] == "33.70" and row[header.index("espcn-x2")] == "36.10"
    assert row[header.index("Bicubic †")] == "33.66" and row[header.index("RDN †")] == "38.24"
    assert report.to_dict()["sr"]["published_psnr"]["Set5 / x2"]["Bicubic"] == 33.66


def test_report_without_sr_sets_or_with_a_missing_one(tmp_path, capsys):
    gray = _one_image_set(tmp_path / "gray")
    report = run_report([str(gray)], [25], ["dct"], train_steps=0, progress=False, sr_sets=[])
    assert report.sr is None and report.sr_note == ""
    assert "Super-resolution" not in to_markdown(report, "f.png") and "sr" not in report.to_dict()
    # a set that is not there: the report is still written, with a note
    out = tmp_path / "r"
    assert main(["report", "--sets", str(gray), "--sigma", "25", "--models", "dct", "--train-steps", "0",
                 "--sr-sets", "NoSuchSet", "--sr-scales", "2", "--out", str(out), "-q"]) == 0
    assert "super-resolution: SR test sets not found" in capsys.readouterr().out
    section = _sr_section((out / "RESULTS.md").read_text())
    assert "Note: SR test sets not found, not run: " in section and "'NoSuchSet'" in section
    assert "| set " not in section  # no table
    data = json.loads((out / "results.json").read_text())
    assert "sr" not in data and "NoSuchSet" in data["sr_note"] and data["results"][1]["model"] == "dct"
    # a bad scale is refused before any work
    with pytest.raises(InputError, match="scale"):
        run_report([str(gray)], [25], ["dct"], train_steps=0, progress=False, sr_scales=[5])
    assert main(["report", "--sets", str(gray), "--sr-scales", "2,5", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("options,recorded", [
    ([], ""),
    (["--sr-sets", "Set5,Set14", "--sr-scales", "2,3,4"], ""),  # the defaults
    (["--sr-sets", "Set5", "--sr-scales", "2,4"], "--sr-sets Set5 --sr-scales 2,4"),
    (["--sr-sets", "none"], "--sr-sets none"),
    (["--sr-scales", "3", "--quick"], "--sr-scales 3 --quick"),
])
def test_command_line_records_the_sr_options(options, recorded):
    parser = build_parser()
    args = parser.parse_args(["report", "--out", "o", *options])
    command = command_line(args)
    assert command == f"denoise report --out o {recorded}".rstrip()
    again = parser.parse_args(shlex.split(command)[1:])
    assert (again.sr_sets, again.sr_scales, again.quick) == (args.sr_sets, args.sr_scales, args.quick)
    assert args.sr_sets == ([] if "none" in options else ["Set5"] if "Set5" in options else ["Set5", "Set14"])


def _write(path: Path, default: dict) -> Path:
    path.write_text(json.dumps({"default": default}))
    return path


def test_default_follows_the_ranking_and_falls_back(tmp_path, monkeypatch):
    monkeypatch.setattr(inference, "RANKING_FILE", _write(tmp_path / "r.json", {
        "1": ["ffdnet-gray", "n2n-unet-color", "n2n-unet-gray", "dct"], "3": ["no-such-model", "dct"]}))
    monkeypatch.setattr(ModelEntry, "has_weights", lambda self: self.pretrained and self.name != "ffdnet-gray")
    # ffdnet-gray: no weights; n2n-unet-color: not for gray images
    assert inference.default_model_name(1) == "n2n-unet-gray"
    assert inference.default_model_name(3) == "dct"
    x = torch.rand(1, 3, 24, 24)
    assert inference.restore(x, "default", 0.1).model == "dct"
    # no ranked model has weights: the next ranked one that runs (a classical method)
    monkeypatch.setattr(ModelEntry, "has_weights", lambda self: False)
    assert inference.default_model_name(1) == "dct"


@pytest.mark.parametrize("content", [None, "not json", '{"default": {"1": "dct"}}', '{"default": []}',
                                     '{"default": {"1": ["ffdnet-gray"]}}'])
def test_default_without_a_usable_ranking_keeps_the_previous_rule(content, tmp_path, monkeypatch):
    path = tmp_path / "ranking.json"
    if content is not None:
        path.write_text(content)
    monkeypatch.setattr(inference, "RANKING_FILE", path)
    monkeypatch.setattr(ModelEntry, "has_weights", lambda self: self.name == "n2n-unet-gray")
    assert inference.default_model_name(1) == "n2n-unet-gray"  # DEFAULT_LEARNED
    assert inference.default_model_name(3) == "dct"  # FALLBACK


def _measured(name: str, model: str, psnr: float, cpu: float, *, channels: int = 1,
              reference: bool = False, ceiling: float = 3.0) -> Measured:
    """One image of 1 MP; ``ceiling``: the FFDNet architecture's CPU seconds for it, timed
    in the same run."""
    score = ImageScore("a", psnr, 0.5, cpu, 1_000_000)
    return Measured(name, 25.0, model, [score], channels=channels, reference=reference,
                    ceiling_seconds=0.0 if reference else ceiling)


def test_ranking_orders_by_psnr_and_says_who_may_be_default(tmp_path):
    sets = ("Set12", "BSD68")
    results = [_measured(s, m, psnr + (s == "BSD68"), cpu) for s in sets
               for m, psnr, cpu in [("dct", 28.0, 0.5), ("n2n-unet-gray", 29.0, 9.0), ("bm3d", 28.5, 90.0),
                                    ("dct+x8", 28.2, 4.0), ("nobody", 30.0, 1.0)]]
    refs = [_measured(s, reference_label(r), math.nan, 3.0, reference=True) for s in sets for r in REFERENCES]
    report = Report(results, refs, [], {s: 1 for s in sets}, [25.0], 0, 1)
    rows = report.ranking()[1]
    assert [r["model"] for r in rows] == ["nobody", "n2n-unet-gray", "bm3d", "dct+x8", "dct"]
    by = {r["model"]: r for r in rows}
    assert by["n2n-unet-gray"]["psnr"] == pytest.approx(29.5) and by["n2n-unet-gray"]["vs_ffdnet"] == pytest.approx(3.0)
    assert by["nobody"]["why_not"] == "not shipped with the package"
    assert by["bm3d"]["why_not"] == "needs the optional package bm3d"
    assert by["dct+x8"]["why_not"] == "not a single pass"
    shipped = get_entry("n2n-unet-gray").has_weights()
    assert report.default_order()[1] == (["n2n-unet-gray"] if shipped else []) + ["dct"]
    # the full sets: the published figures beside ours, the published architectures in the figure
    write_report(report, tmp_path)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "FFDNet †" in text and "DnCNN †" in text
    assert "30.43" in text and "29.23" in text  # FFDNet on Set12, DnCNN on BSD68, sigma 25
    assert published_mean(report, "FFDNet", 1) == pytest.approx((30.43 + 29.19) / 2)
    assert (tmp_path / "quality_speed.png").stat().st_size > 10_000


@pytest.mark.parametrize("name,channels,layers", [("dncnn-gray", 1, 17), ("dncnn-color", 3, 20)])
def test_dncnn_recipe_configs_build_the_published_architecture(name, channels, layers):
    from denoise.training.build import build_model
    from denoise.training.config import TrainConfig

    cfg = TrainConfig.from_file(CONFIGS / f"{name}.json")
    cfg.validate()
    assert cfg.target == "clean" and cfg.noise == "gaussian:0-55" and cfg.batch_size == 128
    assert 40 <= cfg.crop <= 50 and cfg.val_count > 0 and cfg.loss_name() == "l2"
    assert cfg.train_dir.endswith("Train400" if channels == 1 else "CBSD432") and cfg.gray == (channels == 1)
    assert cfg.steps == 50 * 3000  # the paper's 50 epochs of 3000 batches of 128 patches
    model = build_model(cfg, channels)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert isinstance(model, DnCNN) and model.channels == channels and not model.uses_sigma
    assert len(convs) == layers and len(norms) == layers - 2
    assert convs[0].in_channels == channels and convs[-1].out_channels == channels
    assert all(c.out_channels == 64 for c in convs[:-1])
    x = torch.rand(2, channels, 20, 20)
    model.eval()
    with torch.no_grad():
        torch.nn.init.normal_(convs[-1].weight, std=0.01)
        torch.testing.assert_close(model(x), x + model.body(x))  # residual: input + predicted noise
    assert f"denoise train --config configs/{name}.json" in json.loads((CONFIGS / f"{name}.json").read_text())["_comment"]


def test_readme_model_table_is_the_reports():
    """The README's model table is benchmarks/results/models_table.md, written by the same
    `denoise report` run as RESULTS.md (so it cannot drift from the measured cells)."""
    root = Path(__file__).resolve().parents[1]
    table = (root / "benchmarks" / "results" / "models_table.md").read_text()
    assert table.startswith("| model | Set12 | BSD68 | CBSD68 | Kodak24 |")
    assert table in (root / "README.md").read_text()
    data = json.loads((root / "benchmarks" / "results" / "results.json").read_text())
    psnr = {(r["set"], r["model"]): r["psnr"] for r in data["results"] if r["sigma"] == 25}
    for line in table.splitlines()[2:]:
        model, *cells = [c.strip(" `") for c in line.strip("|").split("|")]
        for name, cell in zip(["Set12", "BSD68", "CBSD68", "Kodak24"], cells):
            expected = psnr.get((name, model))
            assert cell == ("–" if expected is None else f"{expected:.2f}"), (model, name)
