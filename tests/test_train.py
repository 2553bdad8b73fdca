"""The Trainer: run files, exact resume, schedule, bad input, export, CLI."""
import errno
import json
import os
import signal

import pytest
import torch

from denoise.cli.main import main
from denoise.errors import InputError, TrainingError
from denoise.io import write_image
from denoise.models import create_model
from denoise.training import (
    TrainConfig,
    Trainer,
    export_weights,
    learning_rate,
    read_log,
)
from denoise.training import runlog as R
from denoise.training import trainer as T
from denoise.training.data import random_patches


def _smooth(seed: int, c: int = 1, size: int = 24) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, c, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(6):
        write_image(d / f"im{i}.png", _smooth(i))
    return d


def _config(folder, out, **kw) -> TrainConfig:
    base = dict(model="unet-small", model_kwargs={"features": 4}, train_dir=str(folder), noise="gaussian:0-50",
                val_count=2, crop=16, batch_size=4, steps=6, checkpoint_every=3, log_every=1, lr=1e-3,
                schedule="rampdown", rampdown=0.5, out=str(out), progress=False, plot=False, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def _losses(run_dir):
    return [r["loss"] for r in read_log(run_dir / R.LOG)]


def _ckpt(run_dir):
    return torch.load(run_dir / R.CHECKPOINT, map_location="cpu", weights_only=True)


def test_run_writes_checkpoint_config_log_and_curves(folder, tmp_path):
    cfg = _config(folder, tmp_path / "run", plot=True)
    result = Trainer(cfg).fit()
    run = tmp_path / "run"
    assert result.step == 6 and result.val_psnr is not None
    ckpt = _ckpt(run)  # weights_only=True works
    assert ckpt["step"] == 6 and set(ckpt["rng"]) == {"data", "torch"}
    assert json.loads((run / R.CONFIG).read_text()) == cfg.to_dict()
    rows = read_log(run / R.LOG)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in rows if r["val_psnr"] is not None] == [3, 6]
    assert all(r["images_per_s"] > 0 for r in rows)
    assert (run / R.CURVES).read_bytes()[:4] == b"\x89PNG"


def test_resume_gives_the_same_loss_curve_as_an_uninterrupted_run(folder, tmp_path):
    Trainer(_config(folder, tmp_path / "a")).fit()
    Trainer(_config(folder, tmp_path / "b", stop_at=3)).fit()
    R.append_log(tmp_path / "b" / R.LOG, {"step": 4, "loss": 9.0, "lr": 0, "images_per_s": 1, "wall_s": 1,
                                          "val_psnr": None})  # logged after the checkpoint, then killed
    Trainer(_config(folder, tmp_path / "b")).fit(resume=True)
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    a, b = _ckpt(tmp_path / "a")["model"], _ckpt(tmp_path / "b")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_more_steps_extends_the_run(folder, tmp_path):
    Trainer(_config(folder, tmp_path / "r", steps=4)).fit()
    result = Trainer(_config(folder, tmp_path / "r", steps=6)).fit(resume=True)
    assert result.step == 6 and [r["step"] for r in read_log(tmp_path / "r" / R.LOG)][-1] == 6


def test_rampdown_extension_is_exact_before_the_rampdown():
    short, long = TrainConfig(steps=1000, rampdown=0.3, warmup=10), TrainConfig(steps=3000, rampdown=0.3, warmup=10)
    assert all(learning_rate(s, short) == learning_rate(s, long) for s in range(700))
    assert learning_rate(999, short) < 0.01 * short.lr < learning_rate(999, long)
    assert learning_rate(0, short) == pytest.approx(short.lr / 10)
    cos = TrainConfig(steps=100, schedule="cosine")
    assert learning_rate(0, cos) == cos.lr and learning_rate(50, cos) == pytest.approx(cos.lr / 2)


@pytest.mark.parametrize("change,named", [({"model": "n2n-unet"}, "model"), ({"lr": 0.5}, "lr"),
                                          ({"noise": "gaussian:10"}, "noise")])
def test_resume_of_another_model_or_config_is_refused(folder, tmp_path, change, named):
    Trainer(_config(folder, tmp_path / "r", steps=2)).fit()
    before = (tmp_path / "r" / R.CHECKPOINT).read_bytes()
    cfg = _config(folder, tmp_path / "r", steps=4, **change)
    with pytest.raises(TrainingError, match=rf"cannot resume.*{named}: .*\(checkpoint\) vs"):
        Trainer(cfg).fit(resume=True)
    assert (tmp_path / "r" / R.CHECKPOINT).read_bytes() == before


