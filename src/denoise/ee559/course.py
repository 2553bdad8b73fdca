"""What the two EE-559 course models share: the course's tensors, the epoch loop, weights.

The course API (EPFL EE-559 Deep Learning, 2022, Noise2Noise mini-projects)::

    model = Model()
    model.load_pretrained_model()
    model.train(train_input, train_target, num_epochs)   # (N, 3, H, W), values 0-255
    out = model.predict(test_input)                      # same shape, float, values 0-255

Inputs are uint8 or float tensors of values 0 to 255 (floats are clipped to that range),
of any spatial size of at least :data:`MIN_SIDE` pixels. :class:`CourseModel` converts
them to the library's float32 images in [0, 1], runs the network in batches of the
course's small images and converts back (the networks are blind, so no noise level is
estimated, and nothing is tiled: :func:`denoise.inference.restore` is the way to run the
registered ``ee559-project1`` on large images). Its epoch loop draws a fresh permutation
of the pairs each epoch, applies one of the eight symmetries of the square (flips only
for non-square images) identically to input and target
(:func:`denoise.symmetries.per_image`), swaps input and target at random (both are noisy
views), and sets the learning rate with the library trainer's schedule
(:func:`denoise.training.config.learning_rate`), defined over all the steps of the call.
Subclasses provide the network and one optimisation step.

Pretrained weights are a state dict: ``bestmodel.pth`` beside an exported ``model.py``
(``torch.save`` of tensors, loadable with ``weights_only=True``), else the package's
``weights/ee559-projectN.safetensors`` (for a torch network, loaded by the registry's
:func:`denoise.models.registry.load_weights`). A named device is checked as the rest of
the library checks it (:func:`denoise.inference.resolve_device`); by default the models
run on CUDA when it is available, else on the CPU.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar

import torch

from ..errors import InputError, ModelError
from ..inference import resolve_device
from ..models.registry import WEIGHTS_DIR
from ..symmetries import per_image
from ..training.config import SCHEDULES, TrainConfig, learning_rate

__all__ = ["CourseModel", "MIN_SIDE", "check_course_batch", "to_unit", "load_state",
           "shipped_weights"]

#: Smallest image side accepted by ``predict`` and ``train``.
MIN_SIDE = 2

#: Called after each epoch of :meth:`CourseModel.train` with (epoch, mean training loss).
EpochCallback = Callable[[int, float], None]


def check_course_batch(x, name: str) -> torch.Tensor:
    """Check a course tensor: (N, 3, H, W), uint8 or float, N >= 1, H and W >= MIN_SIDE,
    finite values. Returns it unchanged; raises InputError saying what to pass."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor (N, 3, H, W) of values 0-255, "
                         f"got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise InputError(f"{name} must have shape (N, 3, H, W) (RGB images), got {tuple(x.shape)}")
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise InputError(f"{name} must be uint8 or float with values 0-255, got dtype {x.dtype}; "
                         "convert with .float()")
    if x.shape[0] == 0:
        raise InputError(f"{name} is an empty batch {tuple(x.shape)}; pass at least one image")
    if min(x.shape[-2:]) < MIN_SIDE:
        raise InputError(f"{name} images are {x.shape[-2]}x{x.shape[-1]} pixels; they must be at "
                         f"least {MIN_SIDE}x{MIN_SIDE}")
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise InputError(f"{name} contains NaN or infinite values")
    return x


