"""Training-step time and peak memory of the scratch framework against torch.nn + autograd.

One full training step (forward, MSE loss, backward, SGD with momentum) at batch 100 on
32x32 RGB inputs, for two networks built with :mod:`denoise.scratch` and their identical
``torch.nn`` twins (same weights, built by ``tests/scratch/twins.py``):

* ``ee559``: the EE-559 network (:func:`denoise.scratch.ee559_net`, 48 channels);
* ``conv5``: a 48-channel five-layer 3x3 convolution network (:func:`denoise.scratch.conv_net`).

Time: both frameworks run in the same process on the same number of threads, steps
interleaved (the order alternates), after warm-up steps; the table gives median and
minimum step times and their ratios. The scratch side runs under
``torch.set_grad_enabled(False)``; its first convolution skips the input gradient, as
autograd does for an input that does not require one. With ``--runs N`` the whole
timing is repeated N times and every run is reported, each with its load average.

Peak memory: each (network, framework) pair runs in a fresh subprocess, so neither
allocator's state leaks into the other. The child builds the model and data, resets the
kernel's peak-RSS counter (``/proc/self/clear_refs``), runs the steps, and reports the
peak resident memory (``VmHWM``) above the resident memory before the first step. RSS
sees every allocation (torch's allocator included, which ``tracemalloc`` would miss);
Linux only. Measured once (in the first run).

Nothing is asserted: the script prints ratios against the reference measured in the
same run. On a shared machine the load average printed with the results matters: other
processes take CPU time from both frameworks, but they also delay the start of every
parallel region of the two threads, and the scratch step has more (smaller) operations
than torch's fused convolutions.

    python benchmarks/scratch_speed.py                  # both networks, 2 threads
    python benchmarks/scratch_speed.py --runs 2 --markdown benchmarks/results/scratch_speed.md
    python benchmarks/scratch_speed.py --threads 1 --steps 30 --json out.json
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from denoise import scratch

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = {"ee559": lambda: scratch.ee559_net(48), "conv5": lambda: scratch.conv_net(48, 5)}


def _twins():
    """``tests/scratch/twins.py``, the one place that maps scratch modules to torch.nn."""
    spec = importlib.util.spec_from_file_location("scratch_twins", ROOT / "tests" / "scratch" / "twins.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _steps(network: str, batch: int, seed: int = 0):
    """The two training-step closures (scratch, torch) on identical models and data."""
    torch.manual_seed(seed)
    model = NETWORKS[network]()
    model[0].input_grad = False
    twin = _twins().torch_twin(model)
    x, y = torch.rand(batch, 3, 32, 32), torch.rand(batch, 3, 32, 32)
    loss = scratch.MSE()
    optimizer = scratch.SGD(model.parameters(), lr=0.01, momentum=0.9)
    reference = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9)

    def scratch_step():
        with torch.set_grad_enabled(False):
            optimizer.zero_grad()
            loss(model(x), y)
            model.backward(loss.backward())
            optimizer.step()

    def torch_step():
        reference.zero_grad()
        torch.nn.functional.mse_loss(twin(x), y).backward()
        reference.step()

    return scratch_step, torch_step


def time_steps(network: str, batch: int, steps: int, warmup: int) -> dict:
    """Interleaved step times (seconds) of both frameworks."""
    scratch_step, torch_step = _steps(network, batch)
    for _ in range(warmup):
        scratch_step()
        torch_step()
    times = {"scratch": [], "torch": []}
    for index in range(steps):
        order = [("scratch", scratch_step), ("torch", torch_step)]
        for name, step in order if index % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return times


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def child_memory(network: str, framework: str, batch: int, steps: int) -> None:
    """In a fresh process: print the peak RSS (MiB) of ``steps`` steps above the start."""
    scratch_step, torch_step = _steps(network, batch)
    step = scratch_step if framework == "scratch" else torch_step
    base = _status_mib("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset VmHWM to the current RSS
    for _ in range(steps):
        step()
    print(json.dumps({"base_mib": base, "peak_mib": _status_mib("VmHWM")}))


def peak_memory(network: str, framework: str, batch: int, steps: int, threads: int) -> float | None:
    """Peak RSS increase (MiB) of a framework's training steps, measured in a subprocess."""
    if not Path("/proc/self/clear_refs").exists():
        return None
    command = [sys.executable, __file__, "--child", network, framework, "--batch", str(batch),
               "--steps", str(steps), "--threads", str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report["peak_mib"] - report["base_mib"]


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _load() -> tuple[float, float, float]:
    """The 1, 5 and 15-minute load averages (NaN where the platform has none)."""
    return os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3


def _cpu_ticks() -> tuple[int, int] | None:
    """(stolen, total) CPU ticks of the machine since boot, from ``/proc/stat`` (Linux)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return fields[7], sum(fields)


def _stolen(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Share of the CPU time between two :func:`_cpu_ticks` that the hypervisor gave to
    other machines (time this virtual machine was ready to run but did not)."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def _stolen_text(share: float | None) -> str:
    return "not measured" if share is None else f"{100 * share:.0f}% of the CPU time"


def _load_text(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{value:.2f}" for value in load)


def measure(network: str, args, memory: bool) -> dict:
    """One network's entry: median and minimum step times, ratios, and peak memory."""
    times = time_steps(network, args.batch, args.steps, args.warmup)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    low = {k: min(v) * 1e3 for k, v in times.items()}
    entry = {"torch_ms_median": med["torch"], "scratch_ms_median": med["scratch"],
             "torch_ms_min": low["torch"], "scratch_ms_min": low["scratch"],
             "time_ratio_median": med["scratch"] / med["torch"],
             "time_ratio_min": low["scratch"] / low["torch"]}
    if memory:
        peaks = {fw: peak_memory(network, fw, args.batch, args.memory_steps, args.threads)
                 for fw in ("torch", "scratch")}
        if None not in peaks.values():
            entry.update(torch_peak_mib=peaks["torch"], scratch_peak_mib=peaks["scratch"],
                         memory_ratio=peaks["scratch"] / peaks["torch"])
    return entry


HEADER = (f"{'network':8} {'torch ms':>16} {'scratch ms':>16} {'ratio':>11} "
          f"{'torch MiB':>10} {'scratch MiB':>12} {'ratio':>6}")


def table_line(network: str, entry: dict) -> str:
    """One line of the printed table."""
    mem = f"{'-':>10} {'-':>12} {'-':>6}"
    if "memory_ratio" in entry:
        mem = (f"{entry['torch_peak_mib']:10.0f} {entry['scratch_peak_mib']:12.0f} "
               f"{entry['memory_ratio']:6.2f}")
    return (f"{network:8} {entry['torch_ms_median']:7.1f} ({entry['torch_ms_min']:6.1f}) "
            f"{entry['scratch_ms_median']:7.1f} ({entry['scratch_ms_min']:6.1f}) "
            f"{entry['time_ratio_median']:5.2f} ({entry['time_ratio_min']:4.2f}) {mem}")


def markdown(results: dict) -> str:
    """The results as a Markdown report: context, then one table per run."""
    lines = ["# Scratch framework against torch.nn: training-step time and peak memory", "",
             f"- date: {results['date']}",
             f"- command: `{results['command']}`",
             (f"- torch {results['torch']}, {results['threads']} threads, {results['cpu']} "
              f"({results['cpus']} CPUs)"),
             (f"- batch {results['batch']} of 3x32x32, {results['steps']} interleaved steps per "
              f"framework after {results['warmup']} warm-up steps; {len(results['runs'])} "
              "run(s), all shown below (none dropped or selected)"),
             ("- time: median (minimum) of the step times; ratio = scratch / torch, from the "
              "same run"),
             ("- memory: peak RSS above the start, each framework in a fresh process "
              "(measured in the first run)"),
             ("- load average (1 / 5 / 15 min) is printed per run: the machine is shared, and "
              "other processes slow both frameworks but also delay every parallel region, "
              "so a loaded machine raises the ratio"),
             ("- stolen: the share of the run's CPU time that the hypervisor gave to other "
              "virtual machines (steal time, /proc/stat); a busy host slows both frameworks, "
              "unevenly"), ""]
    for index, run in enumerate(results["runs"], 1):
        lines += [f"## Run {index}", "",
                  (f"load average before {_load_text(run['load_before'])}, after "
                   f"{_load_text(run['load_after'])}; stolen: "
                   f"{_stolen_text(run.get('stolen'))}"), "",
                  ("| network | torch ms | scratch ms | time ratio | torch MiB | scratch MiB "
                   "| memory ratio |"),
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for network, e in run["networks"].items():
            mem = ["-", "-", "-"]
            if "memory_ratio" in e:
                mem = [f"{e['torch_peak_mib']:.0f}", f"{e['scratch_peak_mib']:.0f}",
                       f"{e['memory_ratio']:.2f}"]
            lines.append(
                f"| {network} | {e['torch_ms_median']:.1f} ({e['torch_ms_min']:.1f}) "
                f"| {e['scratch_ms_median']:.1f} ({e['scratch_ms_min']:.1f}) "
                f"| {e['time_ratio_median']:.2f} ({e['time_ratio_min']:.2f}) | "
                + " | ".join(mem) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", nargs="+", choices=sorted(NETWORKS), default=["ee559", "conv5"])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per framework")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1,
                        help="repeat the timing this many times; every run is reported")
    parser.add_argument("--memory-steps", type=int, default=3, help="steps in each memory subprocess")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--markdown", type=Path,
                        help="also write a Markdown report to this file "
                             "(e.g. benchmarks/results/scratch_speed.md)")
    parser.add_argument("--child", nargs=2, metavar=("NETWORK", "FRAMEWORK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        child_memory(args.child[0], args.child[1], args.batch, args.memory_steps)
        return 0

    results = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               "command": shlex.join([Path(sys.executable).name] + sys.argv),
               "torch": torch.__version__, "threads": args.threads, "cpu": _cpu_name(),
               "cpus": os.cpu_count(), "batch": args.batch, "steps": args.steps,
               "warmup": args.warmup, "runs": []}
    print(f"torch {torch.__version__}, {args.threads} threads, {results['cpu']}, "
          f"{results['cpus']} CPUs")
    print(f"batch {args.batch} of 3x32x32, {args.steps} interleaved steps after {args.warmup} warm-up")
    for index in range(args.runs):
        run = {"load_before": _load(), "networks": {}}
        ticks = _cpu_ticks()
        print(f"run {index + 1}/{args.runs}, load average {_load_text(run['load_before'])}")
        print(HEADER + "\n" + "-" * len(HEADER))
        for network in args.networks:
            run["networks"][network] = measure(network, args, not args.no_memory and index == 0)
            print(table_line(network, run["networks"][network]))
        run["load_after"] = _load()
        run["stolen"] = _stolen(ticks, _cpu_ticks())
        results["runs"].append(run)
        print(f"load average after the run {_load_text(run['load_after'])}; "
              f"stolen by the hypervisor: {_stolen_text(run['stolen'])}")
    print("times: median (minimum); ratio = scratch / torch; memory: peak RSS above the start")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
