"""One command for the gated-denoiser report: run every experiment, then collect their reports.

Runs, each as its own process and in this order (a script that is not there is skipped):

1. ``benchmarks/gates_claim.py``: plain vs fixed vs learned gates vs RED-Net skips, and the
   classical baselines, on mixed noise (``gates_claim.md`` / ``.png``);
2. ``benchmarks/cifar_classifier.py``: the CIFAR10 classifier behind the perceptual loss;
3. ``benchmarks/perceptual_loss.py``: pixel vs feature vs mixed losses for the gated network;
4. ``benchmarks/pretraining.py``: the classifier initialised from the denoiser's encoder;

then writes ``gated_denoisers.md`` beside their reports: every report in full (headings two
levels down), in that order, its figures linked (all files share the report folder)::

    python benchmarks/issue17_report.py            # everything (hours; finished runs are reused)
    python benchmarks/issue17_report.py --quick    # smoke test: --quick to every script,
                                                   # reports under runs/issue17_quick/
    python benchmarks/issue17_report.py --collect  # only rebuild gated_denoisers.md

Every script resumes its interrupted runs and reuses finished ones, so re-running after an
interruption continues where it stopped. A script that fails is reported (its exit status)
and the others still run; the command then exits with status 1.
"""
from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from denoise.evaluation.testsets import repo_root
from denoise.utils import write_text

HERE = Path(__file__).resolve().parent
#: (script stem, section title), in the order they run (the classifier before the
#: perceptual loss that uses it, the perceptual loss's pixel row before the pre-training).
PARTS = (
    ("gates_claim", "Gated skip connections (issue 17, item 3)"),
    ("cifar_classifier", "The CIFAR10 classifier behind the perceptual loss"),
    ("perceptual_loss", "Perceptual loss (issue 17, item 5)"),
    ("pretraining", "Denoising as pre-training (issue 17, item 6)"),
)
REPORT = "gated_denoisers.md"


def run_part(stem: str, quick: bool, out: Path) -> int | None:
    """Run ``benchmarks/<stem>.py`` (None when it does not exist); its exit status."""
    script = HERE / f"{stem}.py"
    if not script.is_file():
        return None
    command = [sys.executable, str(script), *(["--quick"] if quick else []), "--out", str(out)]
    print(f"== {' '.join(shlex.quote(c) for c in command)}", flush=True)
    return subprocess.run(command, check=False).returncode


def demote(markdown: str) -> str:
    """Every heading two levels down (``#`` -> ``###``), so that a report nests under its section."""
    return re.sub(r"^(#{1,4}) ", r"##\1 ", markdown, flags=re.MULTILINE)


def collect(out: Path, statuses: dict[str, int | None], command: str) -> Path:
    """Write ``out/gated_denoisers.md`` from the reports found in ``out``."""
    text = ["# Gated conv/deconv denoisers: skips, perceptual loss, pre-training", "",
            f"Regenerate with `{command}`; each section below is the report its script wrote "
            "in this folder, included whole (tables, verdicts, figures).", ""]
    contents = []
    for stem, title in PARTS:
        path = out / f"{stem}.md"
        status = statuses.get(stem, "not run")
        if path.is_file():
            contents.append(f"- [{title}](#{_anchor(title)}): `{stem}.md`"
                            + ("" if status in (0, "not run") else f" (last run failed, status {status}: "
                               "an older report)"))
        else:
            why = "no script" if status is None else f"no report (status {status})"
            contents.append(f"- {title}: {why}")
    text += contents + [""]
    for stem, title in PARTS:
        path = out / f"{stem}.md"
        if not path.is_file():
            continue
        text += [f"## {title}", "", f"From [`{stem}.md`]({stem}.md), made by `python benchmarks/{stem}.py`.", "",
                 demote(path.read_text().strip()), ""]
    target = out / REPORT
    write_text(target, "\n".join(text))
    return target


def _anchor(title: str) -> str:
    """The GitHub anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", title.lower()).strip().replace(" ", "-")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="pass --quick to every script (a smoke test)")
    p.add_argument("--out", type=Path, help="report folder (default benchmarks/results; --quick: "
                   "runs/issue17_quick)")
    p.add_argument("--skip", nargs="+", default=[], choices=[s for s, _ in PARTS], help="do not run these scripts")
    p.add_argument("--collect", action="store_true", help="run nothing; rebuild the collected report")
    args = p.parse_args(argv)
    base = repo_root() or Path.cwd()
    out = args.out or (base / "runs" / "issue17_quick" if args.quick else base / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    statuses: dict[str, int | None] = {}
    if not args.collect:
        for stem, _ in PARTS:
            if stem not in args.skip:
                statuses[stem] = run_part(stem, args.quick, out)
    command = "python benchmarks/issue17_report.py" + "".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:]))
    target = collect(out, statuses, command)
    failed = {s: c for s, c in statuses.items() if c not in (0, None)}
    print(f"wrote {target} ({(time.perf_counter() - start) / 60:.1f} min)"
          + (f"; failed: {', '.join(f'{s} (status {c})' for s, c in failed.items())}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
