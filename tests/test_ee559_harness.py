"""The exported EE-559 project folder, checked the way the course's harness uses it.

Run as a script, this file is a stand-alone checker of a project folder (it needs only
torch and the folder on ``sys.path``, as the course's harness does)::

    python tests/test_ee559_harness.py --project DIR --data DATA [--from-scratch]

It checks (in its own words, not the course's code) the folder structure, ``Model()``, ``predict`` on a 1x3x512x512 float input,
the pretrained PSNR on ``val_data.pkl`` (predicting 100 images at a time, with the
mean over images of ``-10 log10(mse)`` on values / 255), one training epoch on
``train_data.pkl`` from the pretrained weights, and ``Conv2d`` / ``Sigmoid`` /
``Sequential`` of project 2 against torch. A check passes only when the model beats the
noisy input. It prints one JSON line per measurement and exits with 1 on any failure.
The tests below export a folder, build small course data and run this script on them in
a fresh interpreter; the full-size run (50,000 pairs) is marked slow.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve()


# ----------------------------------------------------------------------------- the checker


def mean_psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over images of -10 log10(mse), both in [0, 1]."""
    assert x.shape == y.shape and x.dim() == 4
    return float((-10 * torch.log10(((x - y) ** 2).mean((1, 2, 3)))).mean())


def predict_in_batches(model, noisy: torch.Tensor, batch: int = 100) -> torch.Tensor:
    outputs = [model.predict(noisy.narrow(0, start, min(batch, noisy.size(0) - start))).cpu()
               for start in range(0, noisy.size(0), batch)]
    return torch.cat(outputs) / 255.0


def check_project(number: int, project: Path, data: Path, from_scratch: bool) -> list[dict]:
    """Every check of one mini-project; returns the result records."""
    import importlib

    folder = project / f"Miniproject_{number}"
    missing = [name for name in ("__init__.py", "model.py", "bestmodel.pth") if not (folder / name).is_file()]
    records = [{"project": number, "check": "structure", "ok": not missing, "missing": missing}]
    module = importlib.import_module(f"Miniproject_{number}.model")
    model = module.Model()
    out = model.predict(torch.rand(1, 3, 512, 512) * 255)
    records.append({"project": number, "check": "dummy_input", "shape": list(out.shape),
                    "ok": tuple(out.shape) == (1, 3, 512, 512) and float(out.min()) >= 0
                    and 1 < float(out.max()) <= 255})

    val_input, val_target = torch.load(data / "val_data.pkl")
    train_input0, train_input1 = torch.load(data / "train_data.pkl")
    target = val_target.float() / 255.0
    noisy_psnr = mean_psnr(val_input.float() / 255.0, target)

    model = module.Model()
    model.load_pretrained_model()
    psnr = mean_psnr(predict_in_batches(model, val_input), target)
    records.append({"project": number, "check": "pretrained_psnr", "psnr_db": psnr,
                    "noisy_psnr_db": noisy_psnr, "ok": psnr > noisy_psnr})

    runs = [("train_one_epoch_from_pretrained", True)] + ([("train_one_epoch_from_scratch", False)]
                                                          if from_scratch else [])
    for name, pretrained in runs:
        model = module.Model()
        if pretrained:
            model.load_pretrained_model()
        start = time.perf_counter()
        model.train(train_input0, train_input1, num_epochs=1)
        seconds = time.perf_counter() - start
        psnr = mean_psnr(predict_in_batches(model, val_input), target)
        records.append({"project": number, "check": name, "psnr_db": psnr, "noisy_psnr_db": noisy_psnr,
                        "pairs": int(train_input0.shape[0]), "seconds": round(seconds, 1),
                        "threads": torch.get_num_threads(), "ok": psnr > noisy_psnr})
    return records


def check_blocks() -> list[dict]:
    """Project 2's Conv2d, Sigmoid and Sequential against torch, default tolerances."""
    import importlib

    module = importlib.import_module("Miniproject_2.model")
    x = torch.randn(1, 3, 32, 32)
    conv, sigmoid = module.Conv2d(3, 3, 3), module.Sigmoid()
    reference = F.conv2d(x, conv.weight, conv.bias)
    return [
        {"check": "conv2d", "ok": bool(torch.allclose(conv.forward(x), reference))},
        {"check": "sigmoid", "ok": bool(torch.allclose(sigmoid.forward(x), torch.sigmoid(x)))},
        {"check": "sequential", "ok": bool(torch.allclose(module.Sequential(conv, sigmoid).forward(x),
                                                          reference.sigmoid()))},
    ]


