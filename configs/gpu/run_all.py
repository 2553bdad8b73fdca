"""Train several models at once on one GPU inside a fixed wall-clock budget.

A lent GPU comes for minutes, not hours, so the number of steps a recipe can afford is
only known once it runs. This driver starts every run with an open-ended ``steps``,
measures each run's steps per second while all of them share the GPU (the probe), stops
them (each checkpoints on SIGTERM), and resumes each with the ``steps`` that fits the
rest of the budget. The learning-rate schedule is a pure function of (step, steps) and
the probe ends long before any ramp-down starts, so the result is the run that the
config with that ``steps`` would give from scratch: the final ``config.json`` in each run
folder is the reproducible recipe. ``--minutes`` caps the second phase in case the
estimate was optimistic.

Run from the repository root (``PYTHONPATH=src`` where the package is not installed)::

    python configs/gpu/run_all.py --budget 470 --data data_local --pack OUT_DIR

``--data`` points the configs' ``train_dir`` at another folder holding ``Train400`` and
``CBSD432`` (a copy of ../shared/data's training folders, for machines without it).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = ("ffdnet-gray", "ffdnet-color", "rdn-x2", "rdn-x4")
OPEN_ENDED = 10_000_000


def log_rows(run: Path) -> list[dict]:
    path = run / "log.csv"
    if not path.exists():
        return []
    with path.open() as f:
        return [r for r in csv.DictReader(f) if r.get("wall_s")]


def rate_of(rows: list[dict], window: float) -> float | None:
    """Steps per second over the last ``window`` seconds of logged training."""
    if len(rows) < 2:
        return None
    last = rows[-1]
    t1, s1 = float(last["wall_s"]), int(last["step"])
    for r in reversed(rows[:-1]):
        t0, s0 = float(r["wall_s"]), int(r["step"])
        if t1 - t0 >= window:
            return (s1 - s0) / (t1 - t0)
    return None


def launch(name: str, cfg: Path, run: Path, extra: list[str], log_name: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "denoise", "train", "--config", str(cfg), "--out", str(run), *extra]
    with open(run.parent / f"{name}.{log_name}.txt", "w") as out:  # the child keeps its own copy
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated config names in configs/gpu")
    p.add_argument("--budget", type=float, default=470.0, help="seconds from now until every run has stopped")
    p.add_argument("--probe-window", type=float, default=20.0, 
                   help="seconds of logged training the rate is measured over")
    p.add_argument("--probe-max", type=float, default=100.0, help="longest probe, seconds")
    p.add_argument("--safety", type=float, default=0.9, help="fraction of the estimated steps to plan")
    p.add_argument("--runs", type=Path, default=Path("runs/gpu"))
    p.add_argument("--data", type=Path, default=None, help="folder holding Train400 and CBSD432")
    p.add_argument("--device", default="cuda")
    p.add_argument("--pack", type=Path, default=None, help="write <model>.tar of each run folder here")
    p.add_argument("--extra", default="", help="more train flags for every run, e.g. a smoke test's "
                   "'--batch-size 2 --log-every 2' (given to both phases)")
    a = p.parse_args(argv)
    t0 = time.monotonic()
    deadline = t0 + a.budget
    names = [n for n in a.models.split(",") if n]
    a.runs.mkdir(parents=True, exist_ok=True)
    runs = {n: a.runs / n for n in names}
    cfgs = {n: HERE / f"{n}.json" for n in names}
    common = ["--device", a.device, "--no-progress", *shlex.split(a.extra)]

    def data_args(n: str) -> list[str]:
        if a.data is None:
            return []
        train_dir = Path(json.loads(cfgs[n].read_text())["train_dir"]).name
        return ["--train-dir", str(a.data / train_dir)]

    # Phase 1: probe, all runs at once.
    procs, started = {}, {}
    for n in names:
        if (runs[n] / "checkpoint.pt").exists():
            print(f"{n}: {runs[n]} already holds a run; choose another --runs", file=sys.stderr)
            return 2
        procs[n] = launch(n, cfgs[n], runs[n], ["--steps", str(OPEN_ENDED), *common, *data_args(n)], "probe")
        started[n] = time.monotonic()
    first_row: dict[str, float] = {}
    rates: dict[str, float] = {}
    while time.monotonic() - t0 < a.probe_max:
        time.sleep(2)
        for n in names:
            rows = log_rows(runs[n])
            if rows and n not in first_row:
                first_row[n] = time.monotonic() - started[n]
            r = rate_of(rows, a.probe_window)
            if r is not None:
                rates[n] = r
        alive = [n for n in names if procs[n].poll() is None]
        if all(n in rates for n in alive) or not alive:
            break
    for n in names:
        if procs[n].poll() is None:
            procs[n].send_signal(signal.SIGTERM)
    for n in names:
        try:
            procs[n].wait(timeout=60)
        except subprocess.TimeoutExpired:
            procs[n].kill()
    print(f"probe done after {time.monotonic() - t0:.0f} s", flush=True)

    # Phase 2: resume each with the steps that fit the rest of the budget.
    summary = {}
    for n in names:
        rows = log_rows(runs[n])
        if procs[n].returncode not in (0, -signal.SIGTERM) and not (runs[n] / "checkpoint.pt").exists():
            print(f"{n}: the probe failed (exit {procs[n].returncode}); see {runs[n].parent / (n + '.probe.txt')}")
            summary[n] = {"error": f"probe exit {procs[n].returncode}"}
            continue
        step = int(rows[-1]["step"]) if rows else 0
        rate = rates.get(n) or rate_of(rows, 1.0)
        startup = first_row.get(n, 30.0)
        if rate is None:  # still loading when the probe ended: its config's own steps, time-capped
            rate = float(json.loads(cfgs[n].read_text())["steps"]) / max(1.0, deadline - time.monotonic())
            print(f"{n}: no rate measured in the probe; planned on its config's steps", flush=True)
        left = deadline - time.monotonic() - 10.0  # 10 s for the final checkpoints
        steps = step + max(100, int(rate * max(0.0, left - startup) * a.safety) // 100 * 100)
        minutes = max(30.0, left - startup) / 60.0
        summary[n] = {"probe_rate_steps_per_s": round(rate, 2), "probe_step": step,
                      "startup_s": round(startup, 1), "planned_steps": steps}
        print(f"{n}: {rate:.1f} steps/s in the probe (step {step}), startup {startup:.0f} s "
              f"-> steps {steps}, cap {minutes:.1f} min", flush=True)
        resume = ["--resume"] if (runs[n] / "checkpoint.pt").exists() else []
        procs[n] = launch(n, cfgs[n], runs[n], [*resume, "--steps", str(steps), "--minutes", f"{minutes:.3f}",
                                                 *common, *data_args(n)], "main")
    for n, pr in procs.items():
        if "error" in summary[n]:
            continue
        pr.wait()
        rows = log_rows(runs[n])
        vals = [r for r in rows if r.get("val_psnr")]
        summary[n].update({"exit": pr.returncode, "final_step": int(rows[-1]["step"]) if rows else None,
                           "last_val_psnr": float(vals[-1]["val_psnr"]) if vals else None,
                           "train_wall_s": float(rows[-1]["wall_s"]) if rows else None})
        print(f"{n}: {summary[n]}", flush=True)
    summary["_total_s"] = round(time.monotonic() - t0, 1)
    (a.runs / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if a.pack is not None:
        a.pack.mkdir(parents=True, exist_ok=True)
        for n in names:
            if runs[n].exists():
                with tarfile.open(a.pack / f"{n}.tar", "w") as tar:
                    tar.add(runs[n], arcname=n)
                    for log in a.runs.glob(f"{n}.*.txt"):
                        tar.add(log, arcname=f"{n}/{log.name}")
        (a.pack / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0 if all("error" not in v for k, v in summary.items() if not k.startswith("_")) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
