"""CPU cost of the blind FFDNet body (the ``real-*`` models) against its width.

The ``real-*`` models must cost no more CPU time per megapixel than the published FFDNet
architecture (12 layers of 96 features for colour, with the noise-map input). A wider
body is better, but convolution kernels do not slow down in proportion to the width:
some widths run at the speed of the next multiple of 16. This times the blind 12-layer
body at each width beside the FFDNet architecture (this package's code, random weights:
their cost only), interleaved, on one thread, on a random colour image, and prints the
median CPU seconds and the ratio to FFDNet's (run it on an otherwise idle core; the
ratios are what to compare across machines)::

    python benchmarks/width_cost.py                       # widths 64 80 88 96, 512x512
    python benchmarks/width_cost.py --widths 64 72 80 --size 256 --repeats 7
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from denoise.evaluation.report import markdown_table
from denoise.evaluation.results import reference_model
from denoise.models.ffdnet import FFDNet


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--widths", type=int, nargs="+", default=[64, 80, 88, 96], help="features per layer")
    p.add_argument("--layers", type=int, default=12, help="layers of the body (default 12, as real-color)")
    p.add_argument("--size", type=int, default=512, help="image side in pixels (default 512, PolyU's crops)")
    p.add_argument("--repeats", type=int, default=5, help="timed passes per model (default 5; the median is kept)")
    args = p.parse_args(argv)
    if min(args.widths) < 1 or args.size < 16 or args.repeats < 1 or args.layers < 3:
        p.error("widths >= 1, size >= 16, repeats >= 1 and layers >= 3 are needed")
    torch.set_num_threads(1)
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    models = {"FFDNet architecture": (reference_model("FFDNet", 3), 10 / 255)}
    for width in args.widths:
        models[f"blind body, {width} features"] = (FFDNet(3, features=width, layers=args.layers, blind=True).eval(), None)
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.no_grad():
        for model, sigma in models.values():  # untimed warm-up
            model(x[..., :64, :64], sigma)
        for _ in range(args.repeats):  # interleaved, so that a load change hits every model alike
            for name, (model, sigma) in models.items():
                start = time.process_time()
                model(x, sigma)
                times[name].append(time.process_time() - start)
    median = {name: statistics.median(v) for name, v in times.items()}
    ref = median["FFDNet architecture"]
    mp = args.size * args.size / 1e6
    rows = [[name, f"{m / mp:.2f}", f"{m / ref:.2f}x"] for name, m in median.items()]
    print(markdown_table(["model", "CPU-s/MP (median)", "/ FFDNet"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