def run_checks(project: Path, data: Path, from_scratch: bool = False) -> int:
    sys.path.append(str(project))
    records = check_blocks()
    for number in (1, 2):
        records += check_project(number, project, data, from_scratch)
    for record in records:
        print(json.dumps(record), flush=True)
    return 0 if all(r["ok"] for r in records) else 1


# ----------------------------------------------------------------------------- the tests


def _run_script(project: Path, data: Path, tmp_path: Path, *extra: str, timeout: int) -> list[dict]:
    """Run this file as the checker in a fresh interpreter, outside the repository."""
    result = subprocess.run([sys.executable, str(HERE), "--project", str(project), "--data", str(data),
                             *extra], cwd=tmp_path, capture_output=True, text=True, timeout=timeout)
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0, result.stdout + result.stderr
    return records


def _export(tmp_path: Path) -> Path:
    from denoise.cli import main

    project = tmp_path / "Proj_000000_000000_000000"
    assert main(["ee559", "export", str(project)]) == 0
    return project


def test_export_writes_the_course_folder(tmp_path, capsys):
    from denoise.ee559.course import load_state, shipped_weights
    from denoise.ee559.export import model_source

    project = _export(tmp_path)
    for number in (1, 2):
        folder = project / f"Miniproject_{number}"
        assert sorted(p.name for p in folder.iterdir()) == ["__init__.py", "bestmodel.pth", "model.py"]
        assert (folder / "model.py").read_text() == model_source(number)
        state = torch.load(folder / "bestmodel.pth", weights_only=True)
        shipped = load_state(shipped_weights(f"ee559-project{number}"))
        assert state.keys() == shipped.keys() and all(torch.equal(state[k], shipped[k]) for k in state)
    capsys.readouterr()


def test_export_refuses_to_overwrite_without_force(tmp_path, capsys):
    from denoise.cli import main

    project = _export(tmp_path)
    model_py = project / "Miniproject_2" / "model.py"
    model_py.write_text("# edited\n")
    assert main(["ee559", "export", str(project)]) == 2
    assert "--force" in capsys.readouterr().err and model_py.read_text() == "# edited\n"
    assert main(["ee559", "export", str(project), "--force"]) == 0
    assert model_py.read_text() != "# edited\n"
    (tmp_path / "file").write_text("")
    assert main(["ee559", "export", str(tmp_path / "file")]) == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def small_course_data(tmp_path_factory, request):
    """Course data of 300 training pairs and 200 validation crops from 40 CBSD432 photos."""
    from denoise.ee559.data import build_ee559_data, write_ee559_data

    root = request.getfixturevalue("data_root")
    if not (root / "CBSD432").is_dir():
        pytest.skip(f"CBSD432 not found in {root}")
    photos = tmp_path_factory.mktemp("photos")
    for path in sorted((root / "CBSD432").iterdir())[::11][:40]:
        (photos / path.name).symlink_to(path)
    out = tmp_path_factory.mktemp("course_data")
    write_ee559_data(out, build_ee559_data(photos, n_train=300, n_val=200, seed=0))
    return out


def test_exported_folder_passes_the_course_checks(tmp_path, small_course_data):
    records = _run_script(_export(tmp_path), small_course_data, tmp_path, timeout=900)
    checks = {(r.get("project"), r["check"]) for r in records}
    assert {(None, "conv2d"), (None, "sigmoid"), (None, "sequential")} <= checks
    for number in (1, 2):
        assert {(number, c) for c in ("structure", "dummy_input", "pretrained_psnr",
                                      "train_one_epoch_from_pretrained")} <= checks
    assert all(r["ok"] for r in records)


@pytest.mark.slow
@pytest.mark.course
def test_full_size_course_run(tmp_path, data_root):
    """The course's setting: 50,000 training pairs and 1,000 validation crops from CBSD432,
    one epoch from the pretrained weights and one from scratch for each project."""
    from denoise.ee559.data import build_ee559_data, write_ee559_data

    write_ee559_data(tmp_path / "data", build_ee559_data(data_root / "CBSD432"))
    records = _run_script(_export(tmp_path), tmp_path / "data", tmp_path, "--from-scratch", timeout=7200)
    for record in records:
        print(record)
    assert all(r["ok"] for r in records)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-p", "--project", type=Path, required=True, help="project folder")
    parser.add_argument("-d", "--data", type=Path, required=True, help="folder of the .pkl files")
    parser.add_argument("--from-scratch", action="store_true",
                        help="also train one epoch from scratch (untrained weights)")
    args = parser.parse_args()
    sys.exit(run_checks(args.project, args.data, args.from_scratch))
