"""Subcommands for the EE-559 course: its data, its project folder, the shipped weights.

* ``denoise data ee559 --source DIR --out DIR``: rebuild ``train_data.pkl`` and
  ``val_data.pkl`` from photos (:mod:`denoise.ee559.data`);
* ``denoise ee559 export DIR``: write the course's project folder (:mod:`denoise.ee559.export`);
* ``denoise ee559 train N --data DIR --epochs E``: the run behind mini-project N's shipped
  weights (:mod:`denoise.ee559.pretrain`).

The library works on the 0-1 noise scale; these commands print sigma on the 0-255 scale
and set torch's thread count (a process setting: the command line's, not the library's).
"""
from __future__ import annotations

import argparse
import shlex
import sys

from .args import positive_int


def _command_line() -> str:
    """The command being run, as one shell-quoted line (for records of how files were made)."""
    return "denoise " + shlex.join(sys.argv[1:])


def _cmd_data_ee559(args: argparse.Namespace) -> int:
    """``denoise data ee559``: build the course data and write it into ``--out``."""
    from ..ee559.data import build_ee559_data, course_psnr, write_ee559_data

    data = build_ee559_data(args.source, val_source=args.val_source, n_train=args.n_train,
                            n_val=args.n_val, target_psnr=args.target_psnr, seed=args.seed)
    train, val = write_ee559_data(args.out, data, overwrite=args.force, command=_command_line())
    print(f"wrote {train} (2 x {tuple(data.train_input.shape)} uint8, from "
          f"{len(data.train_images)} images) and {val} (noisy + clean {tuple(data.val_input.shape)}"
          f" uint8, from {len(data.val_images)} other images)")
    print(f"noise sigma {255 * data.sigma:.2f}/255; noisy validation PSNR "
          f"{course_psnr(data.val_input, data.val_target):.2f} dB")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    """``denoise ee559 export DIR``: write the course's project folder."""
    from ..ee559.export import export_project

    root = export_project(args.dir, overwrite=args.force)
    print(f"wrote the course project folder {root}: Miniproject_1 and Miniproject_2, each with "
          "__init__.py, model.py and bestmodel.pth")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    """``denoise ee559 train N``: the training run behind mini-project N's shipped weights."""
    import torch

    from ..ee559.pretrain import pretrain

    if args.threads:
        torch.set_num_threads(args.threads)
    path = pretrain(args.project, args.data, epochs=args.epochs, holdout=args.holdout,
                    name=args.name, weights_dir=args.weights_dir, seed=args.seed,
                    command=_command_line())
    print(f"wrote {path} and its model card {path.with_suffix('.json')}")
    return 0


def register(subparsers) -> None:
    """Add ``data ee559`` and ``ee559 {export,train}`` to the ``denoise`` command line."""
    data = subparsers.add_parser("data", help="build datasets (the EE-559 course data)")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="DATASET")
    p = data_sub.add_parser(
        "ee559", help="rebuild the EE-559 train_data.pkl / val_data.pkl from real photos",
        description="Write train_data.pkl (two independently noisy 32x32 views of N crops) and "
                    "val_data.pkl (noisy crops and their clean versions), uint8 (N, 3, 32, 32), "
                    "deterministic from --seed. See denoise.ee559.data for the recipe.")
    p.add_argument("--source", required=True, help="folder of training photos (e.g. CBSD432)")
    p.add_argument("--val-source", default=None,
                   help="folder of validation photos, disjoint from --source "
                        "(default: hold out the last 10%% of --source)")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--n-train", type=int, default=50_000)
    p.add_argument("--n-val", type=int, default=1_000)
    p.add_argument("--target-psnr", type=float, default=20.7,
                   help="PSNR of the noisy validation input, sets the noise level (default 20.7 dB)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="overwrite existing .pkl files")
    p.set_defaults(func=_cmd_data_ee559)

    ee = subparsers.add_parser("ee559", help="the EPFL EE-559 Noise2Noise course API")
    ee_sub = ee.add_subparsers(dest="ee559_command", required=True, metavar="COMMAND")
    e = ee_sub.add_parser("export", help="write a course project folder (Miniproject_1, Miniproject_2)",
                          description="Write DIR/Miniproject_1 and DIR/Miniproject_2, each with "
                                      "__init__.py, model.py (thin imports from denoise) and "
                                      "bestmodel.pth (the pretrained weights).")
    e.add_argument("dir", help="project folder to write (e.g. Proj_000000_000000_000000)")
    e.add_argument("--force", action="store_true", help="overwrite an existing project folder's files")
    e.set_defaults(func=_cmd_export)

    t = ee_sub.add_parser("train", help="train a mini-project's model and write its weights",
                          description="Train denoise.ee559.projectN.Model with its own train() on "
                                      "DATA/train_data.pkl minus the last --holdout pairs, keep the "
                                      "epoch that scores best on those held-out pairs, score it once "
                                      "on DATA/val_data.pkl, and write NAME.safetensors and the "
                                      "model card NAME.json (default: the package's weights).")
    t.add_argument("project", type=int, choices=(1, 2), help="mini-project number")
    t.add_argument("--data", required=True, help="folder with train_data.pkl and val_data.pkl")
    t.add_argument("--epochs", type=int, required=True, help="training epochs over the pairs")
    t.add_argument("--holdout", type=int, default=1000,
                   help="training pairs held out to choose the epoch (default 1000)")
    t.add_argument("--name", default=None, help="weights name (default ee559-projectN)")
    t.add_argument("--weights-dir", default=None,
                   help="folder for NAME.safetensors and NAME.json (default: the package's weights)")
    t.add_argument("--seed", type=int, default=0, help="seed of initialisation and batches")
    t.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    t.set_defaults(func=_cmd_train)
