"""The results report's files: ``RESULTS.md``, ``results.json`` and the quality-versus-speed
figure (:func:`write_report`), and the ranking that ``default`` follows
(:func:`write_ranking`); the measurements are :class:`denoise.evaluation.results.Report`."""
from __future__ import annotations

import math
from pathlib import Path

from ..errors import OutputError
from ..utils import output_file, write_json, write_text
from .bench import NOISY, PROTOCOL, PUBLISHED
from .report import markdown_table
from .results_sr import SR_BASELINE
from .results import (
    CEILING,
    FIGURE,
    RANK_SIGMA,
    RECIPE_BATCH,
    RECIPE_CROP,
    REFERENCES,
    RESULTS_JSON,
    RESULTS_MD,
    Report,
    reference_label,
)
from .sr_report import SR_PROTOCOL

_KIND = {1: "gray", 3: "color"}
#: The README's model table (:func:`models_table`), written beside RESULTS.md.
MODELS_TABLE = "models_table.md"


def _psnr(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.2f}"


def _seconds(value: float) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _published(name: str, sigma: float) -> dict[str, float]:
    return PUBLISHED.get((name, int(sigma)), {}) if float(sigma).is_integer() else {}


def published_mean(report: Report, method: str, channels: int) -> float:
    """The published PSNR of ``method`` at the ranking sigma, averaged over the sets of
    ``channels`` channels (nan when a set has no published figure)."""
    values = [_published(name, report.rank_sigma).get(method) for name in report.group_sets(channels)]
    return math.nan if not values or None in values else sum(values) / len(values)


def quality_table(report: Report, channels: int, metric: str) -> str:
    """PSNR or SSIM: one row per model (the noisy input first; with PSNR, the published
    figures after ours, marked †), one column per set and sigma."""
    columns = [(name, s) for name in report.group_sets(channels) for s in report.sigmas]
    fmt = _psnr if metric == "psnr" else (lambda v: "–" if v is None or math.isnan(v) else f"{v:.4f}")
    header = ["model", *(f"{name} σ={s:g}" for name, s in columns)]

    def cells(model: str) -> list[str]:
        found = [report.find(name, s, model) for name, s in columns]
        return [fmt(getattr(r, metric)) if r and r.images else "–" for r in found]

    noisy = [report.find(name, s, NOISY) for name, s in columns]
    body = [[f"{NOISY} (images: {', '.join(str(len(r.images)) if r else '0' for r in noisy[::len(report.sigmas)])})",
             *cells(NOISY)]]
    body += [[model, *cells(model)] for model in report.models(channels)]
    if metric == "psnr":
        methods = list(dict.fromkeys(m for name, s in columns for m in _published(name, s)))
        body += [[m + " †", *(f"{_published(name, s)[m]:.2f}" if m in _published(name, s) else "–"
                              for name, s in columns)] for m in methods]
    return markdown_table(header, body)


def ranking_table(report: Report, channels: int) -> str:
    rows = report.ranking().get(channels, [])
    body = [[k + 1, row["model"], _psnr(row["psnr"]), f"{row['ssim']:.4f}", _seconds(row["cpu_s_per_mp"]),
             f"{row['vs_ffdnet']:.2f}", "yes" if row["eligible"] else f"no: {row['why_not']}"]
            for k, row in enumerate(rows)]
    return markdown_table(["rank", "model", f"PSNR σ={report.rank_sigma:g}", "SSIM", "CPU-s/MP",
                           f"× {CEILING} arch.", "may be default"], body, align="rlrrrrl")


def cost_table(report: Report) -> str:
    """CPU seconds per megapixel of every model and reference, per channel count."""
    groups = report.groups()
    names = [*report.models(), *(reference_label(r) for r in REFERENCES)]
    header = ["model"]
    for c in groups:
        header += [f"{_KIND.get(c, c)} CPU-s/MP", f"{_KIND.get(c, c)} wall-s/MP", f"× {CEILING} arch."]
    body = []
    for name in names:
        row = [name + (" (random weights)" if name.endswith(" arch.") else "")]
        for c in groups:
            cost, ratio = report.cost(name, c), report.ratio(name, c)
            row += [_seconds(cost), _seconds(report.cost(name, c, wall=True)),
                    "–" if math.isnan(cost) or math.isnan(ratio) else f"{ratio:.2f}"]
        body.append(row)
    mp = {c: sum(r.megapixels for r in report.results if r.channels == c and r.model != NOISY) for c in groups}
    note = "; ".join(f"{_KIND.get(c, c)}: {mp[c]:.2f} MP of model runs in all" for c in groups)
    return markdown_table(header, body) + f"\n\n({note}.)"


def training_table(report: Report) -> str:
    by = {(t.label, t.channels): t for t in report.training}
    body = []
    for t in report.training:
        base = by.get((CEILING, t.channels))
        body.append([f"{reference_label(t.label)} (random weights)", _KIND.get(t.channels, t.channels),
                     f"{t.steps} x {t.batch}×{t.crop}²", _seconds(t.cpu_s_per_mp), _seconds(t.recipe_step),
                     f"{t.cpu_s_per_mp / base.cpu_s_per_mp:.2f}" if base else "–"])
    return markdown_table(["architecture", "images", "timed steps", "CPU-s per MP of crops",
                           f"CPU-s per step of {RECIPE_BATCH}×{RECIPE_CROP}²", f"× {CEILING}"], body)