def test_new_run_in_a_used_folder_and_resume_without_checkpoint(folder, tmp_path):
    Trainer(_config(folder, tmp_path / "r", steps=1)).fit()
    with pytest.raises(InputError, match="--resume"):
        Trainer(_config(folder, tmp_path / "r", steps=1)).fit()
    with pytest.raises(InputError, match="nothing to resume"):
        Trainer(_config(folder, tmp_path / "new", steps=1)).fit(resume=True)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(folder, tmp_path):
    cfg = _config(folder, tmp_path / "r", steps=10, checkpoint_every=2)
    trainer = Trainer(cfg)
    real = trainer.loss_fn

    def loss(pred, target, **kw):
        return real(pred, target, **kw) * (float("nan") if trainer.step == 4 else 1.0)

    trainer.loss_fn = loss
    with pytest.raises(TrainingError, match=r"loss became nan at step 5.*last good checkpoint"):
        trainer.fit()
    ckpt = _ckpt(tmp_path / "r")
    assert ckpt["step"] == 4 and all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(folder, tmp_path, monkeypatch):
    Trainer(_config(folder, tmp_path / "r", stop_at=3)).fit()
    good = (tmp_path / "r" / R.CHECKPOINT).read_bytes()

    def full_disk(obj, path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(T.torch, "save", full_disk)
    with pytest.raises(TrainingError, match=r"No space left on device.*previous checkpoint .* is intact"):
        Trainer(_config(folder, tmp_path / "r")).fit(resume=True)
    assert (tmp_path / "r" / R.CHECKPOINT).read_bytes() == good
    assert sorted(p.name for p in (tmp_path / "r").iterdir() if p.name.startswith("."))  == []


def test_sigterm_stops_cleanly_with_a_checkpoint(folder, tmp_path):
    trainer = Trainer(_config(folder, tmp_path / "r", steps=50, checkpoint_every=100))
    step = trainer.train_step

    def step_then_signal():
        loss = step()
        if trainer.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    trainer.train_step = step_then_signal
    result = trainer.fit()
    assert result.step == 2 and _ckpt(tmp_path / "r")["step"] == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_clean_targets_and_pair_sources_train(folder, tmp_path):
    Trainer(_config(folder, tmp_path / "c", target="clean", steps=2)).fit()
    a = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    torch.save((a, a.flip(-1)), tmp_path / "p.pkl")
    res = Trainer(_config(folder, tmp_path / "p", data="pkl", pkl=str(tmp_path / "p.pkl"), crop=None,
                          steps=2, train_dir=None)).fit()
    assert res.step == 2 and res.val_psnr is not None
    assert _ckpt(tmp_path / "p")["model"]["head.weight"].shape[0] == 3


def test_pair_folders_train(tmp_path):
    for side, off in (("a", 0), ("b", 100)):
        (tmp_path / side).mkdir()
        for i in range(4):
            write_image(tmp_path / side / f"s{i}.png", _smooth(i + off))
    cfg = _config(tmp_path / "a", tmp_path / "r", data="pairs", target_dir=str(tmp_path / "b"), steps=2, val_count=1)
    assert Trainer(cfg).fit().step == 2


def test_bad_options_and_channel_mismatch(folder, tmp_path):
    with pytest.raises(InputError, match="schedule"):
        Trainer(_config(folder, tmp_path / "r", schedule="linear"))
    with pytest.raises(InputError, match="needs --pkl"):
        Trainer(_config(folder, tmp_path / "r", data="pkl"))
    with pytest.raises(InputError, match="for 3-channel images but the data has 1"):
        Trainer(_config(folder, tmp_path / "r", model="n2n-unet-color", model_kwargs={}))
    with pytest.raises(InputError, match="unknown training option"):
        TrainConfig.from_dict({"stepz": 3})


def test_export_weights_and_model_card(folder, tmp_path):
    Trainer(_config(folder, tmp_path / "r", steps=6, stop_at=3)).fit()
    path = export_weights(tmp_path / "r", "tiny", weights_dir=tmp_path / "w", command="denoise train --config c.json",
                          note="stopped early")
    card = json.loads((tmp_path / "w" / "tiny.json").read_text())
    assert card["note"] == "stopped early"
    assert card["training"]["steps"] == 3 and card["status"] == "interim: step 3 of 6"
    assert card["reproduce"] == "denoise train --config c.json --stop-at 3"
    assert card["validation"]["psnr_db"] == pytest.approx(_ckpt(tmp_path / "r")["last_val_psnr"])
    assert card["validation"]["at_step"] == 3
    for key in ("data", "noise", "hardware"):
        assert card[key]
    # the training's own clock, as the checkpoint keeps it (a tiny run may round to 0.0 s)
    assert card["wall_time_s"] == round(float(_ckpt(tmp_path / "r")["elapsed_s"]), 1) >= 0
    model = create_model("unet-small", weights=path, channels=1, features=4)
    state = _ckpt(tmp_path / "r")["model"]
    assert all(torch.equal(model.state_dict()[k], state[k]) for k in state)


def test_cli_config_file_flags_and_errors(folder, tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model": "unet-small", "model_kwargs": {"features": 4}, "train_dir": str(folder),
                               "val_count": 2, "crop": 16, "batch_size": 2, "steps": 50,
                               "threads": 1, "plot": False}))
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--steps", "2", "--out", str(out), "--no-progress"]) == 0
    saved = json.loads((out / R.CONFIG).read_text())
    assert saved["steps"] == 2 and saved["batch_size"] == 2 and saved["progress"] is False
    assert (out / "command.txt").read_text().startswith("denoise train ")
    (tmp_path / "empty").mkdir()
    assert main(["train", "--config", str(cfg), "--train-dir", str(tmp_path / "empty"),
                 "--out", str(tmp_path / "r2")]) == 2
    assert "denoise: error: training folder" in capsys.readouterr().err
    cfg.write_text('{"stepz": 1}')
    assert main(["train", "--config", str(cfg)]) == 2
    assert main(["train", "--config", str(tmp_path / "missing.json")]) == 2


