"""Blur estimation through a frozen SR network, on synthetic degradations of Set5 and Set14.

Each HR image (``<data>/Set5``, ``<data>/Set14``; gray ones repeated over three channels)
is centre-cropped (``--crop``, default 128) and degraded with a Gaussian blur of width
0.8, 1.0, 1.2, 1.6 and 2.0 HR pixels then a phase-0 x2 decimation
(:func:`denoise.degrade.blur_decimate`), rounded to 8 bits. For each, the estimator
(:mod:`denoise.blur`) fits:

* the Gaussian width (and centre): estimated width and relative error;
* the free 13x13 kernel: L1 and L2 distance to the true kernel (the taps ``blur_decimate``
  applies, zero-padded to 13x13) and its width from the second moment;

and the SR output's PSNR (Y, 8-bit, ``s`` pixels shaved: :func:`denoise.degrade.sr_psnr`) of the
``--sr-model`` fed: the mismatched input directly; the input re-degraded to the bicubic
training condition (:func:`denoise.redegrade.redegrade`) with the estimated Gaussian, the
estimated free kernel, and the true kernel (the method's ceiling); and, for reference, the
matched input (``bicubic_down(HR)`` rounded to 8 bits: what the model was trained for).

The frozen network: ``--model NAME_OR_PATH``; by default the best shipped learned SR model
of that scale whose weights exist, else **oracle** mode (``--oracle``): the network is
replaced by the true HR image, which isolates the optimiser and the forward model from any
network error. The SR model of the PSNR columns is the frozen network, or in oracle mode the
best shipped learned SR model, else bicubic. A last table tunes the Wiener regularisation of
``redegrade`` on CBSD68 crops (not the test sets): the true kernel, several ``eps``.

    nice -n 15 python benchmarks/blur_estimation.py --oracle \\
        --out benchmarks/results/blur_estimation.md \\
        --json benchmarks/results/blur_estimation.json                 # oracle
    nice -n 15 python benchmarks/blur_estimation.py --model rdn-x2 \\
        --out benchmarks/results/blur_estimation_rdn-x2.md \\
        --json benchmarks/results/blur_estimation_rdn-x2.json          # the shipped rdn-x2, frozen

``--learned`` (x2) adds the learned blur-width regressor (:func:`denoise.blur_width.estimate_width`,
trained on CBSD432 by ``benchmarks/train_blur_width.py``, no network) beside the fit: its width,
relative error and 'within 10%' count, and the SR PSNR after re-degradation with the Gaussian of
its width::

    taskset -c 1 env OMP_NUM_THREADS=1 nice -n 5 python benchmarks/blur_estimation.py --model rdn-x2 \\
        --learned --out benchmarks/results/blur_estimation_learned.md \\
        --json benchmarks/results/blur_estimation_learned.json

At x2 the default network is the shipped ``rdn-x2`` (then ``espcn-x2``): without ``--oracle``
or ``--model`` the script runs through ``rdn-x2``, not in oracle mode. (The oracle report
``benchmarks/results/blur_estimation.md`` predates the shipped SR weights: its PSNR columns are
bicubic's; run again, they would be ``rdn-x2``'s.)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from denoise.blur import fit_kernel, gaussian_kernel, redegrade
from denoise.degrade import bicubic_down, blur_decimate, round_8bit, sr_psnr
from denoise.evaluation.testsets import data_root, load_set
from denoise.redegrade import DEFAULT_EPS
from denoise.upscale import entry_scales, upscale
from denoise.utils import write_json, write_text

WIDTHS = (0.8, 1.0, 1.2, 1.6, 2.0)
FREE_SIZE = 13
EPS_GRID = (1e-4, 3e-4, 1e-3, 3e-3)
#: Learned SR architectures in order of preference (the stronger first).
PREFERENCE = ("rdn", "espcn")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sets", nargs="+", default=["Set5", "Set14"])
    p.add_argument("--widths", nargs="+", type=float, default=list(WIDTHS))
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--crop", type=int, default=128, help="centre crop of the HR images (pixels)")
    p.add_argument("--model", default=None, help="frozen SR network (name or path); default: the "
                   "best shipped SR model with weights, else oracle mode")
    p.add_argument("--oracle", action="store_true", help="replace the network by the true HR image")
    p.add_argument("--sr-model", default=None, help="the model of the PSNR columns (default: see above)")
    p.add_argument("--tune-images", type=int, default=20, help="CBSD68 images of the eps table (0: none)")
    p.add_argument("--learned", action="store_true",
                   help="also measure the learned blur-width regressor (denoise.blur_width; x2 only)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", default=None, help="also write the markdown report to this file")
    p.add_argument("--json", default=None, help="also write every measurement to this JSON file")
    return p.parse_args(argv)


def best_shipped_sr(scale: int) -> str | None:
    """The shipped learned SR model of ``scale`` with weights (preferring :data:`PREFERENCE`)."""
    from denoise.models.registry import list_models

    names = [e for e in list_models(available_only=True, user=False)
             if e.kind == "learned" and e.pretrained and scale in entry_scales(e)]
    rank = {a: i for i, a in enumerate(PREFERENCE)}
    names.sort(key=lambda e: (rank.get(e.architecture, len(rank)), e.name))
    return names[0].name if names else None


def centre_crop(x: torch.Tensor, size: int, scale: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    size = min(size, h, w) // scale * scale
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size]


def true_kernel(width: float, size: int = FREE_SIZE) -> torch.Tensor:
    """The kernel blur_decimate applies, zero-padded (or cut) to ``size x size``."""
    k = gaussian_kernel(width)
    pad = (size - k.shape[0]) // 2
    if pad >= 0:
        return torch.nn.functional.pad(k, (pad, pad, pad, pad))
    k = k[-pad:pad, -pad:pad]
    return k / k.sum()


def sr_of(model: str, lr: torch.Tensor, scale: int) -> torch.Tensor:
    return upscale(lr.float(), scale, model, tile=None, device="cpu")


def measure(name: str, hr: torch.Tensor, width: float, args, net: str | None, sr_model: str) -> dict:
    s = args.scale
    lr = round_8bit(blur_decimate(hr.double(), s, width)).float()
    frozen = hr if net is None else sr_of(net, lr, s)
    start = time.perf_counter()
    gauss = fit_kernel(frozen, lr, s)
    free = fit_kernel(frozen, lr, s, kind="free", size=FREE_SIZE)
    seconds = time.perf_counter() - start
    truth = true_kernel(width)
    diff = free.kernel - truth

    def score(x: torch.Tensor) -> float:
        return float(sr_psnr(sr_of(sr_model, x, s), hr, s))

    learned = {}
    if args.learned:
        from denoise.blur_width import estimate_width

        start = time.perf_counter()
        w = estimate_width(lr, s)
        learned = {"learned_width": w, "learned_rel_error": (w - width) / width,
                   "learned_seconds": time.perf_counter() - start,
                   "psnr_learned": score(redegrade(lr, gaussian_kernel(w), s))}
    return {"set": name[0], "image": name[1], "width": width, "est_width": gauss.width,
            "rel_error": (gauss.width - width) / width, "shift": list(gauss.shift),
            "gauss_rms": gauss.rms_levels, "free_l1": float(diff.abs().sum()),
            "free_l2": float(diff.norm()), "free_moment_width": free.moment_width,
            "free_rms": free.rms_levels, "fit_seconds": seconds,
            "psnr_direct": score(lr), "psnr_gauss": score(redegrade(lr, gauss, s)),
            "psnr_free": score(redegrade(lr, free, s)),
            "psnr_true": score(redegrade(lr, gaussian_kernel(width), s)), **learned}


def tune_eps(args, sr_model: str) -> list[dict]:
    """SR PSNR after redegrade with the true kernel, per eps, on CBSD68 crops."""
    if args.tune_images <= 0:
        return []
    images = load_set("CBSD68", gray=False)[: args.tune_images]
    rows = []
    for width in args.widths:
        for eps in EPS_GRID:
            values = []
            for _, x in images:
                hr = centre_crop(x, args.crop, args.scale)
                lr = round_8bit(blur_decimate(hr.double(), args.scale, width)).float()
                fixed = redegrade(lr, gaussian_kernel(width), args.scale, eps=eps)
                values.append(float(sr_psnr(sr_of(sr_model, fixed, args.scale), hr, args.scale)))
            rows.append({"width": width, "eps": eps, "psnr": statistics.fmean(values)})
    return rows


def _mean(rows, key):
    return statistics.fmean(r[key] for r in rows)


def _learned_cells(g: list[dict]) -> str:
    errs = [abs(r["learned_rel_error"]) for r in g]
    return (f" {_mean(g, 'learned_width'):.3f} | {statistics.fmean(errs):.2%} | {max(errs):.2%} | "
            f"{sum(e < 0.1 for e in errs)}/{len(g)} |")


def report(rows: list[dict], matched: dict, eps_rows: list[dict], args, net, sr_model, seconds) -> str:
    mode = "oracle (the true HR image stands in for the network)" if net is None else f"network `{net}`"
    cmd = "python benchmarks/blur_estimation.py" + (" --oracle" if net is None else f" --model {net}")
    learned = args.learned
    if learned:
        cmd += " --learned"
    out = ["# Blur estimation through a frozen SR network", "",
           (f"Estimator: {mode}. SR model of the PSNR columns: `{sr_model}`. Degradation: Gaussian "
            f"blur of the given width (HR pixels) then phase-0 x{args.scale} decimation "
            f"(`blur_decimate`), rounded to 8 bits; HR images centre-cropped to {args.crop}x{args.crop}. "
            f"Gaussian fit: 21x21 taps, width and centre, L-BFGS (30 steps); free fit: {FREE_SIZE}x"
            f"{FREE_SIZE} softmax kernel, Adam (300 steps), no prior. Re-degradation: Wiener-style LR "
            f"filter to the bicubic condition, eps = {DEFAULT_EPS:g}. PSNR: Y channel, 8-bit output, "
            f"{args.scale} pixels shaved (`sr_psnr`); 'matched' is the model on `bicubic_down(HR)` "
            "(its training condition), the ceiling of any correction."), "",
           (f"Reproduce: `nice -n 15 {cmd} --out {args.out or 'benchmarks/results/blur_estimation.md'} "
            f"--json {args.json or 'benchmarks/results/blur_estimation.json'}` ({seconds / 60:.1f} min "
            "here, 1 thread). "
            "With a trained SR network: `--model NAME_OR_PATH` (then it is both the frozen "
            "estimator and the SR model of the PSNR columns)."), "",
           "## Gaussian width and free kernel, by set and width", "",
           ("| set | width | images | mean estimate | mean abs rel. error | max abs rel. error | "
            "within 10% | free L1 | free L2 | free moment width |"
            + (" learned: mean estimate | mean abs rel. error | max abs rel. error | within 10% |"
               if learned else "")),
           "|---" * (14 if learned else 10) + "|"]
    groups = {}
    for r in rows:
        groups.setdefault((r["set"], r["width"]), []).append(r)
    for (name, width), g in groups.items():
        errs = [abs(r["rel_error"]) for r in g]
        out.append(f"| {name} | {width:g} | {len(g)} | {_mean(g, 'est_width'):.3f} | "
                   f"{statistics.fmean(errs):.2%} | {max(errs):.2%} | "
                   f"{sum(e < 0.1 for e in errs)}/{len(g)} | {_mean(g, 'free_l1'):.3f} | "
                   f"{_mean(g, 'free_l2'):.4f} | {_mean(g, 'free_moment_width'):.3f} |"
                   + (_learned_cells(g) if learned else ""))
    errs = [abs(r["rel_error"]) for r in rows]
    out += ["", (f"All {len(rows)} cases: width within 10% in {sum(e < 0.1 for e in errs)}, mean abs "
             f"relative error {statistics.fmean(errs):.2%}, largest {max(errs):.2%}.")]
    if learned:
        lerrs = [abs(r["learned_rel_error"]) for r in rows]
        out += ["", (f"Learned estimator (`denoise.blur_width`, trained on CBSD432 only), same "
                     f"{len(rows)} cases: width within 10% in {sum(e < 0.1 for e in lerrs)}, mean abs "
                     f"relative error {statistics.fmean(lerrs):.2%}, largest {max(lerrs):.2%}, mean "
                     f"signed relative error {_mean(rows, 'learned_rel_error'):+.2%}; "
                     f"{_mean(rows, 'learned_seconds') * 1000:.0f} ms per image (1 thread).")]
        for name in dict.fromkeys(r["set"] for r in rows):
            sub = [abs(r["learned_rel_error"]) for r in rows if r["set"] == name]
            out += [f"{name}: within 10% in {sum(e < 0.1 for e in sub)}/{len(sub)}, mean abs "
                    f"relative error {statistics.fmean(sub):.2%}."]
        per_width = ", ".join(
            f"{w:g}: {sum(abs(r['learned_rel_error']) < 0.1 for r in rows if r['width'] == w)}/"
            f"{sum(r['width'] == w for r in rows)}" for w in dict.fromkeys(r["width"] for r in rows))
        out += [f"Within 10% by width: {per_width}."]
    out += ["",
            "## SR PSNR (dB): mismatched input vs re-degraded with the estimated kernel", "",
            ("| set | width | direct (mismatched) | est. Gaussian | est. free | "
             + ("learned Gaussian | " if learned else "") + "true kernel | matched |"),
            "|---" * (8 if learned else 7) + "|"]
    for (name, width), g in groups.items():
        ref = statistics.fmean(matched[(name, r["image"])] for r in g)
        out.append(f"| {name} | {width:g} | {_mean(g, 'psnr_direct'):.2f} | {_mean(g, 'psnr_gauss'):.2f} | "
                   f"{_mean(g, 'psnr_free'):.2f} | "
                   + (f"{_mean(g, 'psnr_learned'):.2f} | " if learned else "")
                   + f"{_mean(g, 'psnr_true'):.2f} | {ref:.2f} |")
    if learned:
        parts = [f"{label} {_mean(rows, key):.2f}" for label, key in (
            ("direct", "psnr_direct"), ("est. Gaussian", "psnr_gauss"), ("est. free", "psnr_free"),
            ("learned Gaussian", "psnr_learned"), ("true kernel", "psnr_true"))]
        ref = statistics.fmean(matched[(r["set"], r["image"])] for r in rows)
        out += ["", f"Mean over all {len(rows)} cases (dB): {', '.join(parts)}, matched {ref:.2f}."]
    out += ["", ("The direct input is both blurrier than the bicubic condition and sampled half an HR "
             "pixel off its grid (phase-0 decimation against MATLAB's centred samples); the "
             "re-degradation corrects both, so part of its gain is the phase. It does not undo "
             "aliasing (the loss left against 'matched'). A network fine-tuned to the estimated "
             "kernel is not measured here."), ""]
    if eps_rows:
        eps_list = sorted({r["eps"] for r in eps_rows})
        out += ["## Choice of eps (CBSD68 crops, true kernel, not the test sets)", "",
                (f"SR PSNR (dB) of `{sr_model}` after `redegrade(..., eps)`, mean over "
                 f"{args.tune_images} CBSD68 images:"), "",
                "| width | " + " | ".join(f"eps {e:g}" for e in eps_list) + " |",
                "|---" * (len(eps_list) + 1) + "|"]
        for width in sorted({r["width"] for r in eps_rows}):
            vals = {r["eps"]: r["psnr"] for r in eps_rows if r["width"] == width}
            out.append(f"| {width:g} | " + " | ".join(f"{vals[e]:.2f}" for e in eps_list) + " |")
        means = {e: statistics.fmean(r["psnr"] for r in eps_rows if r["eps"] == e) for e in eps_list}
        out += ["| mean | " + " | ".join(f"{means[e]:.3f}" for e in eps_list) + " |", ""]
    out += ["## Every case", "",
            ("| set | image | width | estimate | rel. error | shift (dy, dx) | free L1 | free L2 | "
             "PSNR direct | est. Gaussian | est. free | true |"
             + (" learned estimate | learned rel. error | PSNR learned |" if learned else "")),
            "|---" * (15 if learned else 12) + "|"]
    for r in rows:
        out.append(f"| {r['set']} | {r['image']} | {r['width']:g} | {r['est_width']:.3f} | "
                   f"{r['rel_error']:+.2%} | ({r['shift'][0]:+.2f}, {r['shift'][1]:+.2f}) | "
                   f"{r['free_l1']:.3f} | {r['free_l2']:.4f} | {r['psnr_direct']:.2f} | "
                   f"{r['psnr_gauss']:.2f} | {r['psnr_free']:.2f} | {r['psnr_true']:.2f} |"
                   + (f" {r['learned_width']:.3f} | {r['learned_rel_error']:+.2%} | "
                      f"{r['psnr_learned']:.2f} |" if learned else ""))
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    from tqdm.auto import tqdm

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.learned and args.scale != 2:
        print("--learned: the learned blur-width estimator is trained for x2 only", file=sys.stderr)
        return 2
    if data_root() is None:
        print("the image data folder was not found (set DENOISE_DATA)", file=sys.stderr)
        return 1
    shipped = best_shipped_sr(args.scale)
    net = None if args.oracle else (args.model or shipped)
    sr_model = args.sr_model or net or shipped or "bicubic"
    start = time.perf_counter()
    images = [((name, stem), centre_crop(x, args.crop, args.scale))
              for name in args.sets for stem, x in load_set(name, gray=False)]
    matched = {key: float(sr_psnr(sr_of(sr_model, round_8bit(bicubic_down(hr.double(), args.scale)).float(),
                                        args.scale), hr, args.scale)) for key, hr in images}
    cases = [(key, hr, w) for key, hr in images for w in args.widths]
    rows = [measure(key, hr, w, args, net, sr_model)
            for key, hr, w in tqdm(cases, desc="blur estimation", unit="case")]
    eps_rows = tune_eps(args, sr_model)
    seconds = time.perf_counter() - start
    text = report(rows, matched, eps_rows, args, net, sr_model, seconds)
    print(text)
    if args.out:
        write_text(args.out, text)
    if args.json:
        write_json(args.json, {"estimator": net or "oracle", "sr_model": sr_model, "scale": args.scale,
                               "learned": "blur-width-x2" if args.learned else None,
                               "crop": args.crop, "eps": DEFAULT_EPS, "seconds": seconds,
                               "cases": rows, "matched": [{"set": k[0], "image": k[1], "psnr": v}
                                                          for k, v in matched.items()],
                               "eps_tuning": eps_rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
