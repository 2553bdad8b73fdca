"""Training data sources: folders + noise, noisy pairs, EE-559 .pkl pairs, augmentation."""
import pickle

import pytest
import torch

from denoise.errors import ImageReadError, InputError
from denoise.io import write_image
from denoise.noise import Bernoulli, parse_noise
from denoise.training.data import (
    Batch,
    CleanFolderData,
    PairData,
    load_folder,
    load_pairs,
    load_pkl_pairs,
    pair_paths,
    random_patches,
    split_holdout,
)
from denoise.training.config import TrainConfig


def _write(folder, name, h=20, w=24, c=1, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    x = torch.rand(1, c, h, w, generator=torch.Generator().manual_seed(seed))
    write_image(folder / name, x)
    return folder / name


def test_random_patches_shapes_and_determinism():
    images = [torch.rand(1, 30, 40), torch.rand(1, 25, 25)]
    a = random_patches(images, 6, 16, torch.Generator().manual_seed(3))
    b = random_patches(images, 6, 16, torch.Generator().manual_seed(3))
    assert a[0].shape == (6, 1, 16, 16) and torch.equal(a[0], b[0])


def test_random_patches_transform_pairs_identically_and_use_all_symmetries():
    img = torch.arange(64.0).view(1, 8, 8)
    seen = set()
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        a, b = random_patches([(img, img + 1000)], 8, 8, g)
        assert torch.equal(b - a, torch.full_like(a, 1000.0))
        seen.update(tuple(p.flatten()[:2].tolist()) for p in a)  # first two pixels identify the symmetry
    assert len(seen) == 8


def test_random_patches_crop_larger_than_image():
    with pytest.raises(InputError, match="crop"):
        random_patches([torch.rand(1, 10, 10)], 2, 16, torch.Generator())


def test_clean_folder_noisy_targets_are_independent_draws():
    images = [torch.full((1, 32, 32), 0.5)]
    data = CleanFolderData(images, parse_noise("gaussian:25"), crop=16)
    batch = data.sample(4, torch.Generator().manual_seed(0))
    assert isinstance(batch, Batch) and batch.input.shape == batch.target.shape == (4, 1, 16, 16)
    n_in, n_tg = batch.input - 0.5, batch.target - 0.5
    assert abs(float(n_in.std()) - 25 / 255) < 0.01 and abs(float(n_tg.std()) - 25 / 255) < 0.01
    corr = float((n_in * n_tg).mean() / (n_in.std() * n_tg.std()))
    assert abs(corr) < 0.1


def test_clean_targets_and_fixed_validation():
    images = [torch.rand(1, 32, 32)]
    val = [torch.rand(1, 40, 40)]
    data = CleanFolderData(images, parse_noise("gaussian:10"), target="clean", crop=None,
                           val_images=val, val_noise=parse_noise("gaussian:25"), val_crop=24)
    batch = data.sample(2, torch.Generator().manual_seed(0))
    assert torch.allclose(batch.target.sum((1, 2, 3)), images[0].sum().expand(2))  # whole, rotated
    v1, v2 = data.validation(), data.validation()
    assert torch.equal(v1[0][0], v2[0][0]) and v1[0][1].shape == (1, 1, 24, 24)
    assert abs(float((v1[0][0] - v1[0][1]).std()) - 25 / 255) < 0.01


def test_bernoulli_targets_come_with_their_mask():
    data = CleanFolderData([torch.rand(1, 16, 16) + 0.1], Bernoulli(0.5), crop=16)
    batch = data.sample(3, torch.Generator().manual_seed(0))
    assert batch.mask is not None and batch.mask.shape == (3, 1, 16, 16)
    assert torch.equal(batch.target == 0, (batch.mask == 0).expand_as(batch.target))


def test_load_folder_gray_and_color(tmp_path):
    _write(tmp_path / "g", "a.png")
    _write(tmp_path / "g", "b.png", seed=1)
    names, imgs = load_folder(tmp_path / "g")
    assert names == ["a.png", "b.png"] and imgs[0].shape == (1, 20, 24)
    _write(tmp_path / "c", "a.png", c=3)
    assert load_folder(tmp_path / "c")[1][0].shape[0] == 3
    assert load_folder(tmp_path / "c", gray=True)[1][0].shape[0] == 1


def test_empty_missing_and_unreadable_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no images"):
        load_folder(tmp_path / "empty")
    with pytest.raises(InputError, match="not found"):
        load_folder(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"not a png")
    with pytest.raises(ImageReadError):
        load_folder(tmp_path / "bad")


def test_pairs_from_two_folders_matched_by_name(tmp_path):
    for i, name in enumerate(["s1.png", "s2.png"]):
        _write(tmp_path / "a", name, seed=i)
        _write(tmp_path / "b", name, seed=10 + i)
    pairs = pair_paths(tmp_path / "a", tmp_path / "b")
    assert [(p.name, q.parent.name) for p, q in pairs] == [("s1.png", "b"), ("s2.png", "b")]
    loaded = load_pairs(pairs)
    data = PairData(loaded[:1], crop=8, val_pairs=loaded[1:])
    batch = data.sample(2, torch.Generator().manual_seed(0))
    assert batch.input.shape == (2, 1, 8, 8) and len(data.validation()) == 1


def test_pairs_with_a_naming_rule(tmp_path):
    for stem in ["x", "y"]:
        _write(tmp_path, f"{stem}_a.png")
        _write(tmp_path, f"{stem}_b.png", seed=1)
    pairs = pair_paths(tmp_path, input_suffix="_a", target_suffix="_b")
    assert [(p.name, q.name) for p, q in pairs] == [("x_a.png", "x_b.png"), ("y_a.png", "y_b.png")]
    with pytest.raises(InputError, match="naming rule"):
        pair_paths(tmp_path)


def test_unmatched_names_and_different_sizes(tmp_path):
    _write(tmp_path / "a", "s1.png")
    _write(tmp_path / "a", "s2.png")
    _write(tmp_path / "b", "s1.png", h=21)
    with pytest.raises(InputError, match=r"unmatched.*s2"):
        pair_paths(tmp_path / "a", tmp_path / "b")
    (tmp_path / "a" / "s2.png").unlink()
    with pytest.raises(InputError, match="sizes differ: s1.png is 24x20, s1.png is 24x21"):
        load_pairs(pair_paths(tmp_path / "a", tmp_path / "b"))


def _pkl(path, a, b):
    torch.save((a, b), path)
    return path


def test_pkl_pairs(tmp_path):
    a = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    b = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    x, y = load_pkl_pairs(_pkl(tmp_path / "t.pkl", a, b))
    assert x.dtype == torch.float32 and torch.equal(x * 255, a.float()) and torch.equal(y * 255, b.float())


@pytest.mark.parametrize("a,b,match", [
    (torch.zeros(4, 3, 32, 32), torch.zeros(4, 3, 32, 32, dtype=torch.uint8), "dtype torch.float32"),
    (torch.zeros(4, 1, 32, 32, dtype=torch.uint8), torch.zeros(4, 1, 32, 32, dtype=torch.uint8), r"\(N, 3, 32, 32\)"),
    (torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.zeros(5, 3, 32, 32, dtype=torch.uint8), "differ in shape"),
])
def test_pkl_wrong_shape_or_dtype(tmp_path, a, b, match):
    with pytest.raises(InputError, match=match):
        load_pkl_pairs(_pkl(tmp_path / "t.pkl", a, b))


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pkl_not_tensors_or_with_code(tmp_path):
    torch.save({"a": 1}, tmp_path / "d.pkl")
    with pytest.raises(InputError, match="tuple of two tensors"):
        load_pkl_pairs(tmp_path / "d.pkl")
    with open(tmp_path / "e.pkl", "wb") as f:
        pickle.dump((_Evil(), _Evil()), f, protocol=2)
    with pytest.raises(ImageReadError, match="cannot load"):
        load_pkl_pairs(tmp_path / "e.pkl")
    with pytest.raises(InputError, match="not found"):
        load_pkl_pairs(tmp_path / "missing.pkl")


def test_split_holdout():
    assert split_holdout(10, 2, "images") == 8
    with pytest.raises(InputError, match="cannot hold out 10 of 10"):
        split_holdout(10, 10, "images")


def _stripes(period: int, size: int = 96) -> torch.Tensor:
    """A (3, size, size) image of vertical stripes, ``period`` pixels per cycle."""
    x = 0.5 + 0.4 * torch.sin(torch.arange(size) * (2 * torch.pi / period))
    return x.expand(3, size, size).clone()


def test_zoomed_patches_magnify_content_and_are_seeded():
    images = [_stripes(8)]
    def freq(p):  # mean absolute step between neighbours, across the stripes or along them
        return torch.maximum((p[..., 1:] - p[..., :-1]).abs().mean(), (p[..., 1:, :] - p[..., :-1, :]).abs().mean())
    plain = random_patches(images, 32, 32, torch.Generator().manual_seed(0), zoom=1.0)[0]
    zoomed = random_patches(images, 32, 32, torch.Generator().manual_seed(0), zoom=4.0)[0]
    again = random_patches(images, 32, 32, torch.Generator().manual_seed(0), zoom=4.0)[0]
    assert plain.shape == zoomed.shape == (32, 3, 32, 32)
    assert torch.equal(zoomed, again)
    assert zoomed.min() >= 0 and zoomed.max() <= 1
    # factor 1 is a plain crop: the stripes' neighbour steps stay; zoom up to 4 (about 2 on
    # average in log scale) slows them by about that much
    assert float(freq(zoomed)) < 0.7 * float(freq(plain))
    # zoom 1 draws exactly the crops of random_patches (same order of draws)
    (ref,) = random_patches(images, 32, 32, torch.Generator().manual_seed(0))
    assert torch.allclose(plain, ref)


def test_zoom_in_folder_data_and_config():
    images = [torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(k)) for k in range(3)]
    data = CleanFolderData(images, parse_noise("gaussian:25"), target="clean", crop=16, zoom=2,
                           val_images=images[:1], val_crop=16)
    batch = data.sample(4, torch.Generator().manual_seed(0))
    assert batch.input.shape == batch.target.shape == (4, 3, 16, 16)
    assert data.validation()[0][1].shape == (1, 3, 16, 16)  # validation is not zoomed
    with pytest.raises(InputError, match="zoom"):
        CleanFolderData(images, parse_noise("gaussian:25"), crop=16, zoom=0.5)
    with pytest.raises(InputError, match="zoom"):
        CleanFolderData(images, parse_noise("gaussian:25"), crop=None, zoom=2)
    for bad in (dict(zoom=0.5), dict(zoom=9.0), dict(zoom=2.0, data="pairs"), dict(zoom=2.0, crop=None)):
        cfg = TrainConfig(train_dir="x", **bad)
        with pytest.raises(InputError, match="--zoom"):
            cfg.validate()
    TrainConfig(train_dir="x", zoom=2.0).validate()
