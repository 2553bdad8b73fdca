"""benchmarks/perceptual_loss.py end to end on a tiny synthetic data folder: the feature
losses train through the Trainer's loss contract, the pixel row trains before any
classifier exists (the denoiser that benchmarks/pretraining.py starts from), and the
report is written once a classifier is there."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from denoise.models.classifier import DSCClassifier, save_classifier
from denoise.training.cifar import HISTORY
from denoise.training.perceptual import FeatureLoss

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bench(benchmark_script):
    return benchmark_script("perceptual_loss")




@pytest.fixture
def data(tmp_path, monkeypatch, synthetic_folder):
    root = tmp_path / "data"
    synthetic_folder(root / "CBSD432", 6, 72, 0)
    synthetic_folder(root / "CBSD68", 2, 48, 1)
    synthetic_folder(root / "Kodak24", 2, 48, 2)
    monkeypatch.setenv("DENOISE_DATA", str(root))
    return root


def test_feature_loss_takes_the_trainers_keywords():
    torch.manual_seed(0)
    loss = FeatureLoss(DSCClassifier().eval(), pixel_weight=1.0)
    pred, target = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    plain = loss(pred, target)
    assert torch.equal(loss(pred, target, mask=None, progress=0.5, noisy=pred), plain)


def test_pixel_row_trains_without_a_classifier(bench, data, tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    args = ["--quick", "--rows", "pixel", "--runs", str(runs), "--out", str(tmp_path / "out"),
            "--classifier", str(tmp_path / "missing.safetensors")]
    assert bench.main(args) == 0
    assert "report not written" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()
    scores = json.loads((runs / "pixel" / "scores.json").read_text())
    assert scores["step"] == bench.QUICK.steps and scores["calibration"] is None
    assert json.loads((runs / "pixel" / "loss.json").read_text()) == {"row": {"name": "pixel", "feature": 0.0,
                                                                             "pixel": 1.0,
                                                                             "batch_statistics": False},
                                                                     "noise": bench.NOISE}
    # a feature row still needs the classifier: a clear error, exit status 2
    assert bench.main([*args[:2], "feature", *args[3:]]) == 2
    assert "classifier" in capsys.readouterr().err
    # a row whose training stopped early (a signal) is neither scored nor reported
    monkeypatch.setattr(bench, "train_row", lambda *a, **k: None)
    assert bench.main([*args, "--steps", str(2 * bench.QUICK.steps)]) == 2
    assert "stopped at step" in capsys.readouterr().err
    assert json.loads((runs / "pixel" / "scores.json").read_text()) == scores


def test_every_row_trains_and_the_report_is_written(bench, data, tmp_path):
    torch.manual_seed(0)
    classifier = save_classifier(tmp_path / "clf.safetensors", DSCClassifier().eval(), [f"c{i}" for i in range(10)])
    runs, out = tmp_path / "runs", tmp_path / "out"
    args = ["--quick", "--runs", str(runs), "--out", str(out), "--classifier", str(classifier)]
    assert bench.main(args) == 0
    report = (out / "perceptual_loss.md").read_text()
    assert (out / "perceptual_loss.png").stat().st_size > 10_000
    for row in bench.ROWS:
        assert any(line.startswith(f"| {row.name} ") for line in report.splitlines()), row.name
        assert json.loads((runs / row.name / "scores.json").read_text())["step"] == bench.QUICK.steps
    assert "Findings:" in report
    for row in ("feature", "feature-batchstats", "mix-0.1", "mix-1", "mix-10"):
        assert f"- `{row}`" in report, row


def _row(psnr, mean_out, detail=0.8, mean_clean=0.45, input_psnr=16.0):
    s = {"psnr": psnr, "ssim": 0.5, "mean_out": mean_out, "mean_clean": mean_clean, "detail": detail,
         "input_psnr": input_psnr, "input_ssim": 0.2}
    return {"sets": {"A": s, "B": dict(s)}}


def test_findings_follow_the_numbers(bench):
    trivial = [("noisy input", 0.02, 0.03), ("black (all 0)", 0.01, 0.25), ("clean blurred (5x5 box)", 0.05, 0.004),
               ("output of 'pixel'", 0.015, 0.002)]
    dark = bench.findings({"pixel": _row(28.0, 0.45), "feature": _row(12.0, 0.2),
                           "mix-1": _row(27.5, 0.45, detail=0.9)}, trivial, "A")
    assert "**reproduced**" in dark[0] and "below the noisy input on A, B" in dark[0]
    assert "black (all 0): 0.01000" in dark[1] and "blurred" not in dark[1]  # cheaper under features only
    assert "A -0.50 dB" in dark[2] and "detail 0.80 -> 0.90" in dark[2]
    bright = bench.findings({"pixel": _row(28.0, 0.45), "feature": _row(26.0, 0.44)},
                            [("noisy input", 0.02, 0.03), ("black (all 0)", 0.5, 0.25), ("output of 'pixel'", 0.015, 0.002)],
                            "A")
    assert "**not reproduced**" in bright[0] and "below the noisy input" not in bright[0]
    assert "no simple output" in bright[1]
    washed = bench.findings({"feature-batchstats": _row(10.0, 0.7)}, trivial, "A")
    assert "**not reproduced**" in washed[0] and "brighter" in washed[0]


def test_detail_is_one_on_the_clean_image_and_drops_when_smoothed(bench):
    clean = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert bench.detail(clean, clean) == pytest.approx(1.0)
    smooth = torch.nn.functional.avg_pool2d(clean, 3, stride=1, padding=1, count_include_pad=False)
    assert bench.detail(smooth, clean) < 0.6


def _cifar(root: Path) -> None:
    """A labelled folder in the CIFAR10 layout: class c is a noisy image of mean colour c / 10."""
    rng = np.random.default_rng(3)
    for split, count in (("train", 30), ("test", 10)):
        for c in range(10):
            folder = root / "CIFAR10" / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                image = c / 10 * np.array([1.0, 0.5, 0.2]) + 0.05 * rng.standard_normal((32, 32, 3))
                Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(folder / f"{i:03d}.png")


def test_pretraining_runs_from_the_pixel_row_and_reuses_finished_runs(bench, data, tmp_path, benchmark_script):
    pre = benchmark_script("pretraining")
    _cifar(data)
    runs = tmp_path / "runs"
    assert bench.main(["--quick", "--rows", "pixel", "--runs", str(runs / "perceptual"),
                       "--classifier", str(tmp_path / "missing.safetensors")]) == 0
    denoiser = runs / "perceptual" / "pixel" / "checkpoint.pt"
    args = ["--quick", "--denoiser", str(denoiser), "--runs", str(runs / "pre"), "--out", str(tmp_path / "out")]
    assert pre.main(args) == 0
    report = (tmp_path / "out" / "pretraining.md").read_text()
    assert (tmp_path / "out" / "pretraining.png").stat().st_size > 10_000
    assert "denoiser − default" in report and pre.weights_digest(pre.load_denoiser(denoiser)) in report
    histories = sorted((runs / "pre").rglob(HISTORY))
    assert len(histories) == 2 * 2 * 2  # settings x inits x seeds
    # finished runs are reused from their history alone (the checkpoints may stay behind)
    before = {p: p.read_text() for p in histories}
    for ckpt in (runs / "pre").rglob("checkpoint.pt"):
        ckpt.unlink()
    assert pre.main(args) == 0
    assert not list((runs / "pre").rglob("checkpoint.pt"))
    assert before == {p: p.read_text() for p in histories}


def test_classifier_selection_and_final_run_reuse_finished_candidates(data, tmp_path, benchmark_script):
    from denoise.models.classifier import load_classifier

    clf = benchmark_script("cifar_classifier")
    _cifar(data)
    runs, out = tmp_path / "runs", tmp_path / "out"
    args = ["--quick", "--runs", str(runs), "--out", str(out)]
    assert clf.main(args) == 0
    report = (out / "cifar_classifier.md").read_text()
    assert "Test accuracy" in report and (out / "cifar_classifier.png").stat().st_size > 10_000
    for c in clf.CANDIDATES:
        assert f"| {c.name} " in report
    model, classes = load_classifier(runs / "classifier.safetensors")
    assert classes == [f"class{c}" for c in range(10)]
    # finished runs are reused without their checkpoints: the candidates from history.json,
    # the final run from its exported weights
    for ckpt in runs.rglob("checkpoint.pt"):
        ckpt.unlink()
    weights = (runs / "classifier.safetensors").read_bytes()
    assert clf.main(args) == 0
    assert not list(runs.rglob("checkpoint.pt"))
    assert (runs / "classifier.safetensors").read_bytes() == weights
    assert (out / "cifar_classifier.md").read_text().split("Hardware")[0] == report.split("Hardware")[0]
    # other weights in the export's place: the final run is not reused, it trains again
    torch.manual_seed(1)
    save_classifier(runs / "classifier.safetensors", DSCClassifier(extra=list(clf.CANDIDATES[0].extra)),
                    classes)
    assert clf.main(args) == 0
    assert (runs / "final" / "checkpoint.pt").is_file()
