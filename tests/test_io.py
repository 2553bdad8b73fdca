"""Image reading and writing: every mode and depth, damaged files, safe writes."""
from __future__ import annotations

import functools
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from denoise import io
from denoise.errors import ImageReadError, ImageWriteError, InputError


def _random(shape, dtype=np.uint8, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)


def _as_array(x: torch.Tensor, alpha: torch.Tensor | None, depth: int) -> np.ndarray:
    """(1, C, H, W) [+ alpha] in [0, 1] -> the integer (H, W[, C]) array it came from."""
    planes = x if alpha is None else torch.cat([x, alpha], dim=1)
    values = (planes[0].permute(1, 2, 0) * (2 ** depth - 1)).round().to(torch.int64).numpy()
    return values[..., 0] if values.shape[-1] == 1 else values


def _png16(pixels: np.ndarray, filters=(0, 1, 2, 3, 4), exif: bytes | None = None) -> bytes:
    """A 16-bit PNG written by this test, independently of the library: row r uses PNG
    filter ``filters[r % len(filters)]`` (none, sub, up, average, paeth)."""
    h, w = pixels.shape[:2]
    c = 1 if pixels.ndim == 2 else pixels.shape[2]
    bpp = 2 * c
    rows = pixels.astype(">u2").reshape(h, w * c).view(np.uint8).astype(int)
    out = []
    for r in range(h):
        kind = filters[r % len(filters)]
        prev = rows[r - 1] if r else np.zeros(w * bpp, int)
        line = bytearray([kind])
        for i, value in enumerate(rows[r]):
            a = rows[r][i - bpp] if i >= bpp else 0
            b = prev[i]
            cc = prev[i - bpp] if i >= bpp else 0
            p = a + b - cc
            paeth = a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - cc) else (b if abs(p - b) <= abs(p - cc) else cc)
            predictor = (0, a, b, (a + b) // 2, paeth)[kind]
            line.append((value - predictor) % 256)
        out.append(bytes(line))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    head = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
    extra = chunk(b"eXIf", exif) if exif else b""
    return (b"\x89PNG\r\n\x1a\n" + head + extra + chunk(b"IDAT", zlib.compress(b"".join(out)))
            + chunk(b"IEND", b""))


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


# ----------------------------------------------------------------------------- reading modes

@pytest.mark.parametrize("mode, shape, channels, has_alpha", [
    ("L", (7, 9), 1, False),
    ("RGB", (7, 9, 3), 3, False),
    ("RGBA", (7, 9, 4), 3, True),
    ("LA", (7, 9, 2), 1, True),
])
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_8bit_modes_read_exactly(tmp_path, mode, shape, channels, has_alpha, suffix):
    pixels = _random(shape)
    path = tmp_path / f"im{suffix}"
    Image.fromarray(pixels).save(path)
    x, info = io.read_image(path)
    assert x.dtype == torch.float32 and x.shape == (1, channels, 7, 9)
    assert (info.bit_depth, info.mode, info.alpha is not None) == (8, "L" if channels == 1 else "RGB", has_alpha)
    assert np.array_equal(_as_array(x, info.alpha, 8), pixels)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_gray_reads_all_bits_and_writes_16bit_back(tmp_path, suffix):
    pixels = _random((6, 5), np.uint16)
    Image.fromarray(pixels).save(tmp_path / f"in{suffix}")
    x, info = io.read_image(tmp_path / f"in{suffix}")
    assert (info.bit_depth, info.mode, x.shape) == (16, "L", (1, 1, 6, 5))
    assert np.array_equal(_as_array(x, None, 16), pixels)
    io.write_image(tmp_path / f"out{suffix}", x, info)
    with Image.open(tmp_path / f"out{suffix}") as im:
        assert im.mode.startswith("I;16")
        assert np.array_equal(np.asarray(im), pixels)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16bit_colour_png_reads_all_bits_for_every_filter(tmp_path, channels):
    pixels = _random((10, 7, channels), np.uint16, seed=channels)
    path = tmp_path / "wide.png"
    path.write_bytes(_png16(pixels))
    x, info = io.read_image(path)
    assert info.bit_depth == 16 and (info.alpha is not None) == (channels in (2, 4))
    assert np.array_equal(_as_array(x, info.alpha, 16), pixels)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16bit_colour_png_round_trip(tmp_path, channels):
    pixels = _random((9, 8, channels), np.uint16, seed=10 + channels)
    (tmp_path / "in.png").write_bytes(_png16(pixels))
    x, info = io.read_image(tmp_path / "in.png")
    io.write_image(tmp_path / "out.png", x, info)
    y, info2 = io.read_image(tmp_path / "out.png")
    assert info2.bit_depth == 16
    assert np.array_equal(_as_array(y, info2.alpha, 16), pixels)
    if channels == 3:  # Pillow's own 8-bit reading of the written file sees the high bytes
        with Image.open(tmp_path / "out.png") as im:
            assert np.array_equal(np.asarray(im), (pixels >> 8).astype(np.uint8))


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_tiff_matches_tifffile(tmp_path, byteorder, compression, channels):
    tifffile = pytest.importorskip("tifffile")
    pixels = _random((6, 9, channels), np.uint16, seed=channels)
    extra = {"extrasamples": ["unassalpha"]} if channels == 4 else {}
    tifffile.imwrite(tmp_path / "in.tif", pixels, byteorder=byteorder, compression=compression,
                     photometric="rgb", **extra)
    x, info = io.read_image(tmp_path / "in.tif")
    assert info.bit_depth == 16 and info.format == "TIFF"
    assert np.array_equal(_as_array(x, info.alpha, 16), pixels)
    io.write_image(tmp_path / "out.tif", x, info)
    assert np.array_equal(tifffile.imread(tmp_path / "out.tif"), pixels)


def test_16bit_tiff_with_separate_planes_is_refused(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "planar.tif", _random((3, 4, 5), np.uint16), planarconfig="separate",
                     photometric="rgb")
    with pytest.raises(ImageReadError, match="separate colour planes"):
        io.read_image(tmp_path / "planar.tif")


def test_palette_image_becomes_rgb(tmp_path):
    im = Image.fromarray(_random((8, 8, 3))).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    im.save(tmp_path / "p.png")
    x, info = io.read_image(tmp_path / "p.png")
    assert info.mode == "RGB" and info.alpha is None
    assert np.array_equal(_as_array(x, None, 8), np.asarray(im.convert("RGB")))


def test_palette_transparency_becomes_alpha(tmp_path):
    im = Image.fromarray(_random((8, 8, 3))).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    im.info["transparency"] = 3
    im.save(tmp_path / "p.png", transparency=3)
    x, info = io.read_image(tmp_path / "p.png")
    assert info.alpha is not None
    assert np.array_equal(info.alpha[0, 0].numpy() == 0, np.asarray(im) == 3)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.fromarray(_random((16, 16, 4)), mode="CMYK").save(tmp_path / "c.jpg")
    x, info = io.read_image(tmp_path / "c.jpg")
    assert (info.mode, info.format, x.shape[1]) == ("RGB", "JPEG", 3)
    with Image.open(tmp_path / "c.jpg") as im:
        assert im.mode == "CMYK"
        assert np.array_equal(_as_array(x, None, 8), np.asarray(im.convert("RGB")))


def test_one_bit_image_becomes_gray(tmp_path):
    Image.fromarray(_random((5, 6)) > 127).save(tmp_path / "b.png")
    x, info = io.read_image(tmp_path / "b.png")
    assert info.mode == "L" and set(x.unique().tolist()) <= {0.0, 1.0}


# ----------------------------------------------------------------------------- orientation

# What a viewer shows for each EXIF orientation, as numpy operations on the stored pixels.
_ORIENTED = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
             5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
             8: lambda a: np.rot90(a, 1)}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation):
    pixels = _random((4, 6, 3))
    Image.fromarray(pixels).save(tmp_path / "o.png", exif=_exif(orientation))
    x, _ = io.read_image(tmp_path / "o.png")
    assert np.array_equal(_as_array(x, None, 8), _ORIENTED[orientation](pixels))
    with Image.open(tmp_path / "o.png") as im:  # the same as Pillow's own transposition
        assert np.array_equal(_as_array(x, None, 8), np.asarray(ImageOps.exif_transpose(im)))


