"""Results of the super-resolution benchmark (:mod:`denoise.evaluation.sr_bench`): the
protocol, the published figures printed beside ours, the result objects and their tables."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .report import ImageTotals, markdown_table

SR_PROTOCOL = """\
- Test inputs: the SR literature's own (SR_LR/<set>/LR/xS, made from HR/xS with MATLAB's
  imresize, bicubic, antialiased); ground truth HR/xS (cropped to a multiple of S).
- Each model upscales the LR image through denoise.upscale (whole image, untiled). A
  luma (1-channel) model on a colour image upscales the BT.601 luma, the chroma are
  bicubic; a colour model on a gray image gets it repeated over 3 channels and the
  luma of its output is scored.
- PSNR and SSIM as the papers compute them: the output clipped and rounded to 8 bits,
  both images converted to Y (BT.601, MATLAB's rgb2ycbcr; gray images as they are),
  S pixels shaved off every border, data range 1; a set's score is the mean of the
  per-image values.
- Time: per output megapixel, the wall time and the process CPU time of the upscale
  call (all threads summed), after an untimed warm-up on a crop.
"""

#: Published PSNR (dB, Y channel, Set5 / Set14, bicubic-downscaled inputs) per method, at
#: x2, x3, x4 (None: not in the paper). Sources:
#: - Bicubic: the row every SR paper prints (e.g. Kim et al., "Accurate Image
#:   Super-Resolution Using Very Deep Convolutional Networks" (VDSR), CVPR 2016, Table 3);
#: - SRCNN: Dong et al., "Image Super-Resolution Using Deep Convolutional Networks",
#:   TPAMI 38(2), 2016, as the later papers cite it;
#: - ESPCN: Shi et al., "Real-Time Single Image and Video Super-Resolution Using an
#:   Efficient Sub-Pixel Convolutional Neural Network", CVPR 2016, the ImageNet-trained
#:   model (relu); the paper has no x2 results;
#: - RDN: Zhang et al., "Residual Dense Network for Image Super-Resolution", CVPR 2018,
#:   the bicubic (BI) degradation table (without self-ensemble).
_PUBLISHED_PSNR: dict[str, dict[str, tuple[float | None, float | None, float | None]]] = {
    "Bicubic": {"Set5": (33.66, 30.39, 28.42), "Set14": (30.24, 27.55, 26.00)},
    "SRCNN": {"Set5": (36.66, 32.75, 30.48), "Set14": (32.42, 29.28, 27.49)},
    "ESPCN": {"Set5": (None, 33.13, 30.90), "Set14": (None, 29.49, 27.73)},
    "RDN": {"Set5": (38.24, 34.71, 32.47), "Set14": (34.01, 30.57, 28.81)},
}
_PUBLISHED_SCALES = (2, 3, 4)

#: Published PSNR (dB) by (set, scale) and method (see the sources above).
PUBLISHED: dict[tuple[str, int], dict[str, float]] = {
    (name, s): {method: sets[name][k] for method, sets in _PUBLISHED_PSNR.items()
                if name in sets and sets[name][k] is not None}
    for name in ("Set5", "Set14") for k, s in enumerate(_PUBLISHED_SCALES)
}
#: Every published method, in the tables' order.
PUBLISHED_METHODS = tuple(_PUBLISHED_PSNR)


@dataclass
class SRImageScore:
    """One model's result on one image (``pixels``: of the output)."""

    name: str
    psnr: float
    ssim: float
    seconds: float
    cpu_seconds: float
    pixels: int


@dataclass
class SRResult(ImageTotals):
    """One model on one set at one scale; no images when it was not run (see the notes)."""

    set: str
    scale: int
    model: str
    images: list[SRImageScore] = field(default_factory=list)

    @property
    def cpu_seconds(self) -> float:
        return sum(s.cpu_seconds for s in self.images)

    def to_dict(self) -> dict:
        mp = self.megapixels
        return {"set": self.set, "scale": self.scale, "model": self.model, "ran": bool(self.images),
                "n_images": len(self.images), "psnr": self.psnr, "ssim": self.ssim,
                "seconds": self.seconds, "cpu_seconds": self.cpu_seconds, "output_megapixels": mp,
                "sec_per_mp": self.seconds / mp if mp else float("nan"),
                "cpu_sec_per_mp": self.cpu_seconds / mp if mp else float("nan"),
                "per_image": [asdict(s) for s in self.images]}


def published(name: str, scale: int) -> dict[str, float]:
    """The published PSNR figures for a set label and scale ({} for other sets, or a set
    not evaluated whole)."""
    return PUBLISHED.get((name, scale), {})


@dataclass
class SRBenchReport:
    """All results of an SR benchmark run, with notes on what was not run and why."""

    results: list[SRResult]
    notes: list[str] = field(default_factory=list)
    device: str = "cpu"
    threads: int = 1

    def to_dict(self) -> dict:
        figures = {f"{name} / x{s}": published(name, s) for name, s in self._rows() if published(name, s)}
        return {"task": "sr", "protocol": SR_PROTOCOL, "device": self.device, "threads": self.threads,
                "results": [r.to_dict() for r in self.results], "notes": list(self.notes),
                "published_psnr": figures}

    def to_markdown(self) -> str:
        parts = [("Super-resolution: PSNR (dB) on Y, mean over the set; † = published figure; "
                 "– = not run (see the notes) or no published figure (protocol: "
                 "`denoise bench --help`)"), self._psnr_table(),
                 "SSIM on Y, mean over the set", self._ssim_table(),
                 (f"Speed, seconds per output megapixel (device {self.device}, {self.threads} "
                 "torch threads; CPU = process CPU time, all threads)"), self._speed_table()]
        if self.notes:
            parts.append("Notes:\n" + "\n".join(f"- {n}" for n in self.notes))
        return "\n\n".join(parts)

    def _rows(self) -> list[tuple[str, int]]:
        return list(dict.fromkeys((r.set, r.scale) for r in self.results))

    def _models(self) -> list[str]:
        return list(dict.fromkeys(r.model for r in self.results))

    def _lookup(self) -> dict[tuple[str, int, str], SRResult]:
        return {(r.set, r.scale, r.model): r for r in self.results}

    def _psnr_table(self) -> str:
        found, rows, models = self._lookup(), self._rows(), self._models()
        methods = [m for m in PUBLISHED_METHODS if any(m in published(n, s) for n, s in rows)]
        body = []
        for name, scale in rows:
            ours = [found.get((name, scale, m)) for m in models]
            n = max((len(r.images) for r in ours if r is not None), default=0)
            ref = published(name, scale)
            body.append([name, f"x{scale}", n, *(_fmt(r, "psnr", "{:.2f}") for r in ours),
                         *(f"{ref[m]:.2f}" if m in ref else "–" for m in methods)])
        return markdown_table(["set", "scale", "n", *models, *(m + " †" for m in methods)], body)

    def _ssim_table(self) -> str:
        found, models = self._lookup(), self._models()
        body = [[name, f"x{scale}", *(_fmt(found.get((name, scale, m)), "ssim", "{:.4f}") for m in models)]
                for name, scale in self._rows()]
        return markdown_table(["set", "scale", *models], body)

    def _speed_table(self) -> str:
        body = []
        for m in self._models():
            for scale in dict.fromkeys(r.scale for r in self.results):
                runs = [r for r in self.results if r.model == m and r.scale == scale and r.images]
                mp = sum(r.megapixels for r in runs)
                if mp:
                    body.append([m, f"x{scale}", f"{sum(r.seconds for r in runs) / mp:.3f}",
                                 f"{sum(r.cpu_seconds for r in runs) / mp:.3f}", f"{mp:.2f}"])
        return markdown_table(["model", "scale", "s / MP", "CPU s / MP", "output MP"], body)


def _fmt(result: SRResult | None, metric: str, fmt: str) -> str:
    return fmt.format(getattr(result, metric)) if result is not None and result.images else "–"
