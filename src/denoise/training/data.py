"""Training data: image folders -> random patches, noisy pairs, EE-559 ``.pkl`` pairs.

Every source draws a batch with an explicit ``torch.Generator`` (so a run resumes exactly
from the generator's state) and returns a :class:`Batch` of (input, target, mask):

* :class:`CleanFolderData`: a folder of clean images plus a noise model; input and target
  are two *independent* noise draws of the same patch at every step (Noise2Noise), or the
  target is the clean patch (``target="clean"``), or only the noisy input counts
  (``target="self"``, :mod:`.selfsup`; its noisy-photo source is there too).
  Noise models come from :mod:`denoise.noise` (:func:`~denoise.noise.parse_noise` specs).
* :class:`PairData`: real noisy pairs, two images of the same scene (two folders matched by
  file name, or one folder with a naming rule), or the two uint8 tensors of an EE-559
  ``.pkl`` file.

All sources use random crops, flips and 90-degree rotations (the eight symmetries of the
square, applied identically to input and target), and hold out the last ``val_count``
images or pairs (in sorted order) for validation, never used for training.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..errors import ImageReadError, InputError
from ..io import list_images, read_image, rgb_to_gray
from ..noise import parse_noise
from ..symmetries import transform

NoiseFn = Callable[..., torch.Tensor]


@dataclass
class Batch:
    """One training batch: ``input`` and ``target`` (N, C, h, w); ``mask`` marks the target
    pixels that carry information (masked losses), or is None."""

    input: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor | None = None
    sigma: torch.Tensor | None = None  # (N,) noise level of each input, 0-1 scale, when known


# --------------------------------------------------------------------------- images


def _read(path: Path) -> tuple[torch.Tensor, str]:
    """Read one image as (C, H, W) float32 in [0, 1] and its mode ("L" or "RGB")."""
    x, info = read_image(path)
    return x[0], info.mode


def _as_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert (C, H, W) to ``channels`` channels (ITU-R 601 luma for RGB -> gray)."""
    if x.shape[0] == channels:
        return x
    if channels == 1:
        return rgb_to_gray(x[None])[0]
    return x.expand(3, -1, -1).contiguous()


def load_folder(folder: str | Path, *, gray: bool | None = None) -> tuple[list[str], list[torch.Tensor]]:
    """Load every image of ``folder`` (sorted by name) as (C, H, W) float32 tensors.

    ``gray=None`` keeps gray images gray when the whole folder is gray, else uses RGB.
    Raises InputError for a missing or empty folder and ImageReadError for a bad file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"training folder not found: {folder}; pass an existing folder of images")
    try:
        paths = list_images(folder)
    except OSError as exc:
        raise ImageReadError(f"cannot list training folder {folder}: {exc.strerror or exc}") from None
    if not paths:
        raise InputError(f"training folder {folder} holds no images (png, jpg, tif, ...)")
    loaded = [_read(p) for p in paths]
    if gray is None:
        gray = all(mode == "L" for _, mode in loaded)
    channels = 1 if gray else 3
    return [p.name for p in paths], [_as_channels(x, channels) for x, _ in loaded]


# --------------------------------------------------------------------------- augmentation


def random_patches(images: Sequence[torch.Tensor] | Sequence[tuple[torch.Tensor, ...]], batch_size: int,
                   crop: int | None, generator: torch.Generator, zoom: float | None = None) -> list[torch.Tensor]:
    """Draw ``batch_size`` random patches with random flips and 90-degree rotations.

    ``images`` holds (C, H, W) tensors, or tuples of aligned tensors (a pair) cropped and
    transformed identically. Returns one (N, C, crop, crop) tensor per tuple element.
    ``crop=None`` takes whole images (they must then all have the same size, e.g. 32x32
    EE-559 patches). Random draws come only from ``generator``.

    With ``zoom`` (needs ``crop``) each patch is magnified by a factor drawn log-uniform in
    ``[1, zoom]`` (one more draw per patch, after the others): a square of side
    ``round(crop / factor)`` is cut and enlarged to ``crop`` by bicubic interpolation,
    clamped to [0, 1]. The content then varies as slowly per pixel as in photos of more
    pixels than the training images, while noise added afterwards stays pixel-sized.
    """
    groups = [g if isinstance(g, tuple) else (g,) for g in images]
    idx = torch.randint(len(groups), (batch_size,), generator=generator)
    pos = torch.rand(batch_size, 2, generator=generator)
    sym = torch.randint(8, (batch_size,), generator=generator)
    factor = None if zoom is None else torch.exp(torch.rand(batch_size, generator=generator) * math.log(zoom))
    out: list[list[torch.Tensor]] = [[] for _ in groups[0]]
    for k in range(batch_size):
        group = groups[int(idx[k])]
        h, w = group[0].shape[-2:]
        ch, cw = (h, w) if crop is None else (crop, crop)
        if factor is not None:
            ch = cw = max(2, min(crop, round(crop / float(factor[k]))))
        if ch > h or cw > w:
            raise InputError(f"crop {crop} is larger than a training image ({h}x{w}); pass a smaller crop")
        top, left = int(pos[k, 0] * (h - ch + 1)), int(pos[k, 1] * (w - cw + 1))
        s = int(sym[k])
        for j, img in enumerate(group):
            patch = transform(img[:, top:top + ch, left:left + cw], s)
            if factor is not None and ch != crop:
                patch = F.interpolate(patch[None], size=(crop, crop), mode="bicubic", align_corners=False)[0].clamp(0, 1)
            out[j].append(patch)
    return [torch.stack(p) for p in out]


def center_crop(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Center crop of the last two dims to at most ``size`` (None: unchanged)."""
    if size is None:
        return x
    h, w = x.shape[-2:]
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top:top + ch, left:left + cw]


