"""The EE-559 course code on the library's pieces: symmetries, schedule, registry, writers."""
from __future__ import annotations

import os

import pytest
import torch

from denoise.ee559 import course, project1
from denoise.errors import InputError
from denoise.models.registry import create_model
from denoise.symmetries import SYMMETRIES, transform
from denoise.training.config import TrainConfig, learning_rate


def test_augment_applies_one_of_the_eight_symmetries_to_both_views():
    x = torch.arange(6 * 3 * 5 * 5, dtype=torch.float32).view(6, 3, 5, 5)
    inp, tgt = course.augment(x, x + 1000, torch.Generator().manual_seed(0))
    for i in range(6):
        a, b = (inp[i], tgt[i]) if inp[i].min() < 1000 else (tgt[i], inp[i])  # swapped at random
        assert torch.equal(b, a + 1000)
        assert any(torch.equal(a, transform(x[i], s)) for s in SYMMETRIES)


def test_augment_only_flips_non_square_images():
    x = torch.rand(32, 1, 3, 5)
    inp, _ = course.augment(x, x.clone(), torch.Generator().manual_seed(1))
    assert inp.shape == x.shape
    for i in range(32):
        assert any(torch.equal(inp[i], x[i].flip(d) if d else x[i]) for d in ((), (-1,), (-2,), (-1, -2)))


def test_learning_rates_are_the_trainers(monkeypatch):
    model = project1.Model(batch_size=4, lr=2e-3)
    seen = []
    monkeypatch.setattr(model, "_train_step", lambda inp, tgt, lr: seen.append(lr) or 0.0)
    x = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    model.train(x, x, num_epochs=2)  # 3 steps per epoch
    config = TrainConfig(lr=2e-3, schedule="rampdown", rampdown=0.3, steps=6)
    assert seen == [learning_rate(step, config) for step in range(6)]
    with pytest.raises(InputError, match="rampdown"):
        course.CourseModel(batch_size=1, lr=1e-3, rampdown=2.0)


def test_project1_is_the_registered_network():
    model = project1.Model()
    model.load_pretrained_model()
    registered = create_model(project1.REGISTERED_NAME)
    assert type(model.net) is type(registered)
    ours, theirs = model.state_dict(), registered.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_weights_are_written_with_a_plain_files_permissions(tmp_path):
    """One safetensors writer (models.registry.save_weights) for every export."""
    from safetensors.torch import load_file

    from denoise.models.registry import save_weights

    state = {"w": torch.arange(4.0)}
    path = save_weights(tmp_path / "x.safetensors", state, {"name": "x"})
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert torch.equal(load_file(str(path))["w"], state["w"])


def test_project2_weights_run_by_name_like_the_course_model():
    """Every shipped weight file is reachable by name: ee559-project2 is the scratch network."""
    from denoise.ee559 import project2
    from denoise.inference import restore

    x = torch.rand(1, 3, 45, 61)
    course = project2.Model()
    course.load_pretrained_model()
    named = restore(x, "ee559-project2", tile=None).output
    assert torch.equal(named, course._forward(x).clamp(0, 1))
    torch.testing.assert_close(restore(x, "ee559-project2", tile=16).output, named, atol=1e-6, rtol=0)