@pytest.mark.slow
def test_training_improves_psnr_on_real_images(data_root, tmp_path):
    """A short noisy-target run on Train400 beats the noisy input on held-out images."""
    cfg = TrainConfig(model="n2n-unet", model_kwargs={"features": 16, "residual": True},
                      train_dir=str(data_root / "Train400"), noise="gaussian:25", val_count=4, val_crop=64,
                      crop=32, batch_size=8, steps=150, checkpoint_every=150, lr=1e-3, out=str(tmp_path / "r"),
                      progress=False, plot=False, threads=1)
    trainer = Trainer(cfg)
    noisy = torch.cat([T.psnr(n.clamp(0, 1), c) for n, c in trainer.data.validation()]).mean()
    result = trainer.fit()
    assert result.val_psnr > float(noisy) + 3


@pytest.mark.parametrize("noise,loss", [("bernoulli:0.5", "masked_l2_loss"), ("impulse:0.3", "AnnealedL0Loss"),
                                        ("text:0.2", "l1_loss"), ("poisson:30", "l2_loss")])
def test_loss_is_matched_to_the_noise(folder, tmp_path, noise, loss):
    trainer = Trainer(_config(folder, tmp_path / "r", noise=noise, steps=1, l0_floor=0.2))
    name = getattr(trainer.loss_fn, "__name__", type(trainer.loss_fn).__name__)
    assert name == loss
    if loss == "AnnealedL0Loss":
        assert trainer.loss_fn.floor == 0.2
    assert trainer.fit().step == 1


def _spy_loss(trainer):
    """Replace the trainer's loss with a recorder of what it is given."""
    calls = []
    loss = trainer.loss_fn

    def spy(pred, target, *, mask=None, progress=0.0, noisy=None):
        calls.append((target.clone(), None if mask is None else mask.clone()))
        return loss(pred, target, mask=mask, progress=progress, noisy=noisy)

    trainer.loss_fn = spy
    return calls


def test_bernoulli_noisy_targets_train_with_the_targets_mask(folder, tmp_path):
    trainer = Trainer(_config(folder, tmp_path / "r", noise="bernoulli:0.5", steps=2))
    assert trainer.config.loss_name() == "masked_l2"
    calls = _spy_loss(trainer)
    trainer.fit()
    assert len(calls) == 2
    for target, mask in calls:
        assert mask is not None and mask.shape == (4, 1, 16, 16)
        assert 0.3 < float(mask.mean()) < 0.7
        # the mask is the target's own: its dropped pixels, and only those, are zero
        assert torch.equal(target == 0, (mask == 0).expand_as(target))


@pytest.mark.parametrize("noise", ["bernoulli:0.5", "impulse:0.5", "text:0.25,8-12"])
def test_clean_targets_use_plain_l2_against_the_clean_patch(folder, tmp_path, noise):
    trainer = Trainer(_config(folder, tmp_path / "r", noise=noise, target="clean", steps=1))
    assert trainer.config.loss_name() == "l2" and trainer.loss_fn is T.get_loss("l2")
    state = trainer.generator.get_state()
    calls = _spy_loss(trainer)
    trainer.fit()
    (target, mask), = calls
    g = torch.Generator()
    g.set_state(state)
    (clean,) = random_patches(trainer.data.images, 4, 16, g)  # the batch's crops, before noise
    assert mask is None and torch.equal(target, clean)


def test_folder_data_on_loaded_images_matches_build_data(folder, tmp_path):
    from denoise.training.data import load_folder

    cfg = _config(folder, tmp_path / "r", val_count=2)
    built = T.build_data(cfg)
    _, images = load_folder(folder)
    shared = T.folder_data(cfg, images)
    assert len(shared.images) == len(images) - 2 and len(shared.val_images) == 2
    assert all(torch.equal(a, b) for a, b in zip(shared.images, built.images))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(shared.validation(), built.validation()))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(shared.sample(4, g1).input, built.sample(4, g2).input)


