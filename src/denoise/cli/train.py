"""Command line for training: ``denoise train`` and ``denoise export-weights``.

``denoise train --config FILE [--option VALUE ...]`` trains with the options of a JSON
config file, overridden by flags (one flag per :class:`denoise.training.TrainConfig` field,
``--batch-size 32``, ``--no-progress``, ...). ``--resume`` continues the run in ``--out``.
``denoise export-weights RUN_DIR NAME`` turns a run's checkpoint into weights and a
model card in the user model folder (usable at once: ``denoise run -m NAME``).

Under ``torchrun --nproc_per_node=N -m denoise train ...`` the run uses
DistributedDataParallel.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

PROG = "denoise"
_SKIP = {"model_kwargs"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _value_type(tp):
    """The argparse ``type`` for a dataclass field annotation ('int | None' -> int)."""
    tp = str(tp)
    for name, fn in (("bool", None), ("int", int), ("float", float), ("str", str)):
        if tp.startswith(name):
            return name, fn
    return "str", str


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise argparse.ArgumentTypeError(f"not JSON: {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"features\": 32}'")
    return value


def _none_or(fn):
    def parse(text: str):
        return None if text.lower() in ("none", "null") else fn(text)

    parse.__name__ = fn.__name__
    return parse


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; unset flags stay None (the config file decides)."""
    from ..training import OPTION_HELP, TrainConfig

    p.add_argument("--config", metavar="FILE", help="JSON file of training options (flags override it)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--model-kwargs", metavar="JSON", type=_json_object, default=None,
                   help=OPTION_HELP["model_kwargs"])
    for f in dataclasses.fields(TrainConfig):
        if f.name in _SKIP:
            continue
        kind, fn = _value_type(f.type)
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = OPTION_HELP[f.name]
        if "default" not in help_text:
            help_text += f" (default: {default})"
        if kind == "bool":
            p.add_argument(_flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction,
                           default=None, help=help_text)
        else:
            optional = "None" in str(f.type)
            p.add_argument(_flag(f.name), dest=f.name, default=None, metavar=f.name.upper(),
                           type=_none_or(fn) if optional else fn, help=help_text)


def config_from_args(args: argparse.Namespace):
    """The TrainConfig of a config file (if any) overridden by the flags given."""
    from ..training import TrainConfig

    base = TrainConfig.from_file(args.config).to_dict() if args.config else {}
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            base[f.name] = value
    return TrainConfig.from_dict(base)


def _train_argv(argv: list[str]) -> list[str]:
    """The arguments after the ``train`` subcommand (the whole list when it is absent)."""
    return argv[argv.index("train") + 1:] if "train" in argv else argv


def run_train(args: argparse.Namespace) -> int:
    import torch

    from ..training import Trainer

    config = config_from_args(args)
    if config.threads:
        torch.set_num_threads(config.threads)  # a process setting: the command line's, not the Trainer's
    trainer = Trainer(config)
    argv = _train_argv(sys.argv[1:])
    cmd = "denoise train " + shlex.join(argv)
    resume_cmd = cmd if "--resume" in argv else cmd + " --resume"
    if trainer.dist.main:
        trainer.run_dir.mkdir(parents=True, exist_ok=True)
        if not args.resume:
            (trainer.run_dir / "command.txt").write_text(cmd + "\n")
    try:
        result = trainer.fit(resume=args.resume)
    except KeyboardInterrupt:
        if trainer.dist.main:
            print(f"{PROG}: interrupted at step {trainer.step}; the checkpoint of step {trainer.step} is in "
                  f"{trainer.run_dir / 'checkpoint.pt'}; continue with: {resume_cmd}", file=sys.stderr)
        return 130
    if trainer.dist.main:
        val = ""
        if result.val_psnr is not None:
            val = (f", validation PSNR {result.val_psnr:.2f} dB"
                   + (" (against noisy target views: see VALIDATION.txt)" if trainer.noisy_reference else ""))
        end = min(config.steps, config.stop_at) if config.stop_at else config.steps
        print(f"step {result.step}: loss {result.loss:.6f}{val}; run saved in {result.run_dir}")
        if result.step < end:
            print(f"stopped before step {end}; continue with: {resume_cmd}", file=sys.stderr)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from ..training import export_weights

    path = export_weights(args.run_dir, args.name, weights_dir=args.out, command=args.command,
                          note=args.note, overwrite=args.force, precise_bn=args.precise_bn)
    card = json.loads(path.with_suffix(".json").read_text())
    bn = card.get("bn_statistics")
    if bn and bn["validation_psnr_before"] is not None:
        print(f"batch-norm statistics over {bn['batches']} batches: validation PSNR "
              f"{bn['validation_psnr_before']:.2f} -> {bn['validation_psnr_after']:.2f} dB")
    scale = card.get("model_kwargs", {}).get("scale")
    use = f"upscale IMAGE --scale {scale}" if scale else "run IMAGE"
    print(f"wrote {path} and {path.with_suffix('.json').name}; use it with: "
          f"denoise {use} -o OUT -m {args.name if args.out is None else path}")
    return 0


def register(subparsers) -> None:
    """Add the ``train`` and ``export-weights`` subcommands to a CLI's subparsers."""
    p = subparsers.add_parser(
        "train", help="train a denoiser (noisy or clean targets, or single noisy images)",
        description="Train a denoiser with noisy (Noise2Noise) or clean targets, or from single noisy "
                    "images (--target self [--self-mode pd]; --noise none for a folder of noisy photos). "
                    "Options come from "
                    "--config FILE, overridden by flags; --resume continues the run in --out exactly. "
                    "Under torchrun --nproc_per_node=N the global batch is split across processes.")
    add_train_arguments(p)
    p.set_defaults(func=run_train)
    e = subparsers.add_parser("export-weights", help="turn a training run into weights + model card in your model folder")
    e.add_argument("run_dir", type=Path, help="training run folder (holds checkpoint.pt)")
    e.add_argument("name", help="a name for your model, e.g. my-camera")
    e.add_argument("--out", "--weights-dir", dest="out", type=Path, default=None, metavar="DIR",
                   help="output folder (default: the user model folder, $DENOISE_MODELS or "
                        "~/.local/share/denoise/models; models there are used by name)")
    e.add_argument("-f", "--force", action="store_true", help="replace existing files of that name")
    e.add_argument("--command", default=None, help="the reproduce command for the model card "
                   "(default: the run's command.txt)")
    e.add_argument("--note", default=None, help="free text for the model card's 'note' (for "
                   "instance the learning-rate history of a run resumed with other step counts)")
    e.add_argument("--precise-bn", type=int, default=0, metavar="N",
                   help="recompute the batch-norm statistics as the mean over N batches of the "
                        "run's training data (its images must be where the run found them); "
                        "the card records it with the validation PSNR before and after (default "
                        "0: keep the running averages of training)")
    e.set_defaults(func=run_export)
