"""The ``denoise`` command: one program, several subcommands.

* ``denoise run INPUT... -o OUT``: denoise image files and folders of images.
* ``denoise demo``: every available model on bundled photos; table and figures.
* ``denoise bench --data SET``: mean PSNR/SSIM on test sets, beside published figures.
* ``denoise models``: the registered models, whether they can run here, their cards.
* ``denoise fit FOLDER -o OUT``: fine-tune a model on one's own noisy photos, then denoise them.

Other modules contribute subcommands through ``register(subparsers)`` (``train``,
``data ee559``, ``ee559 export``). Exit status: 0 on success; 2 for a usage error or any
problem found before work starts (bad option, missing input, unknown model, missing
output folder, an output that exists without ``--force``); 1 when ``run`` went through
all its inputs but some of them failed (each listed at the end); 130 when interrupted.
Every user error is one line ``denoise: error: ...`` on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import Sequence

from .. import __version__
from ..errors import DenoiseError
from . import blur, ee559, evaluate, export, fit, models, report, run, serve, train, upscale
from .args import PROG, error, one_line

#: The modules adding subcommands, in the order of ``denoise --help``.
COMMANDS = (run, upscale, blur, evaluate, report, models, train, fit, ee559, serve, export)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return int(args.func(args) or 0)
        except DenoiseError as exc:
            error(exc)
            return 2
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # the reader went away (denoise models | head): not an error
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line ``denoise: warning: ...`` instead of a source excerpt."""
    print(f"{PROG}: warning: {one_line(message)}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Image denoising: trained and classical denoisers, benchmarks and a demo.",
        epilog="Run 'denoise COMMAND --help' for a command's options. Quick look: 'denoise demo'.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


if __name__ == "__main__":  # python -m denoise.cli.main
    sys.exit(main())


