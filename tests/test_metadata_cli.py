"""`denoise run` keeps a photo's EXIF and ICC profile (orientation reset to 1), and
`--strip-metadata` leaves them out."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from denoise.cli import main

_MAKE, _MODEL, _DATETIME, _ORIENTATION = 0x010F, 0x0110, 0x0132, 0x0112
_CAMERA = {_MAKE: "Acme", _MODEL: "Shooter 3000", _DATETIME: "2024:05:06 07:08:09"}


@functools.lru_cache(maxsize=1)
def _srgb_profile() -> bytes:
    image_cms = pytest.importorskip("PIL.ImageCms")
    return image_cms.ImageCmsProfile(image_cms.createProfile("sRGB")).tobytes()


def _photo(path: Path) -> Path:
    """A 24 x 32 noisy photo with a camera's EXIF (Orientation 6) and an sRGB profile."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:24, 0:32]
    clean = np.stack([60 + 4 * xx, 80 + 5 * yy, 120 + 2 * (xx + yy)], -1)
    pixels = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    exif = Image.Exif()
    exif.update({**_CAMERA, _ORIENTATION: 6})
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), icc_profile=_srgb_profile())
    return path


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif"])
@pytest.mark.parametrize("strip", [False, True])
def test_run_keeps_or_strips_the_metadata(capsys, tmp_path, suffix, strip):
    source = _photo(tmp_path / f"photo{suffix}")
    out = tmp_path / "out"
    argv = ["run", str(source), "-o", str(out), "--mkdir", "-m", "dct", "-s", "20", "-q"]
    code = main(argv + (["--strip-metadata"] if strip else []))
    err = capsys.readouterr().err
    assert code == 0, err
    with Image.open(out / source.name) as im:
        assert im.size == (24, 32)  # turned upright once
        exif, icc = im.getexif(), im.info.get("icc_profile")
        if strip:
            assert not {_MAKE, _MODEL, _DATETIME, _ORIENTATION} & set(exif) and icc is None
        else:
            assert {tag: exif.get(tag) for tag in _CAMERA} == _CAMERA
            assert exif[_ORIENTATION] == 1 and icc == _srgb_profile()
