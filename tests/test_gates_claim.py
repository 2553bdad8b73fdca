"""benchmarks/gates_claim.py: one budget for every variant, verdicts computed from the numbers,
and an end-to-end smoke run on a tiny synthetic data folder."""
from __future__ import annotations


import pytest

from denoise.noise import parse_noise
from denoise.noise.models import Gaussian, SaltPepper

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def claim(benchmark_script):
    return benchmark_script("gates_claim")


def test_every_variant_gets_the_same_budget_and_the_issues_noise(claim, tmp_path):
    per_run = {"model", "model_kwargs", "out", "seed"}
    configs = [claim.FULL.config(v, 0, tmp_path, tmp_path / v) for v in claim.VARIANTS]
    first = {k: v for k, v in configs[0].to_dict().items() if k not in per_run}
    assert all({k: v for k, v in c.to_dict().items() if k not in per_run} == first for c in configs)
    assert first["crop"] == 64 and first["target"] == "clean" and first["gray"] is False
    assert [c.model_kwargs for c in configs] == [{"gates": "none"}, {"gates": "fixed"}, {"gates": "learned"},
                                                 {"depth": 20}]
    noise = parse_noise(claim.NOISE)
    gaussian, impulses = noise.parts
    assert isinstance(gaussian, Gaussian) and abs(gaussian.sigma - 25 / 255) < 1e-9
    assert isinstance(impulses, SaltPepper) and impulses.p == 0.05
    # a seed fixes the data order for every variant: only the seed changes it
    assert claim.FULL.config("plain", 1, tmp_path, tmp_path).seed == 1


def _run(seed: int, cbsd: float, kodak: float, loss: float = 0.01) -> dict:
    sets = {"CBSD68": [{"name": "a", "psnr": cbsd, "ssim": 0.8}],
            "Kodak24": [{"name": "b", "psnr": kodak, "ssim": 0.8}]}
    return {"seed": seed, "sets": sets, "final_loss": loss, "train_s": 60.0, "val_first": 20.0,
            "val_last": 25.0, "seconds": 1.0}


def test_verdicts_follow_the_numbers(claim):
    results = {
        "plain": [_run(0, 20.0, 21.0, 0.02), _run(1, 20.5, 21.2, 0.02), _run(2, 20.1, 21.1, 0.02)],
        "fixed": [_run(0, 24.0, 25.0), _run(1, 24.2, 25.1), _run(2, 24.1, 25.3)],
        # learned: better on seed 0 only -> inconclusive
        "learned": [_run(0, 24.5, 25.5), _run(1, 24.0, 25.0), _run(2, 24.0, 25.2)],
        # RED-Net 0.5 dB better on every seed -> "as well as, within 0.1 dB" is not confirmed
        "rednet20": [_run(0, 24.6, 25.6), _run(1, 24.7, 25.6), _run(2, 24.6, 25.8)],
    }
    assert claim.paired(results, "fixed", "plain", "CBSD68") == pytest.approx([4.0, 3.7, 4.0])
    lines = claim.claim_lines(results, {}, claim.FULL)
    assert len(lines) == 3
    assert lines[0].startswith("- Gated skips") and ": confirmed." in lines[0] and "+3.90" in lines[0]
    assert "inconclusive" in lines[1]
    assert "**not confirmed**" in lines[2] and "rednet20" in lines[2]
    assert claim.verdict({"a": [0.05, -0.05]}, threshold=-0.1) == "confirmed"
    assert claim.verdict({"a": [-1.0, -2.0], "b": [-0.5]}) == "**not confirmed**"
    assert claim.verdict({"a": [0.01, 0.02], "b": [0.03]}) == "**not confirmed**"  # below the effect size
    assert claim.verdict({"a": [0.2, 0.3], "b": [0.01]}).startswith("inconclusive")
    assert "plain 20.00 → 25.00 dB" in lines[0]




def test_smoke_run_writes_report_and_figure_and_resumes(claim, tmp_path, monkeypatch, capsys, synthetic_folder):
    data = tmp_path / "data"
    synthetic_folder(data / "CBSD432", 6, 40, 0)
    synthetic_folder(data / "CBSD68", 2, 36, 1)
    synthetic_folder(data / "Kodak24", 2, 36, 2)
    monkeypatch.setenv("DENOISE_DATA", str(data))
    monkeypatch.setattr(claim, "CLASSICAL", ("median", "median-adaptive", "dct", "median+dct"))
    args = ["--quick", "--steps", "2", "--threads", "1", "--runs", str(tmp_path / "runs"),
            "--out", str(tmp_path / "out")]
    assert claim.main(args) == 0
    report = (tmp_path / "out" / "gates_claim.md").read_text()
    assert (tmp_path / "out" / "gates_claim.png").stat().st_size > 10_000
    for needle in ("plain:", "fixed:", "learned:", "rednet20:", "median+dct", "noisy input",
                   "Gated skips make", "Learned gates at the end", "2 Adam steps", "![training loss"):
        assert needle in report, needle
    assert "bm3d` is not installed" in report or "BM3D on the first" not in report
    for v in claim.VARIANTS:
        assert (tmp_path / "runs" / f"{v}-s0" / "scores.json").is_file()
    # a second invocation reuses the finished runs (no training: the logs are unchanged)
    logs = {v: (tmp_path / "runs" / f"{v}-s0" / "log.csv").read_text() for v in claim.VARIANTS}
    assert claim.main(args) == 0
    assert logs == {v: (tmp_path / "runs" / f"{v}-s0" / "log.csv").read_text() for v in claim.VARIANTS}


def test_issue17_report_collects_the_reports(tmp_path, benchmark_script):
    report = benchmark_script("issue17_report")
    (tmp_path / "gates_claim.md").write_text("# Gates\n\n| a |\n|---|\n| 1 |\n\n## Setup\n\n![c](gates_claim.png)\n")
    (tmp_path / "pretraining.md").write_text("# Pre-training\n\ntext\n")
    target = report.collect(tmp_path, {"gates_claim": 0, "perceptual_loss": None, "pretraining": 3}, "cmd")
    text = target.read_text()
    assert target.name == "gated_denoisers.md" and "`cmd`" in text
    assert "### Gates" in text and "#### Setup" in text and "![c](gates_claim.png)" in text and "| 1 |" in text
    assert "Perceptual loss (issue 17, item 5): no script" in text
    assert "last run failed, status 3" in text and text.index("### Gates") < text.index("### Pre-training")
    assert report.run_part("no_such_script", True, tmp_path) is None
