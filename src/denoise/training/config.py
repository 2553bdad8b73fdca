"""Training configuration: every option of a run, its help line, and the learning-rate
schedules (pure functions of the step and the planned total)."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from .losses import loss_for_noise

# --------------------------------------------------------------------------- configuration

#: Noise specs that mean "the folder's images are already noisy" (target="self" only).
NO_NOISE = ("none", "real")
#: The options of target="self" (set only with it).
SELF_OPTIONS = ("self_mode", "self_gamma", "self_ramp", "pd_stride", "pd_infer_stride")


@dataclass
class TrainConfig:
    """Everything that defines a training run. Paths may be relative to the working folder."""

    # model
    model: str = "n2n-unet"
    model_kwargs: dict = field(default_factory=dict)
    init: str | None = None
    init_widen: bool = False
    init_deepen: bool = False
    # data: "folder" (clean images + noise), "pairs" (noisy pair images), "pkl" (EE-559 pairs),
    # "sr" (clean images -> bicubic low-resolution inputs, for a ``scale``-times upscaler)
    data: str = "folder"
    scale: int | None = None
    train_dir: str | None = None
    target_dir: str | None = None
    input_suffix: str = ""
    target_suffix: str = ""
    pkl: str | None = None
    gray: bool | None = None
    noise: str = "gaussian:0-50"
    target: str = "noisy"
    self_mode: str = "n2n"
    self_gamma: float = 2.0
    self_ramp: bool = True
    pd_stride: int = 2
    pd_infer_stride: int = 1
    swap: bool = True
    val_count: int | None = None
    val_clean: str | None = None
    val_noise: str | None = None
    val_crop: int | None = None
    zoom: float | None = None
    # optimisation
    crop: int | None = 64
    batch_size: int = 16
    steps: int = 10000
    stop_at: int | None = None
    lr: float = 3e-4
    schedule: str = "rampdown"
    rampdown: float = 0.3
    warmup: int = 0
    beta1: float = 0.9
    beta2: float = 0.99
    loss: str = "auto"
    l0_floor: float = 0.1
    freeze_bn: bool = False
    seed: int = 0
    # run
    out: str = "runs/train"
    minutes: float | None = None
    checkpoint_every: int = 500
    val_every: int | None = None
    log_every: int = 10
    device: str = "auto"
    threads: int | None = None
    channels_last: bool = False
    amp: str = "none"
    device_data: bool = False
    compile: bool = False
    progress: bool = True
    plot: bool = True

    # Fields that may change when a run is resumed (run control and data locations).
    RESUMABLE = ("steps", "stop_at", "minutes", "out", "checkpoint_every", "val_every", "log_every", "device",
                 "threads", "progress", "plot", "train_dir", "target_dir", "pkl", "compile", "val_clean",
                 "device_data")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"unknown training option(s) {unknown}; known: {sorted(names)}")
        return cls(**d)

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"config file not found: {path}") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read config {path}: {exc}") from None
        if not isinstance(d, dict):
            raise InputError(f"config {path} must hold a JSON object of training options")
        d.pop("_comment", None)
        return cls.from_dict(d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Raise InputError for an option out of range."""
        checks = [
            (self.data in ("folder", "pairs", "pkl", "sr"), "--data must be 'folder', 'pairs', 'pkl' or 'sr'"),
            ((self.data == "sr") == (self.scale is not None), "--scale (2, 3 or 4) goes with --data sr, and only with it"),
            (self.scale in (None, 2, 3, 4), "--scale must be 2, 3 or 4"),
            (self.data != "sr" or self.target != "self", "--data sr learns from clean images (its targets are "
             "the originals): --target does not apply"),
            (self.target in ("noisy", "clean", "self"), "--target must be 'noisy', 'clean' or 'self'"),
            (self.self_mode in ("n2n", "pd"), "--self-mode must be 'n2n' or 'pd'"),
            (self.target == "self" or all(getattr(self, k) == TrainConfig.__dataclass_fields__[k].default
                                          for k in SELF_OPTIONS), "--self-mode, --self-gamma and --pd-*stride "
             "need --target self"),
            (self.target != "self" or self.data == "folder", "--target self learns from single noisy "
             "images: use --data folder (clean images plus --noise, or noisy photos with --noise none)"),
            (self.noise not in NO_NOISE or self.target == "self", f"--noise {self.noise} (the images are "
             "already noisy) needs --target self: there is no clean or second noisy view to learn from"),
            (self.self_gamma >= 0, "--self-gamma must be >= 0"),
            (1 <= self.pd_infer_stride <= self.pd_stride, "--pd-stride and --pd-infer-stride must satisfy "
             "1 <= pd_infer_stride <= pd_stride (asymmetric PD: the training stride is the larger)"),
            (self.crop is None or self.self_mode != "pd" or self.crop >= 4 * self.pd_stride,
             "--crop must be at least 4 * --pd-stride"),
            (self.schedule in SCHEDULES, f"--schedule must be one of {sorted(SCHEDULES)}"),
            (self.amp in ("none", "bf16"), "--amp must be 'none' or 'bf16'"),
            (self.steps > 0 and self.batch_size > 0, "--steps and --batch-size must be positive"),
            (self.minutes is None or self.minutes > 0, "--minutes must be positive"),  # also refuses nan
            (self.checkpoint_every > 0 and self.log_every > 0,
             "--checkpoint-every and --log-every must be positive"),
            (self.lr > 0, "--lr must be positive"),
            (0 <= self.rampdown <= 1, "--rampdown must be a fraction in [0, 1]"),
            (self.crop is None or self.crop >= 8, "--crop must be at least 8 pixels (or none for whole images)"),
            (self.val_count is None or self.val_count >= 0, "--val-count must be >= 0"),
            (self.val_clean is None or self.data == "pairs", "--val-clean needs --data pairs"),
            (self.zoom is None or (self.data == "folder" and self.noise not in NO_NOISE and self.crop is not None),
             "--zoom magnifies clean training crops before the noise: it needs --data folder, a --noise and "
             "a --crop"),
            (self.zoom is None or 1 <= self.zoom <= 8, "--zoom must be a factor in [1, 8]"),
            (not self.init_widen or self.init is not None, "--init-widen needs --init (the weights to widen)"),
            (not self.init_deepen or self.init is not None, "--init-deepen needs --init (the weights to deepen)"),
            (not (self.init_deepen and self.init_widen), "--init-deepen and --init-widen cannot be combined; "
             "widen and deepen in two runs"),
        ]
        for ok, msg in checks:
            if not ok:
                raise InputError(f"bad training option: {msg}")
        needed = {"folder": "train_dir", "pairs": "train_dir", "pkl": "pkl", "sr": "train_dir"}[self.data]
        if getattr(self, needed) is None:
            raise InputError(f"--data {self.data} needs --{needed.replace('_', '-')}")
        if self.target == "self" and self.loss_name() in ("masked_l2", "l2_rel"):
            raise InputError(f"bad training option: --target self cannot use {self.loss_name()} (it needs the "
                             "target's mask of known pixels, or a clean or second noisy view); pass --loss l2, "
                             "l1 or l0")

    def loss_name(self) -> str:
        if self.loss != "auto":
            return self.loss
        if self.data == "sr":
            return "l1"  # the SR literature's loss since EDSR/RDN
        if self.data != "folder" or self.target == "clean" or self.noise in NO_NOISE:
            return "l2"
        from .data import noise_kind

        return loss_for_noise(noise_kind(self.noise))

    def differences(self, other: "TrainConfig") -> list[str]:
        """Options (other than RESUMABLE ones) whose values differ, as 'name: a -> b'."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a[k]!r} (checkpoint) vs {b[k]!r} (now)" for k in a
                if k not in self.RESUMABLE and a[k] != b.get(k)]


#: One line of help per option (the command line shows them).
OPTION_HELP = {
    "model": "registered model name (n2n-unet, n2n-unet-gray, n2n-unet-color, unet-small, ...)",
    "model_kwargs": "extra keyword arguments of the model factory, e.g. {\"features\": 32}",
    "init": "start from these weights instead of random ones (fine-tuning): a model name with weights, "
            "a user model, a .safetensors file or a run folder; they must fit model and model_kwargs",
    "init_widen": "embed narrower init weights in a wider model (model_kwargs features larger than the init's): "
                  "old channels keep their weights, new ones start with random incoming and zero outgoing "
                  "weights, so the wider model computes what the init did and then learns",
    "init_deepen": "insert layers into a deeper conv+BN+ReLU chain (model_kwargs layers larger than the init's; "
                   "FFDNet, DnCNN): each new layer starts as an identity (a Dirac convolution, and batch "
                   "norm set from the statistics of its input on one training batch), so the deeper model "
                   "computes what the init did and then learns",
    "data": "folder (clean images + noise), pairs (noisy pair images), pkl (EE-559 pair file) or sr "
            "(clean images, bicubic-downscaled inputs: super-resolution; crop is the low-resolution patch)",
    "scale": "upscaling factor 2, 3 or 4 (data=sr only)",
    "train_dir": "folder of training images (data=folder), or of the input views (data=pairs)",
    "target_dir": "folder of the target views, matched by name (data=pairs; omit for a naming rule)",
    "input_suffix": "name-stem suffix of input views, e.g. _a (naming rule for data=pairs)",
    "target_suffix": "name-stem suffix of target views, e.g. _b (naming rule for data=pairs)",
    "pkl": ".pkl file holding two uint8 tensors (N, 3, 32, 32) (data=pkl)",
    "gray": "train on gray (true) or RGB (false) images; default: gray if all images are gray",
    "noise": "noise model spec (denoise.noise), e.g. gaussian:0-50 (a sigma range is blind, per image); "
             "none: the images are already noisy (target=self)",
    "target": "noisy (Noise2Noise: an independent noise draw), clean targets, or self: single noisy "
              "images, no pairs (data=folder; with noise none the folder holds noisy photos)",
    "self_mode": "target=self: n2n (Neighbor2Neighbor, pixel-independent noise) or pd (blind-spot "
                 "masking on pixel-shuffle-downsampled images, spatially correlated noise)",
    "self_gamma": "target=self, n2n: weight of the regulariser, ramped linearly from 0 to it over the run",
    "self_ramp": "target=self, n2n: ramp the regulariser's weight up from 0 over the steps (true, as when "
                 "training from scratch) or use self_gamma from the first step (false: fine-tuning)",
    "pd_stride": "target=self, pd: pixel-shuffle downsampling stride in training",
    "pd_infer_stride": "target=self, pd: the (smaller or equal) stride at inference and validation",
    "swap": "swap input and target views at random (data=pairs, pkl)",
    "val_count": "number of images/pairs held out (the last ones, sorted) for validation "
                 "(default: a tenth, at least 1, at most 20)",
    "val_clean": "folder of clean images named like held-out input views: validation PSNR is then "
                 "measured against them (data=pairs; without it, against the noisy target view)",
    "val_noise": "noise spec for validation (default: the training noise, a sigma range at its midpoint)",
    "zoom": "magnify each clean training crop by a factor drawn log-uniform in [1, zoom] (bicubic) "
            "before the noise, so that content is as smooth per pixel as in high-resolution photos "
            "(data=folder; validation unchanged; null: off)",
    "val_crop": "center crop of validation images (pixels; null: whole images)",
    "crop": "side of the random training crops (null: whole images)",
    "batch_size": "global batch size (split across processes under torchrun)",
    "steps": "total steps; the schedule is defined on it (may grow on --resume)",
    "stop_at": "stop at this step without changing the schedule",
    "lr": "peak Adam learning rate",
    "schedule": "learning-rate schedule: rampdown (constant, then cosine to 0), cosine or constant",
    "rampdown": "fraction of the steps over which rampdown decays the rate",
    "warmup": "steps of linear learning-rate warm-up",
    "beta1": "Adam beta1",
    "beta2": "Adam beta2",
    "loss": "l2, l1, l0 (annealed), masked_l2, l2_rel (L2 divided by each input's noise energy: "
             "clean targets, noise levels over decades), or auto (matched to the noise)",
    "l0_floor": "final exponent of the annealed L0 loss (> 0)",
    "freeze_bn": "keep batch-normalisation layers in inference mode: their running statistics stay those "
                 "of the initial weights (fine-tuning on few images; the scales and shifts still learn)",
    "seed": "seed of model initialisation, crops and noise",
    "minutes": "stop after this many minutes of wall time in this invocation, with a checkpoint (the "
               "schedule is unchanged; a resumed run gets a new budget); null: no time bound",
    "out": "run folder (checkpoint.pt, config.json, log.csv, curves.png)",
    "checkpoint_every": "steps between checkpoints (one is also written at exit)",
    "val_every": "steps between validations (default: checkpoint_every)",
    "log_every": "steps per log.csv row (mean loss over the window)",
    "device": "auto, cpu, cuda or cuda:N",
    "threads": "torch CPU threads (default: torch's choice)",
    "channels_last": "channels-last memory layout (faster convolutions on some CPUs)",
    "amp": "none or bf16 (bfloat16 autocast)",
    "device_data": "keep the training images on the device and draw batches there (GPUs, where the "
                   "CPU-side batch is the bottleneck); same crops, noise from a device generator",
    "compile": "torch.compile the model",
    "progress": "show a progress bar (loss, validation PSNR, images/s)",
    "plot": "redraw curves.png at each checkpoint",
}


# --------------------------------------------------------------------------- schedule


def _cosine(p: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(max(p, 0.0), 1.0)))


SCHEDULES = {
    "constant": lambda p, frac: 1.0,
    "cosine": lambda p, frac: _cosine(p),
    # constant, then a cosine ramp to 0 over the last ``frac`` of training (Noise2Noise)
    "rampdown": lambda p, frac: 1.0 if p < 1.0 - frac or frac == 0 else _cosine((p - (1.0 - frac)) / frac),
}


def learning_rate(step: int, config: TrainConfig) -> float:
    """The learning rate for the update that follows ``step`` completed steps."""
    factor = SCHEDULES[config.schedule](step / config.steps, config.rampdown)
    if config.warmup > 0:
        factor *= min(1.0, (step + 1) / config.warmup)
    return config.lr * factor


# --------------------------------------------------------------------------- data and model


def default_val_noise(config: TrainConfig) -> str:
    """The validation noise spec: ``val_noise``, else the training noise, with a Gaussian
    sigma range (blind training) replaced by its midpoint."""
    from ..noise import Gaussian, parse_noise

    if config.val_noise is not None or config.noise in NO_NOISE:
        return config.val_noise or config.noise
    noise = parse_noise(config.noise)
    if isinstance(noise, Gaussian) and isinstance(noise.sigma, tuple):
        return Gaussian(sum(noise.sigma) / 2, clip=noise.clip).spec
    return config.noise