def test_init_widen_starts_a_wider_model_from_a_narrow_run(folder, tmp_path):
    narrow = dict(model="ffdnet", model_kwargs={"features": 8, "layers": 3, "blind": True, "channels": 1})
    Trainer(_config(folder, tmp_path / "narrow", steps=2, **narrow)).fit()
    wide_kwargs = {**narrow["model_kwargs"], "features": 12}
    cfg = _config(folder, tmp_path / "wide", steps=2, model="ffdnet", model_kwargs=wide_kwargs,
                  init=str(tmp_path / "narrow"), init_widen=True)
    from denoise.models.user import model_from_path
    from denoise.training.build import build_model

    old = model_from_path(str(tmp_path / "narrow"))[1].eval()
    new = build_model(cfg, 1).eval()
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(old(x), new(x))  # the same function before any step
    assert sum(p.numel() for p in new.parameters()) > sum(p.numel() for p in old.parameters())
    assert Trainer(cfg).fit().step == 2
    trained = _ckpt(tmp_path / "wide")["model"]
    first = next(k for k in trained if k.endswith("weight") and trained[k].dim() == 4)
    assert trained[first].shape[0] == 12
    # without init_widen the shapes do not fit: a clear error naming the weights
    from denoise.errors import ModelError

    with pytest.raises(ModelError, match="do not fit"):
        build_model(_config(folder, tmp_path / "w2", model="ffdnet", model_kwargs=wide_kwargs,
                            init=str(tmp_path / "narrow")), 1)
    with pytest.raises(InputError, match="--init-widen needs --init"):
        _config(folder, tmp_path / "w3", init_widen=True).validate()
    with pytest.raises(ModelError, match="cannot be embedded"):  # narrower than the init
        build_model(_config(folder, tmp_path / "w4", model="ffdnet", init=str(tmp_path / "wide"),
                            init_widen=True, model_kwargs=narrow["model_kwargs"]), 1)


def test_init_deepen_starts_a_deeper_model_from_a_shallow_run(folder, tmp_path):
    from denoise.errors import ModelError
    from denoise.models.user import model_from_path
    from denoise.training.build import build_model

    shallow = {"features": 8, "layers": 4, "blind": True, "channels": 1}
    Trainer(_config(folder, tmp_path / "shallow", steps=3, model="ffdnet", model_kwargs=shallow)).fit()
    deep = {**shallow, "layers": 7}
    cfg = _config(folder, tmp_path / "deep", steps=2, model="ffdnet", model_kwargs=deep,
                  init=str(tmp_path / "shallow"), init_deepen=True)
    trainer = Trainer(cfg)
    new = trainer.model
    old = model_from_path(str(tmp_path / "shallow"))[1].eval()
    assert len(new.body) == len(old.body) + 9  # three conv+BN+ReLU blocks inserted
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        new.eval()
        assert torch.allclose(old(x), new(x), atol=1e-5)  # the same function in inference
        assert not torch.allclose(old(x), x, atol=1e-3)  # (which is not the identity)
        new.train()
    dirac = [m for m in new.body if isinstance(m, torch.nn.Conv2d)][2]  # the first inserted one
    assert dirac.weight[:, :, 1, 1].diagonal().eq(1).all() and dirac.weight.abs().sum() == 8
    assert trainer.fit().step == 2
    # impossible combinations: one-line errors naming the problem
    with pytest.raises(ModelError, match="not more than"):
        build_model(_config(folder, tmp_path / "d2", model="ffdnet", model_kwargs=shallow,
                            init=str(tmp_path / "shallow"), init_deepen=True), 1, trainer.data)
    with pytest.raises(ModelError, match="widths differ"):
        build_model(_config(folder, tmp_path / "d3", model="ffdnet", model_kwargs={**deep, "features": 12},
                            init=str(tmp_path / "shallow"), init_deepen=True), 1, trainer.data)
    with pytest.raises(InputError, match="--init-deepen needs --init"):
        _config(folder, tmp_path / "d4", init_deepen=True).validate()
    with pytest.raises(InputError, match="cannot be combined"):
        _config(folder, tmp_path / "d5", init=str(tmp_path / "shallow"), init_deepen=True,
                init_widen=True).validate()


def test_every_shipped_training_config_parses_and_validates():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.json"))
    assert len(configs) >= 20
    for path in configs:
        cfg = TrainConfig.from_file(path)
        cfg.validate()  # raises InputError naming the option
        assert cfg.out.startswith("runs/"), path  # never into the shipped weights or training-state