def to_unit(x: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """Course values 0-255 (uint8 or float) -> float32 in [0, 1], on ``device``."""
    return x.to(device=device, dtype=torch.float32).div_(255).clamp_(0, 1)


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or from a ``torch.save`` file (``.pth``), read
    without running code from the file; ModelError when it is missing or not one."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors, zip and unpickling errors all mean a bad file
        raise ModelError(f"cannot read weights {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} does not hold a state dict (names -> tensors)")
    return dict(state)


def shipped_weights(name: str) -> Path:
    """The package's weights file ``weights/NAME.safetensors`` (which may not exist)."""
    return WEIGHTS_DIR / f"{name}.safetensors"


def augment(inp: torch.Tensor, tgt: torch.Tensor, generator: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """A random symmetry of the square per pair (flips only for non-square images), the
    same for input and target, and a random swap of input and target."""
    n = inp.shape[0]
    masks = (torch.rand(4, n, 1, 1, 1, generator=generator) < 0.5).to(inp.device)
    if inp.shape[-1] != inp.shape[-2]:
        masks[0] = False
    inp, tgt = (per_image(t, masks[0], masks[1], masks[2]) for t in (inp, tgt))
    return torch.where(masks[3], tgt, inp), torch.where(masks[3], inp, tgt)


class CourseModel:
    """Base class of the course models: checks, conversions, batching, the epoch loop.

    Subclasses set :attr:`weights_name` and implement :meth:`_forward` (float32 images in
    [0, 1] to the same), :meth:`_train_step`, :meth:`state_dict` and
    :meth:`load_state_dict`. An exported ``model.py`` sets :attr:`bestmodel` to the
    ``bestmodel.pth`` beside it.
    """

    #: Name of the shipped weights (``weights/NAME.safetensors`` and ``NAME.json``).
    weights_name: ClassVar[str]
    #: A ``bestmodel.pth`` read by :meth:`load_pretrained_model` when it exists.
    bestmodel: ClassVar[Path | None] = None

    def __init__(self, *, batch_size: int, lr: float, schedule: str = "rampdown",
                 rampdown: float = 0.3, predict_batch: int = 256, seed: int = 0,
                 device: str | torch.device | None = None) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
        if schedule not in SCHEDULES:
            raise InputError(f"schedule must be one of {sorted(SCHEDULES)}, got {schedule!r}")
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise InputError(f"lr must be a positive number, got {lr!r}")
        if not (isinstance(rampdown, (int, float)) and 0 <= rampdown <= 1):
            raise InputError(f"rampdown must be a fraction in [0, 1], got {rampdown!r}")
        self.batch_size, self.lr, self.schedule, self.rampdown = batch_size, float(lr), schedule, rampdown
        self.predict_batch = predict_batch
        self.device = resolve_device(device) if device is not None else \
            torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.generator = torch.Generator().manual_seed(seed)

    # ------------------------------------------------------------------ the course API

    def load_pretrained_model(self) -> None:
        """Load ``bestmodel.pth`` beside the exported ``model.py`` if there is one, else the
        package's shipped weights; ModelError when neither exists or they do not fit."""
        path = self.bestmodel if self.bestmodel is not None and Path(self.bestmodel).is_file() \
            else shipped_weights(self.weights_name)
        if not path.is_file():
            raise ModelError(f"no pretrained weights for {type(self).__module__}.Model: {path} is "
                             f"missing; train them with 'denoise ee559 train'")
        self._load_weights(Path(path))

    def train(self, train_input: torch.Tensor, train_target: torch.Tensor, num_epochs: int, *,
              on_epoch: EpochCallback | None = None) -> None:
        """Train on pairs of noisy views (N, 3, H, W), values 0-255, for ``num_epochs``.

        Each epoch visits every pair once in a fresh random order (see the module
        docstring for the augmentation and the learning-rate schedule); ``on_epoch`` is
        called after each epoch with its number (from 1) and mean training loss.
        """
        check_course_batch(train_input, "train_input")
        check_course_batch(train_target, "train_target")
        if train_input.shape != train_target.shape:
            raise InputError(f"train_input {tuple(train_input.shape)} and train_target "
                             f"{tuple(train_target.shape)} must have the same shape")
        if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 1:
            raise InputError(f"num_epochs must be a positive int, got {num_epochs!r}")
        n = train_input.shape[0]
        schedule = self._schedule(num_epochs * math.ceil(n / self.batch_size))
        step = 0
        self._set_mode(training=True)
        try:
            for epoch in range(1, num_epochs + 1):
                order = torch.randperm(n, generator=self.generator)
                losses = []
                for start in range(0, n, self.batch_size):
                    idx = order[start:start + self.batch_size].to(train_input.device)
                    inp, tgt = augment(to_unit(train_input[idx], self.device),
                                       to_unit(train_target[idx], self.device), self.generator)
                    losses.append(self._train_step(inp, tgt, learning_rate(step, schedule)))
                    step += 1
                if on_epoch is not None:
                    on_epoch(epoch, sum(losses) / len(losses))
        finally:
            self._set_mode(training=False)

    def predict(self, test_input: torch.Tensor) -> torch.Tensor:
        """Denoise (N, 3, H, W) images of values 0-255 (uint8 or float); returns float32
        values in [0, 255] of the same shape, on the input's device."""
        check_course_batch(test_input, "test_input")
        self._set_mode(training=False)
        out = torch.empty(test_input.shape, dtype=torch.float32, device=test_input.device)
        with torch.no_grad():
            for start in range(0, test_input.shape[0], self.predict_batch):
                x = to_unit(test_input[start:start + self.predict_batch], self.device)
                y = self._forward(x).clamp(0, 1).mul_(255)
                out[start:start + x.shape[0]] = y.to(out.device)
        return out

    # ------------------------------------------------------------------ for subclasses

    def _schedule(self, steps: int) -> TrainConfig:
        """The learning-rate schedule of a call to :meth:`train` of ``steps`` steps, as the
        library's trainer defines it (``learning_rate(step, config)``)."""
        return TrainConfig(lr=self.lr, schedule=self.schedule, rampdown=self.rampdown, steps=steps)

    def _load_weights(self, path: Path) -> None:
        """Load a weights file (``.safetensors`` or the course's ``bestmodel.pth``)."""
        self.load_state_dict(load_state(path))

    def _set_mode(self, training: bool) -> None:
        """Switch the network to training or evaluation behaviour (where it has one)."""

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Denoise float32 images in [0, 1] (N, 3, H, W), on :attr:`device`."""
        raise NotImplementedError

    def _train_step(self, inp: torch.Tensor, tgt: torch.Tensor, lr: float) -> float:
        """One optimisation step on a batch at learning rate ``lr``; returns the loss."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The network's weights (CPU tensors), as saved in ``bestmodel.pth``."""
        raise NotImplementedError

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load weights; ModelError when they do not fit the network."""
        raise NotImplementedError
