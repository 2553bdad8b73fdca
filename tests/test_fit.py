"""``denoise fit``: fine-tuning a model on one's own noisy photos (training/fit.py, cli/fit.py):
outputs, the saved user model, the checkpoint and --resume, the gain over the starting
model, the time bound, and one-line errors that leave nothing behind."""
from __future__ import annotations

import itertools
import json

import pytest
import torch

import denoise
from denoise.cli import main
from denoise.inference import _cached
from denoise.io import read_image, write_image
from denoise.metrics import psnr
from denoise.models import create_model, get_entry
from denoise.models.registry import save_weights
from denoise.training import TrainConfig
from denoise.training.trainer import Trainer
from denoise.utils import write_json

pytestmark = pytest.mark.usefixtures("one_thread")

SIGMA = 0.1  # white noise on the 0-1 scale (25.5 on the 0-255 scale)

def _clean(i: int, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(i)
    x = torch.rand(1, 3, size // 8, size // 8, generator=g)
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)

def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err

@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """An empty user model folder holding only 'tiny': a blind FFDNet body of 8 features
    whose last convolution is zero, so that it starts as the identity."""
    folder = tmp_path / "my-models"
    monkeypatch.setenv("DENOISE_MODELS", str(folder))
    folder.mkdir()
    torch.manual_seed(0)
    model = create_model("ffdnet", pretrained=False, channels=3, features=8, layers=3, blind=True)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    torch.nn.init.zeros_(last.weight)
    save_weights(folder / "tiny.safetensors", model.state_dict())
    write_json(folder / "tiny.json", {"name": "tiny", "architecture": "ffdnet", "channels": 3,
                                      "model_kwargs": {"features": 8, "layers": 3, "blind": True}})
    _cached.cache_clear()  # models are cached by name: each test has its own folder
    yield folder
    _cached.cache_clear()

@pytest.fixture
def photos(tmp_path):
    """Four noisy 64x64 color photos (white noise) in a folder; their clean versions by name."""
    folder = tmp_path / "photos"
    folder.mkdir()
    clean = {}
    for i in range(4):
        x = _clean(i)
        noisy = (x + SIGMA * torch.randn(x.shape, generator=torch.Generator().manual_seed(100 + i))).clamp(0, 1)
        write_image(folder / f"p{i}.png", noisy)
        clean[f"p{i}.png"] = x
    return folder, clean

def _step(run_dir) -> int:
    return int(torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)["step"])

def test_fit_writes_the_photos_saves_a_model_that_run_uses_and_resumes(photos, user_dir, tmp_path, capsys):
    folder, _ = photos
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "fit", folder, "-o", out, "--mkdir", "--minutes", 0.03, "-m", "tiny",
                            "--self-mode", "pd", "--threads", 1, "-q")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png", "p2.png", "p3.png"]
    run_dir = user_dir / "fits" / "fit-photos"
    first = _step(run_dir)
    assert first > 0 and (user_dir / "fit-photos.safetensors").is_file()
    assert "fit-photos" in stdout and "denoise run PHOTOS -o OUT -m fit-photos" in stdout
    card = json.loads((user_dir / "fit-photos.json").read_text())
    assert card["architecture"] == "ffdnet" and card["init"] == "fine-tuned from tiny"
    assert card["targets"] == "self" and card["training"]["steps"] == first
    assert card["reproduce"].startswith(f"denoise fit {folder} -o {out}")
    # the saved model is the one that wrote the outputs: denoise run gives the same pixels
    assert get_entry("fit-photos").user
    code, _, err = run(capsys, "run", folder, "-o", tmp_path / "again", "--mkdir", "-m", "fit-photos", "-q")
    assert code == 0, err
    for name in ("p0.png", "p3.png"):
        assert torch.equal(read_image(out / name)[0], read_image(tmp_path / "again" / name)[0])
    # the batch-norm statistics stay those of the base (freeze_bn)
    base, fitted = create_model("tiny").state_dict(), create_model("fit-photos").state_dict()
    stats = [k for k in base if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(base[k], fitted[k]) for k in stats)
    assert not all(torch.equal(base[k], fitted[k]) for k in base)
    # the same fit again: refused without --resume (outputs first, then the fit itself)
    code, _, err = run(capsys, "fit", folder, "-o", out, "-m", "tiny")
    assert code == 2 and "outputs exist; pass --force to replace them" in err
    code, _, err = run(capsys, "fit", folder, "-o", tmp_path / "o2", "--mkdir", "-m", "tiny")
    assert code == 2 and "pass --resume to continue it" in err and err.count("\n") == 1
    assert not (tmp_path / "o2").exists() and _step(run_dir) == first
    # --resume continues from the checkpoint; --force replaces the outputs
    code, stdout, err = run(capsys, "fit", folder, "-o", out, "--minutes", 0.03, "--resume", "--force", "-q",
                            "--threads", 1)
    assert code == 0, err
    second = _step(run_dir)
    assert second > first and f"{second} in all" in stdout
    assert json.loads((user_dir / "fit-photos.json").read_text())["training"]["steps"] == second
    # resuming with another base is refused, naming the difference; without the base it works
    code, _, err = run(capsys, "fit", folder, "-o", tmp_path / "o3", "--mkdir", "--resume", "-m", "n2n-unet-color")
    assert code == 2 and "cannot resume" in err and "n2n-unet-color" in err and err.count("\n") == 1
    assert not (tmp_path / "o3").exists() and _step(run_dir) == second
    for suffix in (".safetensors", ".json"):
        (user_dir / f"tiny{suffix}").unlink()
    code, _, err = run(capsys, "fit", folder, "-o", tmp_path / "o3", "--mkdir", "--resume", "--minutes", 0.01, "-q")
    assert code == 0, err
    assert _step(run_dir) > second and len(list((tmp_path / "o3").iterdir())) == 4

