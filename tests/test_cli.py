"""The `denoise` command: `run` on every kind of input, its error paths, and `models`.

main(argv) runs in-process for speed; one test runs the installed console script.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from denoise.cli import main
from denoise.io import read_image, write_image
from denoise.metrics import psnr

# ----------------------------------------------------------------------------- helpers

def smooth_image(h: int = 40, w: int = 48, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth uint8 test picture (H, W[, C]): gradients and a disc."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    planes = [0.2 + 0.6 * (a * xx + (1 - a) * yy) for a in rng.uniform(0, 1, channels)]
    disc = ((yy - 0.4) ** 2 + (xx - 0.5) ** 2) < 0.05
    img = np.stack(planes, -1)
    img[disc] = 0.9
    img = (img * 255).round().astype(np.uint8)
    return img[..., 0] if channels == 1 else img


def noisy_uint8(clean: np.ndarray, sigma: float = 25, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 255).round().astype(np.uint8)


def save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """main(argv) in-process: (exit status, stdout, stderr)."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_clean_error(code: int, err: str, *, status: int = 2, contains: str = "") -> None:
    """A user error: the status, lines prefixed 'denoise:', no traceback, the text given."""
    assert code == status, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and all(line.startswith("denoise: ") for line in lines), err
    assert lines[0].startswith("denoise: error: "), err
    assert contains in err, err


def leftovers(folder: Path) -> list[str]:
    """Temporary or hidden files left in ``folder`` (an atomic write leaves none)."""
    return [p.name for p in folder.rglob("*") if p.name.startswith(".")]


