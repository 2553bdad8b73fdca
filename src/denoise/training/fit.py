"""Fine-tune a trained denoiser on the user's own noisy photos (``denoise fit``).

No clean image and no second shot are needed: every objective learns from the noisy
photos alone. The default base is the shipped blind model for real photos, ``real-color``
or ``real-gray`` by the photos' channels (:data:`DEFAULT_BASE`); any blind learned model
works (a registered name, a user model, a .safetensors file or a training run folder).
Three objectives (:data:`MODES`):

* ``pseudo`` (default) is self-training. The base denoises the photos once, and its
  outputs serve as clean images to which the noise the base was trained with
  (:func:`base_noise`: for ``real-*``, their camera noise) is added afresh at every step,
  exactly as in the base's own training. What the fit adapts to is the photos' content
  (their textures, colours and scales), not their noise, and the targets are only as
  clean as the base makes them. Measured on PolyU it is the objective that improves on
  the ``real-color`` candidates (``benchmarks/fit_polyu.py``).
* ``pd`` and ``n2n`` are the self-supervised objectives of :mod:`.selfsup`
  (``target="self"``, ``noise="none"``), which re-learn denoising from the noisy pixels
  alone: ``pd``, the blind spot on pixel-shuffle-downsampled images, for spatially
  correlated noise (a camera's demosaicing, in-camera denoising and compression spread it
  over neighbouring pixels); Neighbor2Neighbor (``n2n``), whose targets are the adjacent
  pixels, for pixel-independent noise only (it takes the correlated part for signal and
  keeps it). From a base that already removes the noise well they lose more, on PolyU,
  than minutes of fitting win back (``--self-mode pd`` / ``n2n`` of the benchmark); they
  are the ones to use for noise that no shipped model knows, from a base trained on
  something near it or from scratch.

A fit is an ordinary training run of the :class:`~.trainer.Trainer` (atomic checkpoints,
exact resume, progress bar) with:

* the base's weights as the start (``TrainConfig.init``), batch-norm statistics frozen
  (``freeze_bn``: the photos are few, and the self-supervised objectives' inputs are
  masked sub-images);
* every photo used for fitting (nothing held out: these photos are the ones to denoise),
  random crops of :data:`CROP` pixels (smaller for smaller photos), batches of
  :data:`BATCH`, Adam at a constant :data:`LR`;
* a bound on the wall time of the training (``minutes``; loading the photos comes before,
  denoising them after). ``steps`` is only a nominal cap (:data:`STEPS`).

The run folder is ``fits/NAME`` in the user model folder (:func:`fits_dir`): ``resume``
continues it for another ``minutes``. The adapted weights are exported as the user model
``NAME`` (``denoise run -m NAME``) after every invocation.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..errors import ImageReadError, InputError, ModelError
from .config import TrainConfig
from .pseudo import PSEUDO_NOISE, base_noise, pseudo_clean  # noqa: F401 - re-exported
from .runlog import CHECKPOINT, CONFIG

#: The base model by the photos' channel count (blind FFDNet bodies trained on camera noise).
DEFAULT_BASE = {3: "real-color", 1: "real-gray"}
DEFAULT_MINUTES = 5.0
DEFAULT_SELF_MODE = "pseudo"
#: The objectives of a fit: the self-supervised ones of :mod:`.selfsup`, and ``pseudo``.
MODES = ("pd", "n2n", "pseudo")
#: Adam's (constant) learning rate: small, not to wipe out what the base knows.
LR = 1e-4
#: Side of the random training crops (pixels), and the batch size.
CROP = 64
BATCH = 8
#: The smallest photo side a fit accepts.
MIN_SIDE = 16
#: The nominal step count of a fit (the time bound ends it first).
STEPS = 1_000_000
CHECKPOINT_EVERY = 100
#: The folder of the fits' run folders, in the user model folder.
FITS = "fits"
#: ``train_dir`` of a fit on images given as tensors.
IN_MEMORY = "<images in memory>"


@dataclass(frozen=True)
class Base:
    """The model a fit starts from."""

    label: str  # as the user named it
    model: str  # the registered name TrainConfig.model builds (never a user model)
    model_kwargs: dict
    init: str | None  # TrainConfig.init: where the starting weights come from (None: random)
    channels: int | None  # the channel count it is fixed to (None: any)


@dataclass
class FitResult:
    """What :func:`fit` returns."""

    model: nn.Module  # the fitted denoiser, in eval mode
    name: str | None  # the user model it was saved as (None: not saved)
    weights: Path | None  # its .safetensors file
    run_dir: Path | None  # the fit's run folder (None: a temporary one, removed)
    base: str  # the model the fit started from
    steps: int  # steps of the fit in all (resumed invocations included)
    new_steps: int  # steps of this invocation
    seconds: float  # wall time this invocation trained
    loss: float  # the last step's loss
    timed_out: bool  # stopped by the time bound (the normal end)
    images: int  # the number of photos fitted on


def fits_dir() -> Path:
    """The folder of the fits' run folders: ``fits/`` in the user model folder (the model
    listing reads only the folder's own ``.safetensors`` files)."""
    from ..models.user import user_models_dir

    return user_models_dir() / FITS