def test_fitting_improves_psnr_over_the_starting_model(photos, user_dir, monkeypatch):
    folder, clean = photos
    ticks = itertools.count()
    # a clock that advances 0.01 s per reading makes the time bound a fixed step count
    # (2 readings per step: 240 steps in 0.08 minutes), whatever the machine's load
    monkeypatch.setattr(Trainer, "clock", staticmethod(lambda: next(ticks) * 0.01))
    result = denoise.fit(folder, minutes=0.08, model="tiny", name="mine", self_mode="pd", progress=False)
    assert result.steps == result.new_steps == 240 and result.timed_out and result.name == "mine"
    noisy = {name: read_image(folder / name)[0] for name in clean}
    base = create_model("tiny")

    def mean_psnr(model):
        with torch.no_grad():
            return sum(float(psnr(model(noisy[n]).clamp(0, 1), clean[n])) for n in clean) / len(clean)

    before, after = mean_psnr(base), mean_psnr(result.model)
    assert before == pytest.approx(sum(float(psnr(noisy[n], clean[n])) for n in clean) / len(clean))  # identity
    assert after > before + 0.2  # measured +0.36 dB (pd, 240 steps at lr 1e-4)

def test_the_time_bound_is_wall_time(photos, user_dir):
    import time

    start = time.perf_counter()
    result = denoise.fit(photos[0], minutes=0.02, model="tiny", progress=False)
    assert result.timed_out and 1.2 <= result.seconds < 1.2 + 5  # one step past the bound at most
    assert time.perf_counter() - start < 30
    assert result.weights == user_dir / "fit-photos.safetensors"

def _nothing_written(user_dir, tmp_path) -> None:
    assert sorted(p.name for p in user_dir.iterdir()) == ["tiny.json", "tiny.safetensors"]
    assert not (tmp_path / "out").exists()

@pytest.mark.parametrize("options, message", [
    (["--minutes", "0"], "--minutes must be a positive number of minutes, got 0"),
    (["--minutes", "-2"], "--minutes must be a positive number"),
    (["--minutes", "soon"], "--minutes must be a positive number"),
    (["-m", "no-such-model"], "unknown model 'no-such-model'"),
    (["-m", "ffdnet"], "takes a noise level (sigma); fit trains blind models"),
    (["-m", "dct"], "is classical"),
    (["--resume"], "nothing to resume: no fit named 'fit-photos'"),
    (["--name", "n2n-unet-color"], "is the name of a shipped model"),
])
def test_bad_input_is_one_line_and_writes_nothing(photos, user_dir, tmp_path, capsys, options, message):
    code, _, err = run(capsys, "fit", photos[0], "-o", tmp_path / "out", "--mkdir", "-m", "tiny", *options)
    assert code == 2 and message in err, err
    assert err.count("\n") == 1 and err.startswith("denoise: error: ") and "Traceback" not in err
    _nothing_written(user_dir, tmp_path)

