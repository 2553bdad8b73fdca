"""The super-resolution part of the results report (:func:`denoise.evaluation.results.run_report`):
every shipped super-resolution model and bicubic interpolation on the SR literature's test
sets, by the SR benchmark's protocol (:func:`denoise.evaluation.sr_bench.sr_bench`), beside
the published figures. Missing SR test sets are a note in the report, not an error."""
from __future__ import annotations

from typing import Sequence

from ..errors import InputError
from .sr_report import SRBenchReport

#: The SR literature's test sets (under ``<data root>/SR_LR``).
SR_SETS = ("Set5", "Set14")
#: The scales of the published SR tables.
SR_SCALES = (2, 3, 4)
#: The baseline run beside the shipped SR models (training-free, any scale).
SR_BASELINE = "bicubic"


def shipped_sr_models() -> list[str]:
    """The super-resolution models whose weights ship with the package and that can run
    here (a registered name that upscales; one without weights is left out)."""
    from ..models.registry import list_models
    from ..upscale import entry_scales

    return [e.name for e in list_models(user=False)
            if e.kind == "learned" and e.pretrained and entry_scales(e) and e.available()]


def find_sr_sets(sets: Sequence[str], scales: Sequence[int]) -> tuple[list[str], str]:
    """``(the sets found at every scale, a note on the others)``; the note is "" when every
    set was found. Nothing is read; only a missing set or scale folder is caught."""
    from .sr_bench import sr_scale_folders

    found, missing = [], []
    for spec in dict.fromkeys(sets):
        try:
            for scale in scales:
                sr_scale_folders(spec, scale)
        except InputError as exc:
            missing.append(str(exc))
        else:
            found.append(spec)
    note = "SR test sets not found, not run: " + "; ".join(missing) if missing else ""
    return found, note


def run_sr(sets: Sequence[str], scales: Sequence[int], *, max_images: int | None = None,
           progress: bool = True) -> tuple[SRBenchReport | None, str]:
    """``(SR benchmark, note)``: bicubic and :func:`shipped_sr_models` on the ``sets`` found
    (``None`` when no set or no shipped SR model; the note says why, "" when all ran).
    The scales are checked by :func:`.sr_bench.check_scales` (``run_report`` does it before any work)."""
    from .sr_bench import sr_bench

    if not sets:
        return None, ""
    models = shipped_sr_models()
    if not models:
        return None, "no super-resolution model with weights ships with the package: none run"
    found, note = find_sr_sets(sets, scales)
    if not found:
        return None, note
    return sr_bench(found, scales, [SR_BASELINE, *models], max_images=max_images, progress=progress), note