def default_name(folder: str | Path) -> str:
    """The user model name of a fit on ``folder``: ``fit-`` and the folder's name, other
    characters than letters, digits, '.', '_' and '-' replaced by '-'."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(folder).resolve().name).strip("-._")
    return f"fit-{stem}" if stem else "fit"


def check_minutes(minutes) -> float:
    """``minutes`` as a positive finite float; InputError otherwise."""
    try:
        value = float(minutes)
    except (TypeError, ValueError):
        raise InputError(f"--minutes must be a positive number of minutes, got {minutes!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"--minutes must be a positive number of minutes, got {minutes}")
    return value


# --------------------------------------------------------------------------- the base model


def resolve_base(name: str | None, channels: int) -> Base:
    """The blind learned model ``name`` (None: :data:`DEFAULT_BASE`) for photos with
    ``channels`` channels; one-line errors for an unknown name, a model without weights,
    a classical model, an upscaler, a model that takes a noise level or one for the other
    channel count."""
    from ..models.base import contract
    from ..models.registry import create_model, get_entry
    from ..models.user import looks_like_path, model_from_path

    kind = "gray" if channels == 1 else "color"
    if name is None:
        name = DEFAULT_BASE[channels]
        if not get_entry(name, user=False).has_weights():
            raise ModelError(f"the default model for {kind} photos, {name}, has no weights in this install "
                             "yet; pass --model NAME: a blind denoiser with weights (see 'denoise models'), "
                             "one of your own, or a training run folder")
    if looks_like_path(name):
        path = Path(name).expanduser().resolve()
        _, probe = model_from_path(path)  # ModelError when it cannot be loaded
        model, kwargs = _path_architecture(path)
        init, fixed = str(path), getattr(probe, "channels", None)
    else:
        entry = get_entry(name)  # ModelError listing the known names
        if entry.kind != "learned":
            raise InputError(f"model {name!r} is {entry.kind}: it has no weights to fit; pick a learned "
                             f"blind model such as {DEFAULT_BASE[channels]} or n2n-unet-{kind}")
        if entry.pretrained and not entry.has_weights():
            raise ModelError(f"model {name!r} has no weights in this install; pass --model NAME with "
                             "weights (see 'denoise models'), one of your own, or a training run folder")
        model, kwargs = _registered_architecture(name, {})
        init, fixed = (name if entry.pretrained else None), entry.channels
        probe = create_model(model, pretrained=False, **{"channels": fixed or channels, **kwargs})
    declared = contract(probe)
    if declared.scale != 1:
        raise InputError(f"model {name!r} upscales by {declared.scale}, it does not denoise; pick a denoiser")
    if declared.uses_sigma:
        raise InputError(f"model {name!r} takes a noise level (sigma); fit trains blind models, which "
                         f"learn the photos' noise: pick one such as {DEFAULT_BASE[channels]} or n2n-unet-{kind}")
    if fixed is not None and fixed != channels:
        raise InputError(f"model {name!r} is for {'gray' if fixed == 1 else 'color'} images but the photos "
                         f"are {kind}; pick a {kind} model such as {DEFAULT_BASE[channels]}")
    if init is None:
        warnings.warn(f"model {name!r} is an architecture without trained weights: the fit starts from "
                      "random weights (expect far more than minutes of training)", stacklevel=2)
    return Base(name, model, kwargs, init, fixed)


def _registered_architecture(model: str, kwargs: dict) -> tuple[str, dict]:
    """``(registered name, keyword arguments)`` that build ``model``: a user model is its
    card's architecture with the card's arguments (a run's config may name one)."""
    from ..models.registry import get_entry
    from ..models.user import read_card

    entry = get_entry(model)
    if not entry.user:
        return model, dict(kwargs)
    card = read_card(entry.card_path)
    return card["architecture"], {**(card.get("model_kwargs") or {}), **kwargs}


def _path_architecture(path: Path) -> tuple[str, dict]:
    """The registered name and arguments of weights named by a path (a .safetensors file
    with its card; a run folder or checkpoint, from its config)."""
    import json

    from ..models.user import read_card

    if path.suffix == ".safetensors":
        card = read_card(path.with_suffix(".json"))
        return _registered_architecture(card["architecture"], card.get("model_kwargs") or {})
    ckpt = torch.load(path / CHECKPOINT if path.is_dir() else path, map_location="cpu", weights_only=True)
    config = json.loads(ckpt["config"])  # model_from_path has read it already
    kwargs = dict(config.get("model_kwargs") or {})
    if config.get("scale"):
        kwargs["scale"] = config["scale"]
    return _registered_architecture(config["model"], kwargs)


# --------------------------------------------------------------------------- the fit


def fit_config(base: Base, *, channels: int, crop: int, out: str | Path, train_dir: str, minutes: float,
               self_mode: str = DEFAULT_SELF_MODE, seed: int = 0, threads: int | None = None,
               device: str = "auto", progress: bool = True) -> TrainConfig:
    """The training configuration of a fit (see the module docstring). ``pseudo`` is a
    supervised run (``target="clean"``) whose clean images are the base's outputs and whose
    noise is the base's training noise (:func:`base_noise`)."""
    common = dict(model=base.model, model_kwargs=dict(base.model_kwargs), init=base.init, data="folder",
                  train_dir=train_dir, gray=channels == 1, val_count=0, crop=crop, batch_size=BATCH,
                  steps=STEPS, lr=LR, schedule="constant", freeze_bn=True, seed=seed, out=str(out),
                  minutes=minutes, checkpoint_every=CHECKPOINT_EVERY, log_every=10, device=device,
                  threads=threads, progress=progress, plot=True)
    if self_mode == "pseudo":
        return TrainConfig(noise=base_noise(base, channels), target="clean", loss="l2_rel", **common)
    return TrainConfig(noise="none", target="self", self_mode=self_mode, self_ramp=False, loss="l2", **common)


def fit_mode(config: TrainConfig) -> str:
    """The objective of a fit's configuration: ``pseudo`` for a supervised one."""
    return "pseudo" if config.target == "clean" else config.self_mode


def fit_crop(images: Sequence[torch.Tensor]) -> int:
    """:data:`CROP`, or the smallest photo's shorter side rounded down to a multiple of 8;
    InputError for a photo under :data:`MIN_SIDE` pixels."""
    side = min(min(x.shape[-2:]) for x in images)
    if side < MIN_SIDE:
        raise InputError(f"a photo of {side} pixels is too small to fit on; fit needs photos of at "
                         f"least {MIN_SIDE}x{MIN_SIDE} pixels")
    return min(CROP, side // 8 * 8)


def _load(source) -> tuple[Path | None, list[torch.Tensor]]:
    """``(folder or None, images (C, H, W))`` of a folder, or of tensors (C, H, W),
    (N, C, H, W) or a list of them."""
    from .data import _as_channels, load_folder

    if isinstance(source, (str, Path)):
        folder = Path(source)
        if not folder.is_dir():
            raise ImageReadError(f"not a folder: {folder}; pass a folder of noisy photos"
                                 if folder.exists() else f"no such folder: {folder}")
        return folder, load_folder(folder)[1]
    items = [source] if isinstance(source, torch.Tensor) else list(source)
    images = [im for t in items for im in (t if t.dim() == 4 else t[None])]
    if not images or any(im.dim() != 3 or im.shape[0] not in (1, 3) for im in images):
        raise InputError("fit takes a folder, or images (C, H, W) or (N, C, H, W) with 1 or 3 channels")
    channels = 1 if all(im.shape[0] == 1 for im in images) else 3
    return None, [_as_channels(im.detach().float().cpu(), channels) for im in images]


def fit(source, *, minutes: float = DEFAULT_MINUTES, model: str | None = None, name: str | None = None,
        self_mode: str | None = None, resume: bool = False, overwrite: bool = False, seed: int | None = None,
        threads: int | None = None, device: str = "auto", progress: bool = True,
        command: str | None = None) -> FitResult:
    """Fine-tune ``model`` on noisy photos for at most ``minutes`` of training (see the
    module docstring) and return the fitted denoiser.

    ``source`` is a folder of photos, or images as tensors (C, H, W), (N, C, H, W) or a
    list. A fit is saved as the user model ``name`` (default for a folder:
    :func:`default_name`; for tensors without a name nothing is saved and the run folder
    is temporary). An existing fit of that name is continued with ``resume`` (for another
    ``minutes``; the model, mode and seed default to the saved ones, and other values are
    refused), started over with ``overwrite``, and otherwise refused. ``self_mode`` is
    ``"pseudo"`` (default), ``"pd"`` or ``"n2n"`` (:data:`MODES`); ``threads`` sets torch's CPU threads for the call;
    ``command``, the command line kept in the model card. Everything is checked before
    anything is written.
    """
    from ..models.user import user_models_dir
    from .build import build_model, folder_data
    from .data import _as_channels
    from .export import check_model_name, export_weights
    from .trainer import Trainer

    minutes = check_minutes(minutes)
    if self_mode not in (None, *MODES):
        raise InputError(f"--self-mode must be one of {', '.join(MODES)}, got {self_mode!r}")
    if isinstance(source, (str, Path)) and name is None:
        name = default_name(source)
    if name is None and resume:
        raise InputError("resume needs the name of the fit to continue")
    run_dir = None
    if name is not None:
        check_model_name(name, user_models_dir())
        run_dir = fits_dir() / name
        _check_existing(name, run_dir, resume=resume, overwrite=overwrite)
    folder, images = _load(source)
    channels = int(images[0].shape[0])
    train_dir = str(folder) if folder is not None else IN_MEMORY
    if resume:
        config = TrainConfig.from_file(run_dir / CONFIG)
        changes = {"minutes": minutes, "threads": threads, "device": device, "progress": progress,
                   "train_dir": train_dir, "out": str(run_dir)}
        if model is not None:
            base = resolve_base(model, int(channels if config.gray is None else 1 if config.gray else 3))
            changes.update(model=base.model, model_kwargs=dict(base.model_kwargs), init=base.init)
        if self_mode is not None and self_mode != fit_mode(config):
            raise InputError(f"cannot resume the fit {name!r} with other settings: its objective is "
                             f"{fit_mode(config)}, not {self_mode}. Leave out --self-mode to keep its own, or "
                             "pass --force instead of --resume to start it over")
        changes.update({k: v for k, v in (("seed", seed),) if v is not None})
        saved, config = config, dataclasses.replace(config, **changes)
        diff = saved.differences(config)
        if diff:
            raise InputError(f"cannot resume the fit {name!r} with other settings: " + "; ".join(diff)
                             + ". Leave out --model, --self-mode and --seed to keep its own, or pass --force "
                             "instead of --resume to start it over")
        images = [_as_channels(x, 1 if config.gray else 3) for x in images]
        base_label = config.init or config.model
    else:
        base = resolve_base(model, channels)
        base_label = base.label
        config = fit_config(base, channels=channels, crop=fit_crop(images), out=run_dir or "", train_dir=train_dir,
                            minutes=minutes, self_mode=self_mode or DEFAULT_SELF_MODE, seed=seed or 0,
                            threads=threads, device=device, progress=progress)
    config.validate()
    if fit_mode(config) == "pseudo":  # the base's outputs are the clean images
        if config.init is None:
            raise InputError("the pseudo objective needs a base with trained weights; pick another --model")
        try:
            images = pseudo_clean(config, images, channels if config.gray is None else 1 if config.gray else 3)
        except ModelError as exc:
            raise ModelError(f"the pseudo objective makes its clean images with its base, {config.init}, "
                             f"which cannot be loaded ({exc}); start a new fit with --force") from None
    data = folder_data(config, images)
    old_threads = torch.get_num_threads()
    with contextlib.ExitStack() as stack:
        if run_dir is None:
            config.out = stack.enter_context(tempfile.TemporaryDirectory(prefix="denoise-fit-"))
        if threads:
            torch.set_num_threads(threads)
            stack.callback(torch.set_num_threads, old_threads)
        # a new fit loads the base's weights (checked here, before anything is removed); a
        # resumed one takes its weights from the checkpoint, so the base need not exist any more
        net = build_model(dataclasses.replace(config, init=None), data.channels) if resume else None
        trainer = Trainer(config, data=data, model=net)
        if run_dir is not None and overwrite and not resume and run_dir.exists():
            shutil.rmtree(run_dir)  # the previous fit of that name, started over (checked above)
        start = time.perf_counter()
        result = trainer.fit(resume=resume)
        seconds = time.perf_counter() - start
        fitted = (trainer.objective.restorer(trainer.model) if trainer.objective is not None
                  else trainer.model).eval()
    weights = None
    if name is not None:
        note = (f"denoise fit: {base_label} fine-tuned on {len(images)} noisy photo(s) of {train_dir} with "
                f"the self-supervised {fit_mode(config)} objective, at most {minutes:g} minutes per invocation")
        weights = export_weights(run_dir, name, overwrite=True, command=command, note=note)
    return FitResult(fitted, name, weights, run_dir, base_label, result.step, result.step - result.start_step,
                     seconds, result.loss, result.timed_out, len(images))


def _check_existing(name: str, run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """InputError when a fit of that name exists and neither ``resume`` nor ``overwrite``
    says what to do with it, or when ``resume`` finds none."""
    from ..models.user import user_models_dir

    weights = user_models_dir() / f"{name}.safetensors"
    if resume:
        if not (run_dir / CHECKPOINT).is_file() or not (run_dir / CONFIG).is_file():
            raise InputError(f"nothing to resume: no fit named {name!r} ({run_dir} holds no checkpoint); "
                             "leave out --resume, or pass the --name of an earlier fit")
        return
    if overwrite:
        return
    if (run_dir / CHECKPOINT).exists():
        raise InputError(f"a fit named {name!r} exists ({run_dir}); pass --resume to continue it, --force to "
                         "start it over, or --name NAME for another one")
    if weights.exists():
        raise InputError(f"your model {name!r} exists ({weights}); pass --force to replace it, or --name NAME "
                         "for another one")