def test_an_empty_or_missing_folder_is_refused(user_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder, message in ((empty, "no images in"), (tmp_path / "missing", "no such folder")):
        code, _, err = run(capsys, "fit", folder, "-o", tmp_path / "out", "--mkdir", "-m", "tiny")
        assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err
    _nothing_written(user_dir, tmp_path)

def test_the_default_model_without_weights_names_the_model_option(photos, user_dir, tmp_path, capsys,
                                                                  monkeypatch):
    # an install without real-color's weights (whether or not this one ships them)
    from denoise.models.registry import ModelEntry

    has_weights = ModelEntry.has_weights
    monkeypatch.setattr(ModelEntry, "has_weights", lambda e: e.name != "real-color" and has_weights(e))
    assert not get_entry("real-color").has_weights()
    code, _, err = run(capsys, "fit", photos[0], "-o", tmp_path / "out", "--mkdir")
    assert code == 2 and "real-color, has no weights" in err and "--model" in err and err.count("\n") == 1
    _nothing_written(user_dir, tmp_path)

def test_the_pseudo_objective_trains_on_the_base_outputs_with_its_noise(photos, user_dir, tmp_path, capsys):
    from denoise.training.fit import PSEUDO_NOISE, base_noise, fit_config, pseudo_clean, resolve_base

    folder, clean = photos
    noisy = [read_image(folder / name)[0][0] for name in sorted(clean)]
    base = resolve_base("tiny", 3)
    assert base_noise(base, 3) == PSEUDO_NOISE[3]  # tiny's card records no training noise
    config = fit_config(base, channels=3, crop=32, out=tmp_path / "r", train_dir="x", minutes=1,
                        self_mode="pseudo")
    assert config.target == "clean" and config.noise == PSEUDO_NOISE[3] and config.loss == "l2_rel"
    targets = pseudo_clean(config, noisy, 3)
    with torch.no_grad():
        assert all(torch.allclose(t, create_model("tiny")(x[None])[0].clamp(0, 1)) for t, x in zip(targets, noisy))
    # a run folder's own noise spec is the one it was trained with
    Trainer(TrainConfig(model="ffdnet", model_kwargs={"features": 8, "layers": 3, "blind": True},
                        data="folder", train_dir=str(folder), noise="gaussian:10", crop=32, batch_size=2,
                        steps=1, val_count=0, out=str(tmp_path / "run"), progress=False)).fit()
    assert base_noise(resolve_base(str(tmp_path / "run"), 3), 3) == "gaussian:10"
    code, _, err = run(capsys, "fit", folder, "-o", tmp_path / "out", "--mkdir", "-m", "tiny", "--minutes", 0.02,
                       "--self-mode", "pseudo", "--threads", 1, "-q")
    assert code == 0, err
    card = json.loads((user_dir / "fit-photos.json").read_text())
    assert card["targets"] == "clean" and card["noise"] == PSEUDO_NOISE[3] and "pseudo objective" in card["note"]
    code, _, err = run(capsys, "fit", folder, "-o", tmp_path / "o2", "--mkdir", "--resume", "--self-mode", "pd")
    assert code == 2 and "its objective is pseudo, not pd" in err and err.count("\n") == 1
    # the default objective is pseudo; resuming it needs the base, which makes its targets
    code, _, err = run(capsys, "fit", folder, "-o", tmp_path / "o3", "--mkdir", "--resume", "--minutes", 0.01, "-q")
    assert code == 0, err
    for suffix in (".safetensors", ".json"):
        (user_dir / f"tiny{suffix}").unlink()
    code, _, err = run(capsys, "fit", folder, "-o", tmp_path / "o4", "--mkdir", "--resume", "--minutes", 0.01)
    assert code == 2 and "makes its clean images with its base, tiny" in err and err.count("\n") == 1
    assert not (tmp_path / "o4").exists()
