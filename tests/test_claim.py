"""benchmarks/n2n_claim.py: one budget for every row, the report's figures, an end-to-end smoke run."""
from __future__ import annotations

import dataclasses
import json

import pytest

from denoise.noise import Impulse, Text, parse_noise
from denoise.training.losses import LOSSES



@pytest.fixture(scope="module")
def claim(benchmark_script):
    return benchmark_script("n2n_claim")


def test_every_row_has_the_same_budget_and_the_issues_settings(claim, tmp_path):
    configs = [claim.FULL.config(row, tmp_path, tmp_path / row.name) for row in claim.ROWS]
    per_row = {"noise", "target", "loss", "out"}
    first = {k: v for k, v in configs[0].to_dict().items() if k not in per_row}
    for cfg in configs:
        assert {k: v for k, v in cfg.to_dict().items() if k not in per_row} == first
        assert cfg.loss in LOSSES and cfg.target in ("clean", "noisy")
        assert cfg.loss == "l2" or cfg.target == "noisy"  # clean targets: plain L2
    assert len({row.name for row in claim.ROWS}) == len(claim.ROWS)
    wanted = {("gaussian", "noisy", "l2"), ("poisson", "noisy", "l2"), ("bernoulli", "noisy", "masked_l2"),
              ("impulse", "noisy", "l0"), ("impulse", "noisy", "l1"), ("impulse", "noisy", "l2"),
              ("text", "noisy", "l1"), ("text", "noisy", "l2")}
    assert wanted <= {(r.noise, r.target, r.loss) for r in claim.ROWS}
    assert {r.noise for r in claim.ROWS if r.target == "clean"} == set(claim.NOISES)
    assert parse_noise(claim.NOISES["poisson"]).lam == 30
    impulse, text = parse_noise(claim.NOISES["impulse"]), parse_noise(claim.NOISES["text"])
    assert isinstance(impulse, Impulse) and impulse.p == 0.5 and not impulse.per_channel
    assert isinstance(text, Text) and 0 < text.p <= 0.5 and text.size is not None


def _result(claim, row, kodak: float, cbsd: float) -> dict:
    sets = {"Kodak24_full": {"psnr": kodak, "input_psnr": 20.0, "n_images": 24},
            "CBSD68": {"psnr": cbsd, "input_psnr": 20.1, "n_images": 68}}
    return {"sets": sets, "val_psnr": 30.0, "noise_spec": claim.NOISES[row.noise], "train_s": 60.0,
            "eval_s": 6.0, "step": 10}


def test_table_differences_and_claim_lines(claim):
    R = claim.Row
    results = {R("gaussian", "clean", "l2"): _result(claim, R("gaussian", "clean", "l2"), 30.0, 29.0),
               R("gaussian", "noisy", "l2"): _result(claim, R("gaussian", "noisy", "l2"), 29.95, 28.7),
               R("poisson", "clean", "l2"): _result(claim, R("poisson", "clean", "l2"), 31.0, 30.0),
               R("poisson", "noisy", "l2"): _result(claim, R("poisson", "noisy", "l2"), 31.02, 29.93)}
    table = claim.results_table(results, ["Kodak24_full", "CBSD68"])
    lines = table.splitlines()
    assert len(lines) == 2 + len(results)
    assert "-0.05" in lines[3] and "-0.30" in lines[3] and "+0.02" in lines[5] and "-0.07" in lines[5]
    claims = claim.claim_lines(results, ["Kodak24_full", "CBSD68"])
    assert "gaussian" in claims[0] and "**not** within 0.1" in claims[0]
    assert "poisson" in claims[1] and "**not**" not in claims[1]


@pytest.mark.slow
def test_quick_run_writes_the_report_with_every_row_and_resumes(claim, data_root, tmp_path, monkeypatch):
    if not all((data_root / name).is_dir() for name in ("CBSD432", *claim.TEST_SETS)):
        pytest.skip("CBSD432, Kodak24_full or CBSD68 missing from the data folder")
    args = ["--quick", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    assert claim.main(args) == 0
    report = (tmp_path / "out" / "n2n_claim.md").read_text()
    assert (tmp_path / "out" / "n2n_claim.png").stat().st_size > 10_000
    table = {tuple(cells[:4]): cells for cells in ([c.strip() for c in line.split("|")[1:-1]]
                                                   for line in report.splitlines() if line.startswith("| "))}
    for row in claim.ROWS:
        cells = table[(row.noise, f"`{claim.NOISES[row.noise]}`", row.target, row.loss.replace("_", " "))]
        assert float(cells[5]) > 0 and float(cells[6]) > 0  # Kodak24_full input and output PSNR
        saved = json.loads((tmp_path / "runs" / row.name / "scores.json").read_text())
        assert saved["step"] == claim.QUICK.steps
    # a second run reuses every finished row: nothing is trained again
    monkeypatch.setattr(claim, "train_row", lambda *a, **k: pytest.fail("a finished row was trained again"))
    assert claim.main(args) == 0
    # an interrupted row resumes from its checkpoint to the planned steps
    monkeypatch.undo()
    longer = dataclasses.replace(claim.QUICK, steps=claim.QUICK.steps + 2)
    monkeypatch.setattr(claim, "QUICK", longer)
    assert claim.main(args + ["--rows", "gaussian-noisy-l2"]) == 0
    log = (tmp_path / "runs" / "gaussian-noisy-l2" / "log.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in log[1:]] == list(range(2, longer.steps + 1, 2))