def test_exif_rotated_jpeg(tmp_path):
    pixels = np.kron(_random((4, 6, 3)), np.ones((8, 8, 1), np.uint8))  # flat 8x8 blocks
    Image.fromarray(pixels).save(tmp_path / "r.jpg", exif=_exif(6), quality=100, subsampling=0)
    x, _ = io.read_image(tmp_path / "r.jpg")
    assert x.shape == (1, 3, 48, 32)
    assert np.abs(_as_array(x, None, 8) - np.rot90(pixels, -1)).max() <= 8


def test_exif_orientation_applies_to_16bit_colour(tmp_path):
    pixels = _random((3, 5, 3), np.uint16)
    (tmp_path / "o.png").write_bytes(_png16(pixels, exif=_exif(6)))
    x, _ = io.read_image(tmp_path / "o.png")
    assert np.array_equal(_as_array(x, None, 16), np.rot90(pixels, -1))


# ----------------------------------------------------------------------------- bad inputs

def _png_bytes(shape=(32, 32, 3)) -> bytes:
    path = Path(tempfile.mkdtemp()) / "x.png"
    Image.fromarray(_random(shape)).save(path)
    return path.read_bytes()


def _jpeg_bytes() -> bytes:
    path = Path(tempfile.mkdtemp()) / "x.jpg"
    Image.fromarray(_random((64, 64, 3))).save(path, quality=90)
    return path.read_bytes()


