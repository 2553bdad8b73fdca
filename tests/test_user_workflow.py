"""A user's own model end to end: noisy pairs -> denoise train -> export -> denoise run,
by name and by path; the shipped weights never change; the folder tools of `denoise run`
(--shard, --skip-existing, --device) and the messages around training."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from denoise.cli import main
from denoise.io import read_image, write_image
from denoise.models.registry import WEIGHTS_DIR

pytestmark = pytest.mark.usefixtures("one_thread")


def _digests() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(WEIGHTS_DIR.iterdir())
            if p.is_file()}


def _scene(i: int, size: int = 72) -> torch.Tensor:
    g = torch.Generator().manual_seed(i)
    x = torch.rand(1, 1, size // 8, size // 8, generator=g)
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def _noisy(x: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + 0.08 * torch.randn(x.shape, generator=g)).clamp(0, 1)


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def pairs(tmp_path):
    """20 pairs of noisy shots of 20 scenes, in two folders."""
    for side in ("a", "b"):
        (tmp_path / side).mkdir()
    for i in range(20):
        clean = _scene(i)
        write_image(tmp_path / "a" / f"s{i:02d}.png", _noisy(clean, 2 * i))
        write_image(tmp_path / "b" / f"s{i:02d}.png", _noisy(clean, 2 * i + 1))
    return tmp_path


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    folder = tmp_path / "my-models"
    monkeypatch.setenv("DENOISE_MODELS", str(folder))
    return folder


def test_train_export_and_run_by_name_and_by_path(pairs, user_dir, tmp_path, capsys):
    before = _digests()
    run_dir = tmp_path / "runs" / "x"
    code, out, err = run(capsys, "train", "--data", "pairs", "--train-dir", pairs / "a", "--target-dir",
                         pairs / "b", "--steps", 20, "--out", run_dir, "--no-progress", "--no-plot",
                         "--model-kwargs", '{"features": 8}')
    assert code == 0, err
    assert "against noisy target views" in out  # what the validation PSNR means
    assert "second noisy view" in (run_dir / "VALIDATION.txt").read_text()
    code, out, err = run(capsys, "export-weights", run_dir, "my-n2n")
    assert code == 0, err
    assert (user_dir / "my-n2n.safetensors").is_file() and (user_dir / "my-n2n.json").is_file()
    card = json.loads((user_dir / "my-n2n.json").read_text())
    assert "gaussian" not in json.dumps(card["validation"]) and card["noise"] == "real noisy pairs"
    code, out, err = run(capsys, "models")
    assert code == 0 and any(line.startswith("my-n2n ") and " user " in line for line in out.splitlines())
    noisy = pairs / "a" / "s00.png"
    for i, model in enumerate(["my-n2n", user_dir / "my-n2n.safetensors", run_dir,
                               run_dir / "checkpoint.pt", "my-n2n+x8"]):
        out_dir = tmp_path / f"out{i}"
        code, _, err = run(capsys, "run", noisy, "-o", out_dir, "--mkdir", "-m", model, "-q")
        assert code == 0, (model, err)
        y, _ = read_image(out_dir / "s00.png")
        assert y.shape == (1, 1, 72, 72)
    assert _digests() == before  # nothing in the installed package changed


def test_export_never_replaces_shipped_weights(pairs, user_dir, tmp_path, capsys):
    run_dir = tmp_path / "r"
    assert run(capsys, "train", "--data", "pairs", "--train-dir", pairs / "a", "--target-dir", pairs / "b",
               "--steps", 1, "--out", run_dir, "--no-progress", "--no-plot", "--model", "unet-small",
               "--model-kwargs", '{"features": 4}', "--crop", 32)[0] == 0
    before = _digests()
    code, _, err = run(capsys, "export-weights", run_dir, "n2n-unet-color")
    assert code == 2 and "shipped model" in err and err.count("\n") == 1
    code, _, err = run(capsys, "export-weights", run_dir, "mine", "--out", WEIGHTS_DIR, "--force")
    assert code == 2 and "weights folder" in err
    assert run(capsys, "export-weights", run_dir, "mine")[0] == 0
    code, _, err = run(capsys, "export-weights", run_dir, "mine")
    assert code == 2 and "--force" in err
    assert run(capsys, "export-weights", run_dir, "mine", "--force")[0] == 0
    assert _digests() == before


@pytest.mark.parametrize("make,expected", [
    (lambda d: d / "nothing-here.safetensors", "no such model"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "without checkpoint.pt"),
    (lambda d: (d / "w.safetensors").write_bytes(b"x") and d / "w.safetensors", "model card"),
    (lambda d: (d / "c.pt").write_bytes(b"not a checkpoint") and d / "c.pt", "not a denoise training checkpoint"),
])
def test_bad_model_paths(tmp_path, capsys, make, expected):
    write_image(tmp_path / "in.png", _scene(0))
    model = make(tmp_path)
    code, _, err = run(capsys, "run", tmp_path / "in.png", "-o", tmp_path / "out", "--mkdir", "-m", model)
    assert code == 2 and expected in err and err.startswith("denoise: error: ") and err.count("\n") == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_weights_with_a_card_of_another_architecture(tmp_path, capsys):
    from safetensors.torch import save_file

    from denoise.models import create_model

    save_file(create_model("dncnn", pretrained=False, layers=3).state_dict(), str(tmp_path / "w.safetensors"))
    (tmp_path / "w.json").write_text(json.dumps({"architecture": "ffdnet", "channels": 1}))
    write_image(tmp_path / "in.png", _scene(0))
    code, _, err = run(capsys, "run", tmp_path / "in.png", "-o", tmp_path / "out", "--mkdir", "-m",
                       tmp_path / "w.safetensors")
    assert code == 2 and "do not match" in err and err.count("\n") == 1


def test_shards_split_a_folder_without_overlap(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    for i in range(12):
        write_image(tmp_path / "in" / f"{i}.png", _scene(i, 16))
    seen = []
    for k in (1, 2, 3):
        out = tmp_path / f"out{k}"
        assert run(capsys, "run", tmp_path / "in", "-o", out, "--mkdir", "-m", "dct", "--shard", f"{k}/3",
                   "-q")[0] == 0
        seen += [p.name for p in out.iterdir()]
    assert sorted(seen) == sorted(f"{i}.png" for i in range(12))  # every file once
    again = tmp_path / "again"
    run(capsys, "run", tmp_path / "in", "-o", again, "--mkdir", "-m", "dct", "--shard", "2/3", "-q")
    assert sorted(p.name for p in again.iterdir()) == sorted(p.name for p in (tmp_path / "out2").iterdir())


@pytest.mark.parametrize("shard", ["3/2", "a/b", "0/4", "1"])
def test_bad_shards(tmp_path, capsys, shard):
    write_image(tmp_path / "in.png", _scene(0, 16))
    code, _, err = run(capsys, "run", tmp_path / "in.png", "-o", tmp_path / "o", "--mkdir", "--shard", shard)
    assert code == 2 and "--shard" in err and not (tmp_path / "o").exists()


def test_skip_existing(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    for i in range(3):
        write_image(tmp_path / "in" / f"{i}.png", _scene(i, 16))
    out = tmp_path / "out"
    out.mkdir()
    (out / "1.png").write_bytes(b"kept")
    code, _, err = run(capsys, "run", tmp_path / "in", "-o", out, "-m", "dct")
    assert code == 2 and "--skip-existing" in err
    assert run(capsys, "run", tmp_path / "in", "-o", out, "-m", "dct", "--skip-existing", "-q")[0] == 0
    assert (out / "1.png").read_bytes() == b"kept" and (out / "0.png").is_file() and (out / "2.png").is_file()


def test_unavailable_device_is_refused(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    write_image(tmp_path / "in.png", _scene(0, 16))
    code, _, err = run(capsys, "run", tmp_path / "in.png", "-o", tmp_path / "o", "--mkdir", "--device", "cuda")
    assert code == 2 and "not available" in err and err.count("\n") == 1 and not (tmp_path / "o").exists()
    code, out, err = run(capsys, "run", tmp_path / "in.png", "-o", tmp_path / "o", "--mkdir", "--device", "cpu",
                         "-m", "dct")
    assert code == 0 and "device cpu" in out


def test_blind_model_warns_that_it_ignores_sigma(tmp_path, capsys):
    write_image(tmp_path / "in.png", _scene(0, 40))
    code, _, err = run(capsys, "run", tmp_path / "in.png", "-o", tmp_path / "o", "--mkdir", "-m", "n2n-unet-gray",
                       "--sigma", "25", "-q")
    assert code == 0 and "blind to the noise level" in err and "warning" in err
    code, _, err = run(capsys, "run", tmp_path / "in.png", "-o", tmp_path / "o2", "--mkdir", "-m", "dct",
                       "--sigma", "25", "-q")
    assert code == 0 and "blind" not in err


def test_small_pair_sets_train_on_defaults_and_val_clean(pairs, tmp_path, capsys):
    clean = tmp_path / "clean"
    clean.mkdir()
    for i in range(18, 20):  # clean versions of the two held-out scenes (a tenth of 20)
        write_image(clean / f"s{i:02d}.png", _scene(i))
    code, out, err = run(capsys, "train", "--data", "pairs", "--train-dir", pairs / "a", "--target-dir", pairs / "b",
                         "--steps", 2, "--out", tmp_path / "r", "--no-progress", "--no-plot", "--model", "unet-small",
                         "--model-kwargs", '{"features": 4}', "--crop", 32, "--val-clean", clean)
    assert code == 0, err
    assert "noisy target" not in out and "clean references" in (tmp_path / "r" / "VALIDATION.txt").read_text()
    code, _, err = run(capsys, "train", "--data", "pairs", "--train-dir", pairs / "a", "--target-dir", pairs / "b",
                       "--steps", 2, "--out", tmp_path / "r2", "--val-count", 20, "--no-progress")
    assert code == 2 and "--val-count" in err


def test_interrupted_training_says_how_to_resume(pairs, tmp_path, capsys, monkeypatch):
    from denoise.training import Trainer

    calls = {"n": 0}
    step = Trainer.train_step

    def interrupt_third(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return step(self)

    monkeypatch.setattr(Trainer, "train_step", interrupt_third)
    code, _, err = run(capsys, "train", "--data", "pairs", "--train-dir", pairs / "a", "--target-dir", pairs / "b",
                       "--steps", 10, "--out", tmp_path / "r", "--no-progress", "--no-plot", "--model", "unet-small",
                       "--model-kwargs", '{"features": 4}', "--crop", 32)
    assert code == 130
    assert "interrupted at step 2" in err and "--resume" in err and "denoise train" in err


def test_train_help_prints_each_default_once(capsys):
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0 and "--val-every" in out
    import re

    flat = " ".join(out.split())
    assert not re.search(r"\(default: [^)]*\) \(default:", flat) and flat.count("(default:") > 10


def test_api_write_message_names_the_api_option(tmp_path):
    from denoise.errors import ImageWriteError

    write_image(tmp_path / "a.png", _scene(0, 16))
    with pytest.raises(ImageWriteError, match="overwrite=True") as info:
        write_image(tmp_path / "a.png", _scene(0, 16))
    assert "--force" not in str(info.value)


def test_user_model_folder_default(monkeypatch, tmp_path):
    from denoise.models.user import user_models_dir

    monkeypatch.delenv("DENOISE_MODELS", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert user_models_dir() == Path(tmp_path) / "denoise" / "models"


def test_shard_auto_reads_torchrun_and_slurm(monkeypatch):
    import argparse

    from denoise.cli.run import shard_arg

    for var in ("WORLD_SIZE", "RANK", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(argparse.ArgumentTypeError, match="torchrun"):
        shard_arg("auto")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "8")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert shard_arg("auto") == (4, 8)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert shard_arg("auto") == (3, 4)


def test_bench_lists_only_folders_of_images(tmp_path, monkeypatch):
    from denoise.evaluation.testsets import available_sets

    (tmp_path / "Mine").mkdir()
    write_image(tmp_path / "Mine" / "a.png", _scene(0, 16))
    (tmp_path / "Classes" / "cat").mkdir(parents=True)
    write_image(tmp_path / "Classes" / "cat" / "a.png", _scene(1, 16))
    monkeypatch.setenv("DENOISE_DATA", str(tmp_path))
    assert available_sets() == ["Mine"]


@pytest.mark.parametrize("command", [["bench", "--data", "Set12", "--model", "dct"], ["demo", "--models", "dct"]])
def test_every_command_that_runs_a_model_takes_a_device(tmp_path, capsys, command):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    extra = ["--out", tmp_path / "d"] if command[0] == "demo" else []
    code, _, err = run(capsys, *command, *extra, "--device", "cuda")
    assert code == 2 and "not available" in err and err.count("\n") == 1


def test_demo_sheets_are_readable_and_keep_the_clean_photo(tmp_path, capsys):
    from PIL import Image

    code, _, err = run(capsys, "demo", "--out", tmp_path, "--models", "dct,wavelet,tv,nlm", "--images", "camera",
                       "--size", "64", "-q")
    assert code == 0, err
    sheet = Image.open(tmp_path / "camera.png")
    assert sheet.width >= 4 * 320  # four panels per row, each at least 320 px wide
    assert (tmp_path / "clean" / "camera.png").is_file() and (tmp_path / "noisy" / "camera.png").is_file()
