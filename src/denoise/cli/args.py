"""Argument types shared by the subcommands (the 0-255 noise scale lives here, at the
command line's edge: values are converted to the library's 0-1 scale where they are used)."""
from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Callable


def sigma_arg(text: str) -> float | None:
    """A noise level on the 0-255 scale, or "estimated" (None)."""
    if text.strip().lower() in ("estimated", "estimate", "auto"):
        return None
    return sigma_value(text)


def number(text: str, *, low: float, high: float, what: str, low_open: bool = False, unit: str = "") -> float:
    """``text`` as a float in [low, high] (or (low, high]); an argparse error naming ``what``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number{unit} for {what}, got {text!r}") from None
    inside = (low < value if low_open else low <= value) and value <= high  # also refuses nan
    if not inside:
        raise argparse.ArgumentTypeError(f"{what} must be in {'(' if low_open else '['}{low:g}, {high:g}]"
                                         f"{unit}, got {text}")
    return value


def sigma_value(text: str) -> float:
    """A number in (0, 255]: a noise standard deviation on the 0-255 scale."""
    return number(text, low=0, high=255, low_open=True, what="sigma", unit=" on the 0-255 scale")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def comma_list(item: Callable[[str], object] = str) -> Callable[[str], list]:
    """An argument type for comma-separated values, each converted by ``item``."""

    def parse(text: str) -> list:
        parts = [p.strip() for p in text.split(",")]
        if not all(parts):
            raise argparse.ArgumentTypeError(f"empty item in the list {text!r}")
        return [item(p) for p in parts]

    parse.__name__ = "list"
    return parse



def paragraphs(*texts: str) -> str:
    """Help text wrapped to 80 columns, paragraphs kept apart (for raw formatters)."""
    return "\n\n".join(textwrap.fill(t, 80) for t in texts)


def one_line(message: object) -> str:
    """A message on one line (errors and warnings are printed so)."""
    return " ".join(str(message).split()) or type(message).__name__


PROG = "denoise"


def error(message: object) -> None:
    """Print ``denoise: error: MESSAGE`` as one line on stderr."""
    print(f"{PROG}: error: {one_line(message)}", file=sys.stderr)


def add_file_arguments(p, *, suffix_example: str) -> None:
    """The file handling shared by ``run`` and ``upscale``: inputs, output folder, --force,
    --suffix, --recursive, --mkdir, --device and --quiet."""
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files (.png .jpg .tif ...) or folders of images")
    p.add_argument("-o", "--out", required=True, metavar="DIR",
                   help="output folder; it must exist unless --mkdir is given")
    p.add_argument("-f", "--force", action="store_true", help="replace existing output files")
    p.add_argument("--suffix", default="", metavar="TEXT",
                   help=f"added to each output file name before its extension, e.g. {suffix_example}")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="also read the sub-folders of folder inputs (mirrored under OUT)")
    p.add_argument("--mkdir", action="store_true", help="create the output folder if missing")
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda|mps",
                   help="where the model runs (default auto: CUDA, else MPS, else the CPU)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or per-file lines")