@pytest.mark.parametrize("name, content, reason", [
    ("cut.png", lambda: _png_bytes()[:-400], "truncated"),
    ("cut.jpg", lambda: _jpeg_bytes()[: len(_jpeg_bytes()) // 2], "truncated"),
    ("text.png", lambda: b"this is not an image\n", "not an image"),
    ("empty.png", lambda: b"", "empty"),
    ("tiny.png", lambda: _png_bytes((1, 1, 3)), "too small"),
    ("line.png", lambda: _png_bytes((1, 20)), "too small"),
])
def test_unreadable_files_raise_one_line(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content())
    with pytest.raises(ImageReadError, match=reason) as err:
        io.read_image(path)
    message = str(err.value)
    assert name in message and "\n" not in message


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        io.read_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="folder"):
        io.read_image(tmp_path)


# ----------------------------------------------------------------------------- writing

def test_quantisation_rounds_and_clips(tmp_path):
    values = torch.tensor([-0.5, 0.0, 10.49 / 255, 10.51 / 255, 254.6 / 255, 1.7])
    x = values.view(1, 1, 1, 6).expand(1, 1, 2, 6)
    io.write_image(tmp_path / "q.png", x)
    with Image.open(tmp_path / "q.png") as im:
        levels = np.array(im)
    assert levels[0].tolist() == [0, 0, 10, 11, 255, 255]
    assert torch.equal(io.quantize(x), torch.from_numpy(levels).float()[None, None] / 255)


def test_rgba_alpha_passes_through_untouched(tmp_path):
    pixels = _random((6, 7, 4))
    Image.fromarray(pixels).save(tmp_path / "in.png")
    x, info = io.read_image(tmp_path / "in.png")
    io.write_image(tmp_path / "out.png", 1.0 - x, info)  # the colours change, alpha does not
    with Image.open(tmp_path / "out.png") as im:
        out = np.asarray(im)
    assert im.mode == "RGBA"
    assert np.array_equal(out[..., 3], pixels[..., 3])
    assert np.array_equal(out[..., :3], 255 - pixels[..., :3])


def test_bit_depth_argument_overrides_info(tmp_path):
    x, info = torch.rand(1, 3, 4, 4), io.ImageInfo(bit_depth=16)
    io.write_image(tmp_path / "a.png", x, info, bit_depth=8)
    assert io.read_image(tmp_path / "a.png")[1].bit_depth == 8
    io.write_image(tmp_path / "b.tif", x, None, bit_depth=16)
    y, info_b = io.read_image(tmp_path / "b.tif")
    assert info_b.bit_depth == 16 and torch.equal(y, io.quantize(x, 16))


def test_jpeg_is_8bit_and_drops_alpha_with_a_warning(tmp_path):
    x = torch.rand(1, 3, 16, 16)
    info = io.ImageInfo(bit_depth=16, alpha=torch.ones(1, 1, 16, 16))
    with pytest.warns(UserWarning, match="alpha"):
        io.write_image(tmp_path / "a.jpeg", x, info)
    y, info_out = io.read_image(tmp_path / "a.jpeg")
    assert (info_out.bit_depth, info_out.alpha, info_out.format) == (8, None, "JPEG")
    assert (y - x).abs().mean() < 0.05
    with pytest.raises(ImageWriteError, match="8 bits"):
        io.write_image(tmp_path / "b.jpg", x, bit_depth=16)


def test_no_overwrite_unless_asked(tmp_path):
    path = tmp_path / "x.png"
    io.write_image(path, torch.zeros(1, 1, 4, 4))
    with pytest.raises(ImageWriteError, match="exists"):
        io.write_image(path, torch.ones(1, 1, 4, 4))
    assert io.read_image(path)[0].max() == 0
    io.write_image(path, torch.ones(1, 1, 4, 4), overwrite=True)
    assert io.read_image(path)[0].min() == 1


def test_failed_write_leaves_no_temporary_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "x.png"
    io.write_image(path, torch.zeros(1, 1, 4, 4))

    def broken_save(pixels, target, *args):
        Path(target).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io, "_save", broken_save)
    with pytest.raises(ImageWriteError, match="No space left"):
        io.write_image(path, torch.ones(1, 1, 4, 4), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]
    assert io.read_image(path)[0].max() == 0


