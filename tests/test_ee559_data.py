"""The rebuilt EE-559 course data: shapes, noise level, disjoint splits, determinism, CLI."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch

from denoise.cli import main
from denoise.ee559 import data as D
from denoise.errors import DenoiseError, ImageReadError, InputError, OutputError
from denoise.io import write_image


@pytest.fixture(scope="module")
def photos(tmp_path_factory, request):
    """40 CBSD432 photos linked into a folder (reading all 432 would make the tests slow)."""
    root = request.getfixturevalue("data_root")
    source = root / "CBSD432"
    if not source.is_dir():
        pytest.skip(f"CBSD432 not found in {root}")
    folder = tmp_path_factory.mktemp("cbsd40")
    for path in sorted(source.iterdir())[::11][:40]:
        (folder / path.name).symlink_to(path)
    return folder


@pytest.fixture(scope="module")
def small(photos):
    return D.build_ee559_data(photos, n_train=300, n_val=200, seed=3)


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def test_shapes_and_dtypes(small):
    for t, n in ((small.train_input, 300), (small.train_target, 300), (small.val_input, 200),
                 (small.val_target, 200)):
        assert t.dtype == torch.uint8 and tuple(t.shape) == (n, 3, 32, 32)


def test_noisy_validation_psnr_is_the_course_figure(small):
    value = D.course_psnr(small.val_input, small.val_target)
    assert abs(value - 20.7) < 0.1


def test_training_views_carry_the_same_noise_level(small):
    # Two independent views differ by noise of variance 2 sigma^2: 3 dB below one view.
    pair_psnr = D.course_psnr(small.train_input, small.train_target)
    expected = 20 * torch.log10(torch.tensor(1 / (2 ** 0.5 * small.sigma))).item()  # 0-1 scale
    assert abs(pair_psnr - expected) < 0.5
    assert not torch.equal(small.train_input, small.train_target)


def test_validation_images_are_held_out(small, photos):
    names = sorted(p.name for p in photos.iterdir())
    assert set(small.train_images).isdisjoint(small.val_images)
    assert small.val_images == names[-4:]  # the last 10 % by name
    assert small.train_images == names[:-4]


def test_same_seed_same_data_other_seed_other_data(photos, small):
    again = D.build_ee559_data(photos, n_train=300, n_val=200, seed=3)
    other = D.build_ee559_data(photos, n_train=300, n_val=200, seed=4)
    for name in ("train_input", "train_target", "val_input", "val_target"):
        assert _digest(getattr(again, name)) == _digest(getattr(small, name))
        assert _digest(getattr(other, name)) != _digest(getattr(small, name))


def test_separate_validation_folder(photos, tmp_path):
    val = tmp_path / "val"
    val.mkdir()
    for i in range(2):
        write_image(val / f"v{i}.png", torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(i)))
    built = D.build_ee559_data(photos, val_source=val, n_train=10, n_val=20, seed=0)
    assert built.val_images == ["v0.png", "v1.png"] and len(built.train_images) == 40
    with pytest.raises(InputError, match="shares"):
        D.split_sources(photos, photos)


def test_files_load_with_plain_torch_load_and_are_reproducible(small, tmp_path):
    D.write_ee559_data(tmp_path / "a", small)
    D.write_ee559_data(tmp_path / "b", small)
    for name in (D.TRAIN_FILE, D.VAL_FILE):
        a, b = (tmp_path / d / name for d in "ab")
        assert a.read_bytes() == b.read_bytes()
        first, second = torch.load(a)
        assert isinstance(first, torch.Tensor) and first.dtype == torch.uint8
    val_input, val_target = D.load_course_pair(tmp_path / "a" / D.VAL_FILE)
    assert torch.equal(val_input, small.val_input) and torch.equal(val_target, small.val_target)
    recipe = json.loads((tmp_path / "a" / D.RECIPE_FILE).read_text())
    assert recipe["seed"] == 3 and abs(recipe["sigma_255"] - 255 * small.sigma) < 1e-3  # file: 0-255
    with pytest.raises(OutputError, match="--force"):
        D.write_ee559_data(tmp_path / "a", small)


def test_cli_writes_and_refuses_to_overwrite(photos, tmp_path, capsys):
    args = ["data", "ee559", "--source", str(photos), "--out", str(tmp_path / "d"),
            "--n-train", "20", "--n-val", "10"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "noisy validation PSNR" in out
    recipe = json.loads((tmp_path / "d" / D.RECIPE_FILE).read_text())
    printed = float(out.split("noise sigma ")[1].split("/255")[0])  # 0-255 at the command line
    assert abs(printed - recipe["sigma_255"]) < 0.006
    assert (tmp_path / "d" / D.TRAIN_FILE).is_file() and (tmp_path / "d" / D.VAL_FILE).is_file()
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"n_train": 0}, "n_train"),
    ({"n_val": 1.5}, "n_val"),
    ({"target_psnr": 5.0}, "target_psnr"),
    ({"val_fraction": 1.0}, "val_fraction"),
])
def test_bad_arguments(photos, kwargs, match):
    with pytest.raises(InputError, match=match):
        D.build_ee559_data(photos, **kwargs)


def test_missing_or_unsuitable_sources(tmp_path):
    with pytest.raises(ImageReadError):
        D.build_ee559_data(tmp_path / "missing")
    write_image(tmp_path / "tiny0.png", torch.rand(1, 3, 40, 40))
    write_image(tmp_path / "tiny1.png", torch.rand(1, 3, 40, 40))
    with pytest.raises(InputError, match="64x64"):
        D.build_ee559_data(tmp_path, n_train=4, n_val=4)


def test_bad_pair_files(tmp_path):
    torch.save((torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2, 3, 8, 8)), tmp_path / "x.pkl")
    with pytest.raises(InputError, match="uint8"):
        D.load_course_pair(tmp_path / "x.pkl")
    (tmp_path / "y.pkl").write_bytes(b"not a pickle")
    with pytest.raises(DenoiseError):
        D.load_course_pair(tmp_path / "y.pkl")


def test_noise_level_is_on_the_library_scale():
    clean = torch.full((64, 3, 16, 16), 128, dtype=torch.uint8)
    noisy = D.noisy_uint8(clean, 10 / 255, torch.Generator().manual_seed(0))
    assert abs((noisy.float() - clean.float()).std().item() - 10) < 0.2
    with pytest.raises(InputError, match="0-1 scale"):
        D.noisy_uint8(clean, 10.0, torch.Generator().manual_seed(0))  # a 0-255 value
    assert 0 < D.calibrate_sigma(clean[:8], 30.0, seed=0) < 1