def _provenance(report: Report) -> str:
    """Where the numbers come from: this run, or cells kept from earlier runs."""
    cells = sum(r.model != NOISY for r in report.results)
    if not report.cache:
        return "Every number below was measured in that one run."
    text = (f"Each cell (one model, one set, one sigma) is kept in `{report.cache}` as it is "
            f"measured; {report.reused} of the {cells} cells below were measured by earlier runs "
            "of the same command and reused because the model's weights (or code), the images, "
            "the noise and the protocol are unchanged. A model's cost ratio compares each image "
            f"with the {CEILING} architecture (random weights) timed in the run that measured it.")
    if report.missing:
        text += (f" **{len(report.missing)} cells are not measured yet** (– in the tables; "
                 "listed at the end); the same command without --cached-only measures them.")
    return text


def to_markdown(report: Report, figure: str) -> str:
    """``RESULTS.md``: how it was made, the default models, the tables and the figure."""
    m = report.machine
    order = report.default_order()
    defaults = ", ".join(f"{_KIND.get(c, c)} images: **{names[0]}**" if names else
                         f"{_KIND.get(c, c)} images: none eligible" for c, names in order.items())
    sections = [
        "# Results: shipped denoisers and classical baselines",
        f"Generated by `{report.command or 'denoise report'}` on {report.date}; † marks a "
        "published figure. " + _provenance(report),
        "\n".join([
            f"- Machine: {m.get('description', '?')}; {m.get('cpu_count', '?')} CPUs; "
            f"Python {m.get('python', '?')}, {m.get('platform', '?')}.",
            f"- Noise: AWGN sigma {', '.join(f'{s:g}' for s in report.sigmas)} (0-255 scale), "
            f"seed {report.seed}, the benchmark's protocol (below).",
            f"- Cost: CPU seconds (process CPU time, {report.threads} torch thread(s)) of each "
            "forward pass through `denoise.inference.restore`, untiled, after an untimed "
            "warm-up, per megapixel; wall seconds beside them.",
            "- Cost references: "
            + ", ".join(f"{reference_label(r)} = this package's `{a}` architecture" for r, a in REFERENCES.items())
            + " built from the registry with the published sizes (gray: FFDNet 15 layers × 64, "
            "DnCNN 17 × 64; color: FFDNet 12 × 96, DnCNN 20 × 64), seeded random initial "
            "weights, **no weights loaded**; timed on the same noisy images (σ="
            f"{report.rank_sigma:g}) in every run that measures images of that set, outputs not "
            "scored; the cost table shows the latest such timing.",
        ]),
        f"## Default model\n\n`default` follows the ranking below (written to the package by "
        f"`denoise report --update-default`): the best mean PSNR at σ={report.rank_sigma:g} "
        "(single pass) among the models that ship with the package and need no optional "
        f"package. This run ranks first: {defaults or 'none'}. The column × {CEILING} arch. "
        f"is a model's CPU time per megapixel over that of the published {CEILING} "
        "architecture measured in this run (the cost bar: at most 1).",
    ]
    for c in report.groups():
        kind, names = _KIND.get(c, f"{c}-channel"), ", ".join(report.group_sets(c))
        sections += [f"## {kind.capitalize()} images: {names}",
                     f"Ranking (mean over {names}):\n\n" + ranking_table(report, c),
                     "PSNR (dB), mean over the set (– : not run, or no published figure; a set "
                     "cut to its first images shows none):\n\n" + quality_table(report, c, "psnr"),
                     "SSIM (data range 1), mean over the set (the published tables give PSNR "
                     "only):\n\n" + quality_table(report, c, "ssim")]
    sections += ["## Cost: CPU seconds per megapixel (forward pass)", cost_table(report)]
    if report.training:
        sections += ["## Training cost per step (published architectures, random weights)",
                     "Forward, backward and Adam update of an L2 loss on random crops with AWGN "
                     f"σ ≤ 55; per megapixel of crops, and scaled to a batch of {RECIPE_BATCH} "
                     f"crops of {RECIPE_CROP}×{RECIPE_CROP} (the DnCNN paper's).\n\n" + training_table(report)]
    sections += [f"## Quality versus speed\n\n![PSNR at σ={report.rank_sigma:g} versus CPU seconds "
                 f"per megapixel]({figure})",
                 "## Protocol\n\n" + PROTOCOL.rstrip()]
    if report.sr is not None or report.sr_note:
        sections.append(sr_markdown(report))
    if report.missing:
        sections.append("## Not measured yet\n\n" + "\n".join(f"- {m}" for m in report.missing))
    return "\n\n".join(sections) + "\n"