def test_missing_output_folder(tmp_path):
    with pytest.raises(ImageWriteError, match="does not exist"):
        io.write_image(tmp_path / "nope" / "x.png", torch.zeros(1, 1, 4, 4))


def _unwritable_folder(tmp_path) -> Path:
    """A folder this process cannot create files in: a read-only one, or (as root, who
    ignores permission bits) a kernel file system that refuses new files."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    for candidate in (Path("/sys"), Path("/proc/self")):
        if candidate.is_dir():
            try:
                fd, name = tempfile.mkstemp(dir=candidate)
            except OSError:
                return candidate
            os.close(fd)
            os.unlink(name)
    pytest.skip("running as root without a folder that refuses writes")


def test_unwritable_folder(tmp_path):
    folder = _unwritable_folder(tmp_path)
    with pytest.raises(ImageWriteError, match="cannot write"):
        io.write_image(folder / "x.png", torch.zeros(1, 1, 4, 4))
    assert not (folder / "x.png").exists()


@pytest.mark.parametrize("path, x, kwargs, error, match", [
    ("x.bmp", torch.zeros(1, 3, 4, 4), {}, ImageWriteError, "unknown image suffix"),
    ("x.png", torch.zeros(2, 3, 4, 4), {}, InputError, "batch of 2"),
    ("x.png", torch.full((1, 3, 4, 4), float("nan")), {}, InputError, "NaN"),
    ("x.png", torch.zeros(1, 3, 4, 4), {"bit_depth": 12}, InputError, "8 or 16"),
    ("x.png", torch.zeros(1, 3, 4, 4), {"info": io.ImageInfo(alpha=torch.ones(1, 1, 3, 3))}, InputError, "alpha"),
    ("x.tif", torch.zeros(1, 1, 4, 4), {"info": io.ImageInfo(bit_depth=16, alpha=torch.ones(1, 1, 4, 4))},
     ImageWriteError, "gray with alpha"),
])
def test_bad_write_arguments(tmp_path, path, x, kwargs, error, match):
    with pytest.raises(error, match=match):
        io.write_image(tmp_path / path, x, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_three_dimensional_input_and_returned_path(tmp_path):
    out = io.write_image(tmp_path / "x.PNG", torch.rand(3, 5, 4))
    assert out == tmp_path / "x.PNG" and io.read_image(out)[0].shape == (1, 3, 5, 4)


# ----------------------------------------------------------------------------- metadata

_MAKE, _MODEL, _DATETIME, _ORIENTATION, _EXIF_IFD, _TAKEN = 0x010F, 0x0110, 0x0132, 0x0112, 0x8769, 0x9003
_CAMERA = {_MAKE: "Acme", _MODEL: "Shooter 3000", _DATETIME: "2024:05:06 07:08:09"}


@functools.lru_cache(maxsize=1)
def _srgb_profile() -> bytes:
    """Pillow's sRGB profile, made once (a profile's header holds the time it was made)."""
    image_cms = pytest.importorskip("PIL.ImageCms")
    return image_cms.ImageCmsProfile(image_cms.createProfile("sRGB")).tobytes()


def _photo_exif(orientation: int = 6) -> bytes:
    """A camera's EXIF: make, model, date, orientation and, in the Exif IFD, the date taken."""
    exif = Image.Exif()
    exif.update(_CAMERA)
    exif[_ORIENTATION] = orientation
    exif.get_ifd(_EXIF_IFD).update({_TAKEN: "2024:05:06 07:08:00", 0xA002: 6, 0xA003: 4})
    return exif.tobytes()


