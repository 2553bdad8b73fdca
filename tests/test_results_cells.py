"""The results report's cells (``denoise report --cache``): kept as they are measured,
reused when nothing they depend on changed, continued when unfinished, measured again when
the model changes; a report from the cached cells only; cost ratios against the reference
timed in the run that measured each image."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from pathlib import Path

import pytest

from denoise.cli.main import main
from denoise.evaluation import results_cells
from denoise.evaluation.bench import ImageScore
from denoise.evaluation.results import Measured, Report, run_report

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(tiny_sets, cache: Path, models=("dct",), **kw) -> Report:
    kw = {"train_steps": 0, **kw}
    return run_report([str(p) for p in tiny_sets], [25], list(models), progress=False, sr_sets=[],
                      cache=str(cache), **kw)


def _count_runs(monkeypatch) -> list[str]:
    """The models restored from now on, one entry per image."""
    calls = []
    real = results_cells.timed_restore

    def counting(model, noisy, level):
        calls.append(str(model))
        return real(model, noisy, level)

    monkeypatch.setattr(results_cells, "timed_restore", counting)
    return calls


def test_cells_are_kept_and_reused_with_the_same_figures(tiny_sets, tmp_path, monkeypatch):
    cache = tmp_path / "cells"
    first = _run(tiny_sets, cache, models=("dct", "n2n-unet-gray"))
    assert first.reused == 0 and not first.missing
    files = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*.json"))
    assert files == ["_references/tinycolor.json", "_references/tinygray.json", "dct/tinycolor-sigma25-seed0.json",
                     "dct/tinygray-sigma25-seed0.json", "n2n-unet-gray/tinygray-sigma25-seed0.json"]
    saved = json.loads((cache / "dct/tinygray-sigma25-seed0.json").read_text())
    assert saved["done"] and saved["key"]["fingerprint"].startswith("source:") and len(saved["runs"]) == 1
    calls = _count_runs(monkeypatch)
    again = _run(tiny_sets, cache, models=("dct", "n2n-unet-gray"))
    assert calls == [] and again.reused == 3  # nothing measured, not even the references
    key = lambda r: (r.set, r.model)  # noqa: E731
    assert {key(r): r.psnr for r in again.results} == {key(r): r.psnr for r in first.results}
    assert again.ratio("dct", 1) == pytest.approx(first.ratio("dct", 1))
    assert len(again.references) == 4  # the cached timings of the references, for the cost table


def test_an_unfinished_cell_continues_where_it_stopped(tiny_sets, tmp_path, monkeypatch):
    cache = tmp_path / "cells"
    full = _run(tiny_sets, cache)
    path = cache / "dct/tinygray-sigma25-seed0.json"
    saved = json.loads(path.read_text())
    saved["done"] = False
    saved["result"]["per_image"] = saved["result"]["per_image"][:1]  # stopped after one image
    path.write_text(json.dumps(saved))
    calls = _count_runs(monkeypatch)
    resumed = _run(tiny_sets, cache)
    # the references of the set are timed again (2 images x 2 architectures), then one image of dct
    assert calls.count("dct") == 1 and len(calls) == 5 and resumed.reused == 1
    cell = next(r for r in resumed.results if (r.set, r.model) == ("tinygray", "dct"))
    before = next(r for r in full.results if (r.set, r.model) == ("tinygray", "dct"))
    assert [s.name for s in cell.images] == [s.name for s in before.images]
    assert [s.psnr for s in cell.images] == pytest.approx([s.psnr for s in before.images], abs=1e-9)
    assert json.loads(path.read_text())["done"] and len(json.loads(path.read_text())["runs"]) == 2


def test_a_changed_model_is_measured_again(tiny_sets, tmp_path, monkeypatch):
    cache = tmp_path / "cells"
    _run(tiny_sets, cache)
    real = results_cells.fingerprint
    monkeypatch.setattr(results_cells, "fingerprint", lambda m: real(m) + "-changed")
    calls = _count_runs(monkeypatch)
    report = _run(tiny_sets, cache)
    assert report.reused == 0 and calls.count("dct") == 4


def test_fingerprints_follow_the_weights_and_the_code():
    fp = results_cells.fingerprint
    assert fp("n2n-unet-gray").startswith("weights:") and fp("n2n-unet-gray+x8") == fp("n2n-unet-gray") + "+x8"
    assert fp("n2n-unet-gray") != fp("n2n-unet-color")
    assert fp("dct").startswith("source:") and fp("dct") != fp("dct-learned")
    if importlib.util.find_spec("bm3d") is not None:  # the optional package's version counts
        assert fp("bm3d").endswith("+bm3d==" + importlib.metadata.version("bm3d"))


def test_report_from_cached_cells_only_lists_what_is_missing(tiny_sets, tmp_path, capsys):
    out, cache = tmp_path / "report", tmp_path / "cells"
    _run(tiny_sets, cache, train_steps=1, train_batch=1, train_crop=16)  # dct only
    args = ["report", "--sets", ",".join(str(p) for p in tiny_sets), "--sigma", "25", "--out", str(out),
            "--models", "dct,n2n-unet-gray", "--sr-sets", "none", "-q", "--cache", str(cache), "--cached-only"]
    assert main(args) == 0
    assert "2 reused, 1 not measured yet" in capsys.readouterr().out
    text = (out / "RESULTS.md").read_text()
    assert "## Not measured yet\n\n- n2n-unet-gray on tinygray at σ=25" in text
    assert "2 of the 2 cells below were measured by earlier runs" in text
    assert "## Training cost per step" in text  # kept from the run that measured it
    assert not (cache / "n2n-unet-gray").exists()  # nothing measured
    data = json.loads((out / "results.json").read_text())
    assert data["cells_missing"] == ["n2n-unet-gray on tinygray at σ=25"] and data["cells_reused"] == 2
    assert main([*args[:-3], "--no-cache", "--cached-only"]) == 2
    assert "--no-cache cannot go with" in capsys.readouterr().err


def test_cost_ratio_uses_the_reference_timed_with_each_image():
    def cell(s, cpu, ceiling):
        return Measured(s, 25.0, "m", [ImageScore("a", 30.0, 0.9, cpu, 1_000_000)], ceiling_seconds=ceiling)

    # two runs on a loaded and an idle machine: 6 s against 3 s, then 2 s against 1 s
    report = Report([cell("A", 6.0, 3.0), cell("B", 2.0, 1.0)], [], [], {"A": 1, "B": 1}, [25.0], 0, 1)
    assert report.ratio("m", 1) == pytest.approx(2.0)
    assert report.cost("m", 1) == pytest.approx(4.0)