@pytest.fixture
def photo(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    return save(folder / "photo.png", noisy_uint8(smooth_image()))


@pytest.fixture
def out(tmp_path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


# ----------------------------------------------------------------------------- run: success

def test_run_denoises_and_keeps_name_and_format(capsys, tmp_path, out):
    clean = smooth_image()
    src = save(tmp_path / "noisy.png", noisy_uint8(clean))
    code, stdout, err = run(capsys, "run", src, "-o", out, "--model", "dct", "--sigma", "25")
    assert code == 0, err
    result = out / "noisy.png"
    assert result.is_file() and leftovers(out) == []
    assert "noisy.png" in stdout and "sigma 25.0" in stdout
    y, info = read_image(result)
    x, _ = read_image(src)
    reference = torch.from_numpy(clean).permute(2, 0, 1)[None].float() / 255
    assert info.format == "PNG" and y.shape == x.shape
    assert psnr(y, reference) > psnr(x, reference) + 3


def test_run_estimates_sigma_by_default(capsys, photo, out):
    code, stdout, err = run(capsys, "run", photo, "-o", out, "--model", "dct")
    assert code == 0, err
    assert "estimated" in stdout and (out / "photo.png").is_file()


def test_run_picks_the_photo_model_for_camera_photos(capsys, tmp_path, out, monkeypatch):
    """Without --model: the real-photo model for JPEG files and files with EXIF, the
    Gaussian default for others; --model default keeps the Gaussian default for photos."""
    import denoise.inference as inference

    monkeypatch.setattr(inference, "PHOTO_MODELS", {1: "dct", 3: "dct"})  # any shipped model
    monkeypatch.setattr(inference, "default_model_name", lambda channels: "median")
    src = tmp_path / "in"
    src.mkdir()
    save(src / "shot.jpg", smooth_image(seed=1))
    save(src / "render.png", smooth_image(seed=2))
    exif = Image.Exif()
    exif[0x010F] = "SomeCamera"  # Make
    Image.fromarray(smooth_image(seed=3)).save(src / "tagged.png", exif=exif)
    code, stdout, err = run(capsys, "run", src, "-o", out)
    assert code == 0, err
    lines = {line.split(" -> ")[0].rsplit("/", 1)[-1]: line for line in stdout.splitlines() if " -> " in line}
    assert "(dct, chosen for a camera photo (JPEG)" in lines["shot.jpg"]
    assert "(dct, chosen for a camera photo (EXIF)" in lines["tagged.png"]
    assert "(median," in lines["render.png"] and "camera photo" not in lines["render.png"]
    assert "model default (dct / dct for camera photos)" in stdout
    code, stdout, err = run(capsys, "run", src / "shot.jpg", "-o", out, "--force", "--model", "default")
    assert code == 0, err
    assert "camera photo" not in stdout and "(median," in stdout
    # without shipped real-photo weights, photos get the default too
    monkeypatch.setattr(inference, "PHOTO_MODELS", {})
    assert inference.photo_model_name(3) is None


def test_run_folder_with_suffix_and_recursive(capsys, tmp_path, out):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    save(src / "a.png", smooth_image(seed=1))
    save(src / "sub" / "b.jpg", smooth_image(seed=2))
    (src / "notes.txt").write_text("not an image, not listed")
    code, _, err = run(capsys, "run", src, "-o", out, "-m", "dct", "-s", "10", "--suffix", "_dn")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a_dn.png"]
    code, _, err = run(capsys, "run", src, "-o", out, "-m", "dct", "-s", "10", "--suffix", "_dn",
                       "--recursive", "--force")
    assert code == 0, err
    assert (out / "sub" / "b_dn.jpg").is_file()
    assert Image.open(out / "sub" / "b_dn.jpg").format == "JPEG"


def test_recursive_run_skips_its_own_output_folder(capsys, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    save(src / "a.png", smooth_image())
    out = src / "denoised"
    for attempt in range(2):
        code, _, err = run(capsys, "run", src, "-o", out, "--mkdir", "-r", "-m", "dct", "--force")
        assert code == 0, err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["a.png"]


def test_run_mkdir_creates_the_output_folder(capsys, photo, tmp_path):
    target = tmp_path / "new" / "deeper"
    code, _, err = run(capsys, "run", photo, "-o", target, "-m", "dct", "--mkdir")
    assert code == 0, err
    assert (target / "photo.png").is_file()


def test_run_tiled_matches_untiled_size(capsys, tmp_path, out):
    src = save(tmp_path / "big.png", noisy_uint8(smooth_image(70, 90)))
    code, _, err = run(capsys, "run", src, "-o", out, "-m", "dct", "-s", "25", "--tile", "32")
    assert code == 0, err
    y, _ = read_image(out / "big.png")
    assert y.shape == (1, 3, 70, 90)


def test_run_default_model(capsys, photo, out):
    code, _, err = run(capsys, "run", photo, "-o", out)
    assert code == 0, err
    assert (out / "photo.png").is_file()


def test_run_16bit_gray_stays_16bit(capsys, tmp_path, out):
    values = (smooth_image(channels=1).astype(np.uint16) * 257)
    src = tmp_path / "deep.png"
    Image.fromarray(values).save(src)  # uint16 -> mode I;16
    code, _, err = run(capsys, "run", src, "-o", out, "-m", "dct", "-s", "20")
    assert code == 0, err
    _, info = read_image(out / "deep.png")
    assert info.bit_depth == 16 and info.mode == "L"


def test_run_16bit_color_stays_16bit(capsys, tmp_path, out):
    x = torch.from_numpy(smooth_image()).permute(2, 0, 1)[None].float() / 255
    src = write_image(tmp_path / "deep_rgb.png", x, bit_depth=16)
    code, _, err = run(capsys, "run", src, "-o", out, "-m", "dct", "-s", "20")
    assert code == 0, err
    _, info = read_image(out / "deep_rgb.png")
    assert info.bit_depth == 16 and info.mode == "RGB"


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_run_passes_alpha_through(capsys, tmp_path, out, mode):
    channels = 3 if mode == "RGBA" else 1
    color = noisy_uint8(smooth_image(channels=channels))
    color = color if channels == 3 else color[..., None]
    alpha = np.tile(np.linspace(0, 255, 48).astype(np.uint8), (40, 1))[..., None]
    src = save(tmp_path / "alpha.png", np.concatenate([color, alpha], -1).squeeze(), mode)
    code, _, err = run(capsys, "run", src, "-o", out, "-m", "dct", "-s", "25")
    assert code == 0, err
    result = Image.open(out / "alpha.png")
    assert result.mode == mode
    np.testing.assert_array_equal(np.asarray(result)[..., -1], alpha[..., 0])


def test_run_palette_image(capsys, tmp_path, out):
    src = tmp_path / "palette.png"
    Image.fromarray(noisy_uint8(smooth_image())).convert("P").save(src)
    code, _, err = run(capsys, "run", src, "-o", out, "-m", "dct", "-s", "25")
    assert code == 0, err
    assert Image.open(out / "palette.png").size == (48, 40)


def test_run_cmyk_jpeg(capsys, tmp_path, out):
    src = tmp_path / "print.jpg"
    Image.fromarray(noisy_uint8(smooth_image())).convert("CMYK").save(src)
    code, _, err = run(capsys, "run", src, "-o", out, "-m", "dct", "-s", "25")
    assert code == 0, err
    result = Image.open(out / "print.jpg")
    assert result.format == "JPEG" and result.size == (48, 40)


# ----------------------------------------------------------------------------- run: bad inputs

def test_folder_run_goes_past_bad_files_and_lists_them(capsys, tmp_path, out):
    src = tmp_path / "in"
    src.mkdir()
    save(src / "a_good.png", smooth_image(seed=1))
    (src / "b_text.png").write_text("this is not a picture")
    (src / "c_empty.png").write_bytes(b"")
    good = (src / "a_good.png").read_bytes()
    (src / "d_truncated.png").write_bytes(good[: len(good) // 2])
    save(src / "e_tiny.png", np.zeros((1, 1), np.uint8))
    save(src / "f_good.png", smooth_image(seed=2))
    code, _, err = run(capsys, "run", src, "-o", out, "-m", "dct", "-s", "15")
    assert_clean_error(code, err, status=1)
    assert sorted(p.name for p in out.iterdir()) == ["a_good.png", "f_good.png"]
    for name in ("b_text.png", "c_empty.png", "d_truncated.png", "e_tiny.png"):
        assert sum(name in line for line in err.splitlines()) == 1, err
    assert "4 of 6 images failed" in err
    assert leftovers(out) == []


def test_single_bad_file_is_one_error_line(capsys, tmp_path, out):
    src = tmp_path / "bad.png"
    src.write_text("nope")
    code, _, err = run(capsys, "run", src, "-o", out, "-m", "dct")
    assert_clean_error(code, err, status=1, contains="bad.png")
    assert list(out.iterdir()) == []


def test_unreadable_file(capsys, tmp_path, out):
    src = save(tmp_path / "locked.png", smooth_image())
    src.chmod(0)
    try:
        if os.access(src, os.R_OK):
            pytest.skip("running as root: file permissions are not enforced")
        code, _, err = run(capsys, "run", src, "-o", out, "-m", "dct")
        assert_clean_error(code, err, status=1, contains="locked.png")
    finally:
        src.chmod(0o644)


@pytest.mark.parametrize("argv, message", [
    (["--sigma", "0"], "sigma must be in (0, 255]"),
    (["--sigma", "-3"], "sigma must be in (0, 255]"),
    (["--sigma", "300"], "sigma must be in (0, 255]"),
    (["--sigma", "nan"], "sigma must be in (0, 255]"),
    (["--sigma", "lots"], "expected a number"),
    (["--tile", "0"], "positive integer"),
])
def test_bad_options_are_usage_errors(capsys, photo, out, argv, message):
    code, _, err = run(capsys, "run", photo, "-o", out, *argv)
    assert code == 2 and message in err and "Traceback" not in err
    assert list(out.iterdir()) == []


def test_unknown_model(capsys, photo, out):
    code, _, err = run(capsys, "run", photo, "-o", out, "--model", "no-such-model")
    assert_clean_error(code, err, contains="unknown model 'no-such-model'")
    assert "dct" in err  # lists what exists
    assert list(out.iterdir()) == []


def test_missing_input(capsys, tmp_path, out):
    code, _, err = run(capsys, "run", tmp_path / "missing.png", "-o", out, "-m", "dct")
    assert_clean_error(code, err, contains="no such file or folder")


def test_folder_without_images(capsys, tmp_path, out):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "run", empty, "-o", out, "-m", "dct")
    assert_clean_error(code, err, contains="no images in")


def test_unwritable_format(capsys, tmp_path, out):
    src = tmp_path / "old.bmp"
    Image.fromarray(smooth_image()).save(src)
    code, _, err = run(capsys, "run", src, "-o", out, "-m", "dct")
    assert_clean_error(code, err, contains="cannot write .bmp")


def test_missing_output_folder(capsys, photo, tmp_path):
    code, _, err = run(capsys, "run", photo, "-o", tmp_path / "nowhere", "-m", "dct")
    assert_clean_error(code, err, contains="--mkdir")
    assert not (tmp_path / "nowhere").exists()


def test_output_is_a_file(capsys, photo, tmp_path):
    code, _, err = run(capsys, "run", photo, "-o", photo, "-m", "dct")
    assert_clean_error(code, err, contains="not a folder")


def test_read_only_output_folder(capsys, photo, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        probe = locked / "probe"
        try:
            probe.write_text("x")
        except OSError:
            pass
        else:
            probe.unlink()
            pytest.skip("running as root: a read-only folder is still writable")
        code, _, err = run(capsys, "run", photo, "-o", locked, "-m", "dct")
        assert_clean_error(code, err, contains="cannot write")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_unwritable_output_folder_is_refused_before_work(capsys, photo, out, monkeypatch):
    """What a read-only folder gives a non-root user (root bypasses the permission)."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == out
                        else real_access(path, mode))
    code, _, err = run(capsys, "run", photo, "-o", out, "-m", "dct")
    assert_clean_error(code, err, contains="permission denied")


def test_failed_write_leaves_no_partial_file(capsys, tmp_path, out, monkeypatch):
    """A disk that fills up mid-write: the file fails, the others are written, no debris."""
    for name in ("a.png", "b.png"):
        save(tmp_path / name, smooth_image())
    real_save = Image.Image.save

    def disk_full(self, fp, *args, **kwargs):
        if "b.png" in str(fp):
            Path(fp).write_bytes(b"\x89PNG half")
            raise OSError(28, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", disk_full)
    code, _, err = run(capsys, "run", tmp_path / "a.png", tmp_path / "b.png", "-o", out, "-m", "dct")
    assert_clean_error(code, err, status=1, contains="No space left on device")
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]


def test_existing_output_needs_force(capsys, photo, out):
    target = out / "photo.png"
    target.write_bytes(b"keep me")
    code, _, err = run(capsys, "run", photo, "-o", out, "-m", "dct")
    assert_clean_error(code, err, contains="--force")
    assert target.read_bytes() == b"keep me"
    code, _, err = run(capsys, "run", photo, "-o", out, "-m", "dct", "--force")
    assert code == 0, err
    assert read_image(target)[0].shape == (1, 3, 40, 48)


def test_output_never_replaces_its_input(capsys, photo):
    code, _, err = run(capsys, "run", photo, "-o", photo.parent, "-m", "dct", "--force")
    assert_clean_error(code, err, contains="would replace its input")


def test_two_inputs_with_one_output_name(capsys, tmp_path, out):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        save(tmp_path / sub / "same.png", smooth_image())
    code, _, err = run(capsys, "run", tmp_path / "x", tmp_path / "y", "-o", out, "-m", "dct")
    assert_clean_error(code, err, contains="would both write")
    assert list(out.iterdir()) == []


def test_suffix_with_a_path_separator(capsys, photo, out):
    code, _, err = run(capsys, "run", photo, "-o", out, "-m", "dct", "--suffix", "../x")
    assert_clean_error(code, err, contains="--suffix")


def test_interrupt_leaves_nothing(capsys, photo, out, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("denoise.inference.restore", interrupted)
    code, _, err = run(capsys, "run", photo, "-o", out, "-m", "dct")
    assert code == 130 and "interrupted" in err and "Traceback" not in err
    assert list(out.iterdir()) == []


def test_usage_errors(capsys):
    assert run(capsys)[0] == 2
    code, stdout, _ = run(capsys, "--version")
    assert code == 0 and stdout.startswith("denoise ")
    code, _, err = run(capsys, "run", "x.png")  # no -o
    assert code == 2 and "--out" in err
    code, _, err = run(capsys, "frobnicate")
    assert code == 2 and "invalid choice" in err
    assert run(capsys, "--help")[0] == 0


# ----------------------------------------------------------------------------- models

def test_models_table_lists_every_registered_model(capsys):
    from denoise.models.registry import list_models

    code, stdout, err = run(capsys, "models")
    assert code == 0, err
    lines = stdout.splitlines()
    for entry in list_models():
        assert any(line.startswith(f"{entry.name} ") for line in lines), entry.name
    assert "ready" in stdout and "\\|" not in stdout  # a plain table: no markdown escapes
    assert "+x8" in stdout  # the self-ensemble suffix is announced


def test_models_json(capsys):
    code, stdout, err = run(capsys, "models", "--json")
    assert code == 0, err
    statuses = {s["name"]: s for s in json.loads(stdout)}
    assert statuses["dct"]["available"] is True and statuses["dct"]["kind"] == "classical"
    for s in statuses.values():
        assert s["available"] == (not s["missing_extras"] and s["weights_shipped"] is not False)


# ----------------------------------------------------------------------------- console script

def test_console_script(tmp_path):
    script = Path(sys.executable).parent / "denoise"
    if not script.exists():
        pytest.skip(f"console script not installed next to {sys.executable}; pip install -e .")
    bad = subprocess.run([str(script), "run", str(tmp_path / "missing.png"), "-o", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"denoise: error: no such file or folder: {tmp_path / 'missing.png'}"]