def _photo(path: Path, pixels: np.ndarray, **save) -> Path:
    """``pixels`` saved with a camera's EXIF (Orientation 6: turn 90 degrees clockwise) and
    an sRGB profile; a JPEG at top quality in flat 8x8 blocks, so values barely move."""
    extra = {"quality": 100, "subsampling": 0} if path.suffix == ".jpg" else {}
    Image.fromarray(pixels).save(path, exif=_photo_exif(), icc_profile=_srgb_profile(), **extra, **save)
    return path


def _metadata_of(path: Path) -> tuple[dict, dict, bytes | None]:
    """What Pillow finds in a file: the EXIF IFD0 tags, the Exif IFD and the ICC profile."""
    with Image.open(path) as im:
        exif = im.getexif()
        return dict(exif), dict(exif.get_ifd(_EXIF_IFD)), im.info.get("icc_profile")


_OUTPUTS = [(".jpg", None), (".png", 8), (".png", 16), (".tif", 8), (".tif", 16)]


@pytest.mark.parametrize("suffix, bit_depth", _OUTPUTS)
def test_exif_and_icc_profile_are_carried_over(tmp_path, suffix, bit_depth):
    pixels = np.kron(_random((4, 6, 3)), np.ones((8, 8, 1), np.uint8))  # 32 x 48, flat blocks
    x, info = io.read_image(_photo(tmp_path / "in.jpg", pixels))
    assert x.shape == (1, 3, 48, 32)  # upright: the orientation is applied to the pixels
    assert np.abs(_as_array(x, None, 8) - np.rot90(pixels, -1)).max() <= 8
    assert info.exif and info.icc_profile == _srgb_profile()
    out = io.write_image(tmp_path / f"out{suffix}", x, info, bit_depth=bit_depth)
    tags, exif_ifd, icc = _metadata_of(out)
    assert {tag: tags.get(tag) for tag in _CAMERA} == _CAMERA
    assert tags[_ORIENTATION] == 1  # the pixels are upright: viewers must not turn them again
    assert exif_ifd[_TAKEN] == "2024:05:06 07:08:00" and (exif_ifd[0xA002], exif_ifd[0xA003]) == (32, 48)
    assert icc == _srgb_profile()
    y, again = io.read_image(out)  # read back: not turned a second time, metadata kept
    assert y.shape == x.shape and again.bit_depth == (bit_depth or 8)
    assert np.abs(_as_array(y, None, 8) - _as_array(x, None, 8)).max() <= (8 if suffix == ".jpg" else 0)
    assert again.icc_profile == info.icc_profile and _metadata_of(out)[0][_MAKE] == "Acme"