def sr_markdown(report: Report) -> str:
    """The section on the super-resolution part: its tables (our figures beside the
    published ones), its note, and its protocol."""
    parts = ["## Super-resolution",
             f"The shipped super-resolution models and {SR_BASELINE} interpolation on the SR "
             "literature's test sets (`SR_LR`: the published low-resolution inputs), in the same "
             "run, by the protocol of `denoise bench --task sr` (below); not part of the ranking."]
    if report.sr is not None:
        parts.append(report.sr.to_markdown())
    if report.sr_note:
        parts.append(f"Note: {report.sr_note}.")
    if report.sr is not None:
        parts.append("Super-resolution protocol:\n\n" + SR_PROTOCOL.rstrip())
    return "\n\n".join(parts)


def quality_speed_figure(report: Report, path: str | Path, dpi: int = 100) -> Path:
    """PSNR at the ranking sigma against CPU seconds per megapixel (log scale), one panel
    per channel count, one point per model; the published architectures at their
    published PSNR (or as a vertical line where the sets have no published figure)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    groups = report.groups()
    fig = Figure(figsize=(6.4 * len(groups), 4.8))
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    styles = {"FFDNet": ("#d62728", "*"), "DnCNN": ("#9467bd", "P")}
    for ax, c in zip(axes, groups):
        for row in report.ranking().get(c, []):
            x, y = row["cpu_s_per_mp"], row["psnr"]
            ax.scatter([x], [y], s=36, color="#1f77b4" if row["eligible"] else "#7f7f7f", zorder=3)
            ax.annotate(row["model"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        for ref in REFERENCES:
            x, y = report.cost(reference_label(ref), c), published_mean(report, ref, c)
            color, marker = styles.get(ref, ("k", "x"))
            if math.isnan(x):
                continue
            if math.isnan(y):
                ax.axvline(x, color=color, linestyle="--", linewidth=1,
                           label=f"{reference_label(ref)} time (random weights)")
            else:
                ax.scatter([x], [y], s=90, color=color, marker=marker, zorder=4,
                           label=f"{ref} †: published PSNR, time of its architecture here")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"CPU seconds per megapixel ({report.threads} thread(s))")
        ax.set_ylabel(f"PSNR (dB) at σ={report.rank_sigma:g}, mean over the sets")
        ax.set_title(f"{_KIND.get(c, c)}: {', '.join(report.group_sets(c))}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.margins(x=0.2, y=0.1)
        ax.legend(fontsize=7, loc="best")
    note = "" if report.rank_sigma == RANK_SIGMA else f" (σ={report.rank_sigma:g})"
    fig.suptitle(f"Quality versus CPU time, single pass{note}; blue: may be default, gray: may not",
                 fontsize=10)
    fig.tight_layout()
    with output_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return Path(path)


def models_table(report: Report) -> str:
    """The README's model table: PSNR at the ranking sigma (single pass) per set, and the
    cost over the FFDNet architecture per channel count; one row per model."""
    names = list(report.sets)
    kinds = " / ".join(_KIND.get(c, str(c)) for c in report.groups())
    lines = [f"| model | {' | '.join(names)} | cost × {CEILING} arch. ({kinds}) |",
             "|---|" + "---:|" * (len(names) + 1)]
    for model in report.models():
        if model.endswith("+x8"):
            continue
        found = [report.find(name, report.rank_sigma, model) for name in names]
        psnr = [_psnr(r.psnr) if r and r.images else "–" for r in found]
        ratios = [report.ratio(model, c) for c in report.groups()]  # nan where it did not run
        cost = " / ".join("–" if math.isnan(v) else f"{v:.2f}" for v in ratios)
        lines.append(f"| `{model}` | {' | '.join(psnr)} | {cost} |")
    return "\n".join(lines) + "\n"


def write_report(report: Report, out: str | Path) -> list[Path]:
    """Write ``RESULTS.md``, ``results.json``, ``quality_speed.png`` and the README's model
    table ``models_table.md`` into ``out`` (created if missing; each file replaced
    atomically)."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
    figure = quality_speed_figure(report, out / FIGURE)
    return [write_json(out / RESULTS_JSON, report.to_dict()), figure,
            write_text(out / RESULTS_MD, to_markdown(report, figure.name)),
            write_text(out / MODELS_TABLE, models_table(report))]


def ranking_content(report: Report) -> dict:
    """The ranking file's content (see :func:`write_ranking`)."""
    return {"_comment": "Written by 'denoise report --update-default': per channel count, the "
                        "order in which 'default' tries the models (best mean PSNR at sigma "
                        f"{report.rank_sigma:g} first, single pass, shipped, no optional package); "
                        "a model that cannot run here is skipped.",
            "sigma": report.rank_sigma, "date": report.date, "command": report.command,
            "sets": {str(c): report.group_sets(c) for c in report.groups()},
            "default": {str(c): names for c, names in report.default_order().items()},
            "ranking": {str(c): rows for c, rows in report.ranking().items()}}


def write_ranking(report: Report, path: str | Path) -> Path:
    """Write the ranking that :func:`denoise.inference.default_model_name` follows."""
    return write_json(path, ranking_content(report))