def default_holdout(n: int) -> int:
    """How many of ``n`` items are held out for validation by default: a tenth, at least
    one (when two or more exist) and at most 20."""
    return 0 if n < 2 else min(20, max(1, n // 10))


def split_holdout(n: int, val_count: int | None, what: str) -> int:
    """Number of training items when the last ``val_count`` of ``n`` are held out
    (None: :func:`default_holdout`). Errors name the command-line flag."""
    if n < 1:
        raise InputError(f"no {what} to train on")
    if val_count is None:
        val_count = default_holdout(n)
    if val_count < 0 or val_count >= n:
        raise InputError(f"cannot hold out {val_count} of {n} {what} for validation; "
                         f"pass --val-count between 0 and {n - 1}")
    return n - val_count


# --------------------------------------------------------------------------- sources


def _noisy(noise: NoiseFn, clean: torch.Tensor, generator: torch.Generator):
    """``(noisy, sigma)``: the noise's own ``sample`` where it has one (it reports the
    Gaussian level of each image), else ``(noise(clean), None)``; the same draws either way."""
    sample = getattr(noise, "sample", None)
    if sample is not None:
        return sample(clean, generator)
    return noise(clean, generator=generator), None


class CleanFolderData:
    """Clean images plus a noise model: fresh, independent noise for input and target.

    ``noise(x, generator=g)`` returns a noisy copy of a batch; with ``target="clean"`` the
    target is the clean patch. A noise with ``with_mask`` (Bernoulli) also yields the
    target's mask of known pixels, for the masked L2 loss.
    """

    def __init__(self, images: Sequence[torch.Tensor], noise: NoiseFn, *, target: str = "noisy",
                 crop: int | None = 64, val_images: Sequence[torch.Tensor] = (),
                 val_noise: NoiseFn | None = None, val_crop: int | None = None, val_seed: int = 12345,
                 zoom: float | None = None):
        if target not in ("noisy", "clean", "self"):
            raise InputError(f"target must be 'noisy', 'clean' or 'self', got {target!r}")
        if not images:
            raise InputError("no training images")
        if zoom is not None and (crop is None or not 1 <= zoom <= 8):
            raise InputError("zoom needs a crop size and a factor in [1, 8]")
        self.images, self.noise, self.target, self.crop = list(images), noise, target, crop
        self.zoom = zoom  # training crops magnified by up to this factor (validation: unchanged)
        self.channels = int(self.images[0].shape[0])
        self.val_images = [center_crop(v, val_crop) for v in val_images]
        self.val_noise, self.val_seed = val_noise or noise, val_seed

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        (clean,) = random_patches(self.images, batch_size, self.crop, generator, zoom=self.zoom)
        inp, sigma = _noisy(self.noise, clean, generator)
        if self.target in ("clean", "self"):  # self: the objective makes the target from inp
            return Batch(inp, clean if self.target == "clean" else inp, sigma=sigma)
        with_mask = getattr(self.noise, "with_mask", None)
        if with_mask is not None:
            tgt, mask = with_mask(clean, generator=generator)
            return Batch(inp, tgt, mask, sigma=sigma)
        return Batch(inp, self.noise(clean, generator=generator), sigma=sigma)

    def validation(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Held-out (noisy input, clean reference) pairs, (1, C, H, W) each; the noise is
        drawn once from a fixed seed, so every validation sees the same inputs."""
        return [(noisy, ref) for noisy, ref, _ in self.validation_with_sigma()]

    def validation_with_sigma(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """:meth:`validation` with the noise level of each input ((1,), or None)."""
        g = torch.Generator().manual_seed(self.val_seed)
        out = []
        for v in self.val_images:
            noisy, sigma = _noisy(self.val_noise, v[None], g)
            out.append((noisy, v[None], sigma))
        return out


class PairData:
    """Aligned noisy pairs (input view, target view), e.g. two shots of one scene.

    With ``swap=True`` input and target trade places at random (both are noisy views).
    Validation PSNR is measured against the held-out pairs' target view, itself noisy
    (``clean_reference`` False), unless clean references were given for them.
    """

    def __init__(self, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], *, crop: int | None = 64,
                 swap: bool = True, val_pairs: Sequence[tuple[torch.Tensor, torch.Tensor]] = (),
                 val_crop: int | None = None, clean_reference: bool = False):
        self.clean_reference = clean_reference
        if not pairs:
            raise InputError("no training pairs")
        self.pairs, self.crop, self.swap = list(pairs), crop, swap
        self.channels = int(self.pairs[0][0].shape[0])
        self.val_pairs = [(center_crop(a, val_crop), center_crop(b, val_crop)) for a, b in val_pairs]

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        inp, tgt = random_patches(self.pairs, batch_size, self.crop, generator)
        if self.swap:
            flip = (torch.rand(batch_size, generator=generator) < 0.5).view(-1, 1, 1, 1)
            inp, tgt = torch.where(flip, tgt, inp), torch.where(flip, inp, tgt)
        return Batch(inp, tgt)

    def validation(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(a[None], b[None]) for a, b in self.val_pairs]


def clean_references(folder: str | Path, inputs: Sequence[Path],
                     val_pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], *, channels: int
                     ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The held-out pairs that have a clean image in ``folder`` (matched by the input
    view's file name, or its stem), as (noisy input, clean reference)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--val-clean folder not found: {folder}")
    by_name = {p.name: p for p in list_images(folder)}
    by_stem = {p.stem: p for p in by_name.values()}
    out = []
    for path, (inp, _) in zip(inputs, val_pairs):
        ref = by_name.get(path.name) or by_stem.get(path.stem)
        if ref is None:
            continue
        x, _ = _read(ref)
        x = _as_channels(x, channels)
        if x.shape[-2:] != inp.shape[-2:]:
            raise InputError(f"--val-clean: {ref.name} is {x.shape[-1]}x{x.shape[-2]} but the noisy "
                             f"{path.name} is {inp.shape[-1]}x{inp.shape[-2]}")
        out.append((inp, x))
    if not out:
        raise InputError(f"--val-clean: no image in {folder} is named like a held-out input "
                         f"({', '.join(p.name for p in inputs[:3])}...); raise --val-count or rename")
    return out


# --------------------------------------------------------------------------- pair loading


def match_pairs(inputs: Sequence[Path], targets: Sequence[Path], *, input_key: Callable[[Path], str],
                target_key: Callable[[Path], str]) -> list[tuple[Path, Path]]:
    """Match two lists of files by key; an unmatched name on either side is an error."""
    a = {input_key(p): p for p in inputs}
    b = {target_key(p): p for p in targets}
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a or only_b:
        raise InputError(f"unmatched noisy pairs: {len(only_a)} input(s) without a target "
                         f"{only_a[:3]}, {len(only_b)} target(s) without an input {only_b[:3]}; "
                         "every input needs a target of the same name")
    if not a:
        raise InputError("no noisy pairs found; check the folders and the naming rule")
    return [(a[k], b[k]) for k in sorted(a)]


def pair_paths(input_dir: str | Path, target_dir: str | Path | None = None, *,
               input_suffix: str = "", target_suffix: str = "") -> list[tuple[Path, Path]]:
    """List noisy pairs: two folders matched by file stem, or one folder with a naming rule.

    With ``target_dir=None`` both views are in ``input_dir`` and the stems end in
    ``input_suffix`` / ``target_suffix`` (e.g. ``scene1_a.png`` / ``scene1_b.png`` with
    suffixes ``_a`` and ``_b``). With two folders the suffixes (default empty) are stripped
    from the stems before matching.
    """
    input_dir = Path(input_dir)
    for d in (input_dir, target_dir):
        if d is not None and not Path(d).is_dir():
            raise InputError(f"pair folder not found: {d}")
    files_a = list_images(input_dir)
    if target_dir is None:
        if not input_suffix or not target_suffix or input_suffix == target_suffix:
            raise InputError("one pair folder needs a naming rule: two different suffixes, "
                             "e.g. input_suffix='_a' target_suffix='_b'")
        files_b = [p for p in files_a if p.stem.endswith(target_suffix)]
        files_a = [p for p in files_a if p.stem.endswith(input_suffix)]
    else:
        files_b = list_images(Path(target_dir))

    def key(suffix: str) -> Callable[[Path], str]:
        return lambda p: p.stem[: len(p.stem) - len(suffix)] if suffix and p.stem.endswith(suffix) else p.stem

    return match_pairs(files_a, files_b, input_key=key(input_suffix), target_key=key(target_suffix))


def load_pairs(pairs: Sequence[tuple[Path, Path]], *, gray: bool | None = None
               ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Read matched pair files; both views must have the same size."""
    loaded = [(_read(a), _read(b)) for a, b in pairs]
    if gray is None:
        gray = all(ma == "L" and mb == "L" for (_, ma), (_, mb) in loaded)
    channels = 1 if gray else 3
    out = []
    for (pa, pb), ((xa, _), (xb, _)) in zip(pairs, loaded):
        if xa.shape[-2:] != xb.shape[-2:]:
            raise InputError(f"pair sizes differ: {pa.name} is {xa.shape[-1]}x{xa.shape[-2]}, "
                             f"{pb.name} is {xb.shape[-1]}x{xb.shape[-2]}; both views must be aligned")
        out.append((_as_channels(xa, channels), _as_channels(xb, channels)))
    return out


def load_uint8_pair(path: str | Path, *, size: tuple[int, int] | None = None,
                    missing_hint: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """The two uint8 tensors (N, 3, H, W) of an EE-559-style ``.pkl`` pair file.

    Loaded with ``torch.load(weights_only=True)`` (no code runs from the file). ``size``
    requires (H, W); ``missing_hint`` is appended to the message of a missing file.
    Raises InputError / ImageReadError for any other content.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"pair file not found: {path}{missing_hint}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and weights_only errors all mean a bad file
        raise ImageReadError(f"cannot load {path.name} as a tensor pair file: "
                             f"{str(exc).splitlines()[0]}") from None
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise InputError(f"{path.name} must hold a tuple of two tensors (input, target), "
                         f"got {type(obj).__name__}")
    expected = "(N, 3, {}, {})".format(*size) if size else "(N, 3, H, W)"
    a, b = obj
    for name, t in (("first", a), ("second", b)):
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{path.name}: the {name} item is a {type(t).__name__}, not a tensor")
        if t.dtype != torch.uint8:
            raise InputError(f"{path.name}: the {name} tensor has dtype {t.dtype}; expected torch.uint8")
        if (t.dim() != 4 or t.shape[1] != 3 or t.shape[0] == 0
                or (size is not None and tuple(t.shape[2:]) != tuple(size))):
            raise InputError(f"{path.name}: the {name} tensor has shape {tuple(t.shape)}; "
                             f"expected {expected}")
    if a.shape != b.shape:
        raise InputError(f"{path.name}: the two tensors differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    return a, b


def load_pkl_pairs(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Load an EE-559 training pair file (two uint8 tensors (N, 3, 32, 32)) as two float32
    tensors in [0, 1]; see :func:`load_uint8_pair` for the checks."""
    a, b = load_uint8_pair(path, size=(32, 32))
    return a.float().div_(255), b.float().div_(255)


# --------------------------------------------------------------------------- noise specs


def noise_kind(spec: str) -> str:
    """The noise family of a spec string (``gaussian:0-50`` -> ``gaussian``)."""
    return parse_noise(spec).kind