@pytest.mark.parametrize("suffix, bit_depth", _OUTPUTS)
def test_strip_metadata_leaves_exif_and_profile_out(tmp_path, suffix, bit_depth):
    x, info = io.read_image(_photo(tmp_path / "in.png", _random((4, 6, 3))))
    assert x.shape == (1, 3, 6, 4) and info.exif and info.icc_profile
    out = io.write_image(tmp_path / f"out{suffix}", x, info, bit_depth=bit_depth, strip_metadata=True)
    tags, exif_ifd, icc = _metadata_of(out)
    assert not {_MAKE, _MODEL, _DATETIME, _ORIENTATION, _EXIF_IFD} & set(tags) and not exif_ifd
    assert icc is None
    _, again = io.read_image(out)
    assert again.exif is None and again.icc_profile is None


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_colour_inputs_keep_their_metadata(tmp_path, suffix):
    x, info = io.read_image(_photo(tmp_path / "in.png", _random((4, 6, 3))))
    wide = io.write_image(tmp_path / f"wide{suffix}", x, info, bit_depth=16)
    y, again = io.read_image(wide)
    assert again.bit_depth == 16 and torch.equal(y, x)  # upright once, not turned again
    assert again.icc_profile == info.icc_profile
    exif = Image.Exif()
    exif.load(again.exif)
    assert exif[_MAKE] == "Acme" and exif[_ORIENTATION] == 1


def test_tiff_layout_tags_are_not_taken_for_exif(tmp_path):
    x, info = io.read_image(_photo(tmp_path / "in.tif", _random((9, 11, 3))))
    assert x.shape == (1, 3, 11, 9)
    exif = Image.Exif()
    exif.load(info.exif)
    assert exif[_MAKE] == "Acme" and not {256, 257, 258, 273, 279, 34675} & set(exif)
    crop = io.write_image(tmp_path / "crop.tif", x[..., :5, :7], info)  # another size than the input
    with Image.open(crop) as im:
        assert im.size == (7, 5) and im.getexif()[_MAKE] == "Acme"
    assert torch.equal(io.read_image(crop)[0], x[..., :5, :7])


def test_a_profile_that_does_not_fit_the_output_is_left_out(tmp_path):
    x, info = io.read_image(_photo(tmp_path / "in.png", _random((4, 6, 3))))
    out = io.write_image(tmp_path / "gray.png", io.rgb_to_gray(x), info)  # an RGB profile on gray
    tags, _, icc = _metadata_of(out)
    assert icc is None and tags[_MAKE] == "Acme"
    cmyk = _srgb_profile()[:16] + b"CMYK" + _srgb_profile()[20:]
    Image.fromarray(_random((4, 6, 4)), "CMYK").save(tmp_path / "cmyk.jpg", icc_profile=cmyk)
    _, converted = io.read_image(tmp_path / "cmyk.jpg")  # CMYK pixels turned RGB: not CMYK any more
    assert converted.icc_profile is None


def test_exif_too_large_for_jpeg_is_dropped_with_a_warning(tmp_path):
    exif = Image.Exif()
    exif.update({_MAKE: "Acme", 0x010E: "x" * 70_000})  # a 70 kB image description
    Image.fromarray(_random((4, 6, 3))).save(tmp_path / "in.png", exif=exif.tobytes())
    x, info = io.read_image(tmp_path / "in.png")
    with pytest.warns(UserWarning, match="too large for JPEG"):
        out = io.write_image(tmp_path / "out.jpg", x, info)
    assert _metadata_of(out)[0] == {}
    assert _metadata_of(io.write_image(tmp_path / "out.png", x, info))[0][_MAKE] == "Acme"


def test_unusable_exif_bytes_are_dropped_with_a_warning(tmp_path):
    info = io.ImageInfo(exif=b"Exif\x00\x00not a TIFF structure", icc_profile=_srgb_profile())
    with pytest.warns(UserWarning, match="EXIF metadata cannot be written"):
        out = io.write_image(tmp_path / "out.png", torch.rand(1, 3, 4, 4), info)
    tags, _, icc = _metadata_of(out)
    assert tags == {} and icc == _srgb_profile()


# ----------------------------------------------------------------------------- folders, colour

def test_list_images_sorted_and_filtered(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.tiff", ".hidden.png", "notes.txt", "d.jpeg", "e.tif"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in io.list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.tiff", "d.jpeg", "e.tif"]
    with pytest.raises(ImageReadError, match="no such folder"):
        io.list_images(tmp_path / "missing")


