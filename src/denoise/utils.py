"""Small shared helpers: input checks and atomic file writes."""
from __future__ import annotations

import contextlib
import math
import os
import tempfile
from pathlib import Path

import torch

from .errors import InputError, OutputError


def check_image(x, name: str = "x") -> torch.Tensor:
    """Validate an image batch: a float tensor (N, C, H, W), finite, C in {1, 3}.

    Returns the tensor (unchanged). Raises InputError with a message that says what to pass.
    """
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise InputError(f"{name} must have shape (N, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{name} must be a float tensor with values in [0, 1], got dtype {x.dtype}; "
                         "convert with x.float() / 255 for uint8 images")
    n, c, h, w = x.shape
    if n == 0 or h == 0 or w == 0:
        raise InputError(f"{name} is empty: shape {tuple(x.shape)}")
    if c not in (1, 3):
        raise InputError(f"{name} must have 1 (gray) or 3 (RGB) channels, got {c}")
    if not torch.isfinite(x).all():
        raise InputError(f"{name} contains NaN or Inf values")
    return x


def check_sigma(sigma, *, allow_none: bool = True, max_sigma: float = 1.0):
    """Validate a noise level on the 0-1 scale (a float or a tensor of shape (N,))."""
    if sigma is None:
        if allow_none:
            return None
        raise InputError("sigma is required")
    if isinstance(sigma, torch.Tensor):
        if not torch.isfinite(sigma).all() or (sigma <= 0).any() or (sigma > max_sigma).any():
            raise InputError(f"sigma must be in (0, {max_sigma}] on the 0-1 scale, got {sigma.tolist()}")
        return sigma
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise InputError(f"sigma must be a number, got {sigma!r}") from None
    if not math.isfinite(s) or s <= 0 or s > max_sigma:
        raise InputError(f"sigma must be in (0, {max_sigma}] on the 0-1 scale (sigma/255 for 8-bit levels), got {s}")
    return s


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = False, error: type = OutputError):
    """Yield a temporary path in the destination folder; rename it onto ``path`` on success.

    Nothing is left behind on failure, and an existing file is replaced only when
    ``overwrite`` is true. The file gets the permissions a plain ``open()`` would give.
    Problems raise ``error`` (an :class:`OutputError` subclass).
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise error(f"output folder does not exist: {folder}")
    if path.exists() and not overwrite:
        raise error(f"{path} exists; pass overwrite=True to replace it")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=folder)
    except OSError as exc:
        raise error(f"cannot write to {folder}: {exc.strerror or exc}") from None
    os.close(fd)
    # mkstemp creates 0600 files; give the result the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def output_file(path: str | os.PathLike, *, overwrite: bool = True):
    """:func:`atomic_path` for result files (replaced by default), with any OS error
    turned into a one-line :class:`OutputError`."""
    path = Path(path)
    try:
        with atomic_path(path, overwrite=overwrite) as tmp:
            yield tmp
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """Write a UTF-8 text file atomically (replacing it by default); return the path."""
    with output_file(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj, *, overwrite: bool = True, sort_keys: bool = False) -> Path:
    """Write ``obj`` as strict JSON atomically (indent 2, trailing newline; NaN and
    infinities become null)."""
    import json

    text = json.dumps(_finite(obj), indent=2, allow_nan=False, sort_keys=sort_keys)
    return write_text(path, text + "\n", overwrite=overwrite)


def file_digest(path: str | os.PathLike, length: int = 16) -> str:
    """The first ``length`` hex digits of the file's sha256 (to tie a result to the exact
    weights it came from)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


def _finite(value):
    """``value`` with every non-finite float replaced by None (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