def test_rgb_to_gray_matches_pillow_luma(tmp_path):
    pixels = _random((20, 30, 3))
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
    gray = io.rgb_to_gray(x)
    pillow = np.asarray(Image.fromarray(pixels).convert("L")).astype(np.float32)
    assert gray.shape == (1, 1, 20, 30)
    assert np.abs(gray[0, 0].numpy() * 255 - pillow).max() <= 0.5 + 1e-3  # Pillow rounds
    assert io.rgb_to_gray(gray) is gray


def test_info_repr_is_short():
    text = repr(io.ImageInfo(bit_depth=16, mode="L", alpha=torch.zeros(1, 1, 300, 300), format="PNG"))
    assert text == "ImageInfo(bit_depth=16, mode='L', alpha=<(1, 1, 300, 300) tensor>, format='PNG')"
    text = repr(io.ImageInfo(exif=b"Exif" * 100, icc_profile=bytes(588)))
    assert text.endswith("format=None, exif=<400 bytes>, icc_profile=<588 bytes>)")


def test_reads_real_images(data_root):
    x, info = io.read_image(io.list_images(data_root / "Set12")[0])
    assert (info.mode, info.bit_depth, x.shape[1]) == ("L", 8, 1)
    x, info = io.read_image(io.list_images(data_root / "CBSD68")[0])
    assert (info.mode, x.shape[1]) == ("RGB", 3) and 0 <= x.min() < x.max() <= 1


# ----------------------------------------------------------------------------- datasets

def test_data_root_follows_the_environment(tmp_path, monkeypatch):
    from denoise.evaluation import testsets as datasets

    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path))
    assert datasets.data_root() == tmp_path
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(InputError, match=datasets.ENV_VAR):
        datasets.data_root()
    monkeypatch.delenv(datasets.ENV_VAR)
    shared = datasets.repo_root().parent / "shared" / "data"
    assert datasets.data_root() == (shared if shared.is_dir() else None)


def test_repo_root_is_this_checkout():
    from denoise.evaluation import testsets as datasets

    assert datasets.repo_root() == Path(__file__).resolve().parents[1]


def test_load_set_from_a_folder(tmp_path, monkeypatch):
    from denoise.evaluation import testsets as datasets

    Image.fromarray(_random((8, 9, 3))).save(tmp_path / "b.png")
    Image.fromarray(_random((6, 5))).save(tmp_path / "a.png")
    (tmp_path / "readme.txt").write_text("not an image")
    loaded = datasets.load_set(tmp_path)
    assert [name for name, _ in loaded] == ["a", "b"]
    assert [x.shape for _, x in loaded] == [(1, 1, 6, 5), (1, 3, 8, 9)]
    gray = datasets.load_set(tmp_path, gray=True)
    assert [x.shape[1] for _, x in gray] == [1, 1]
    assert torch.equal(gray[1][1], io.rgb_to_gray(loaded[1][1]))
    colour = datasets.load_set(tmp_path, gray=False)
    assert [x.shape[1] for _, x in colour] == [3, 3]
    assert torch.equal(colour[0][1][:, 2:3], loaded[0][1])
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path))
    assert datasets.available_sets() == []
    with pytest.raises(InputError, match="unknown image set 'Set99'"):
        datasets.load_set("Set99")


def test_gray_conversion_reproduces_bsd68_from_cbsd68(data_root):
    """BSD68 is CBSD68 converted to gray (same sorted order): the library's luma, rounded
    to 8 bits, agrees on at least 99.5 % of the pixels and is never one level further."""
    colour, gray = io.list_images(data_root / "CBSD68"), io.list_images(data_root / "BSD68")
    assert len(colour) == len(gray) == 68
    for colour_file, gray_file in list(zip(colour, gray))[::8]:
        x, y = io.read_image(colour_file)[0], io.read_image(gray_file)[0]
        levels = (io.quantize(io.rgb_to_gray(x)) - y).abs() * 255
        assert levels.max() <= 1.0 + 1e-4
        assert (levels < 0.5).float().mean() >= 0.995
