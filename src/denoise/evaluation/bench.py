"""Benchmark denoisers on standard test sets with the protocol of the published tables.

The protocol, :data:`PROTOCOL`, is the one of the BM3D, DnCNN, FFDNet, DRUNet and SwinIR
tables; :data:`PUBLISHED` holds those papers' figures, printed beside ours.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from ..errors import InputError
from ..inference import (
    DEFAULT,
    check_denoiser,
    default_model_name,
    restore,
    supports_channels,
)
from .report import ImageTotals, markdown_table

NOISY = "noisy"
"""The pseudo-model name under which the noisy input itself is scored."""

PROTOCOL = """\
- Clean images are read as float32 in [0, 1] from their 8-bit files (--gray converts
  color ones to gray first; such a set is no longer the published one).
- Additive white Gaussian noise, sigma given on the 0-255 scale and divided by 255. The
  noise of image i (0-based, in sorted file-name order) is drawn by denoise.noise.Gaussian
  from torch.Generator().manual_seed(seed + i), so every model, and every sigma, sees the
  same normal draw for that image. The noisy image is NOT clipped to [0, 1].
- Every model gets the true sigma (the published tables are non-blind; blind models
  ignore it). Its output is clipped to [0, 1] and NOT quantised to 8 bits.
- PSNR and SSIM with data_range=1 per image; a set's score is the mean of the per-image
  values. Time: wall time of the forward passes only (each model is created and warmed
  up on a small crop beforehand), in seconds per megapixel.
"""

#: Published PSNR (dB) of AWGN denoising, per test set, per method, at sigma 15, 25, 50.
_PUBLISHED_AWGN: dict[str, dict[str, tuple[float, float, float]]] = {
    "Set12": {"BM3D": (32.37, 29.97, 26.72), "DnCNN": (32.86, 30.44, 27.18),
              "FFDNet": (32.75, 30.43, 27.32), "DRUNet": (33.25, 30.94, 27.90),
              "SwinIR": (33.36, 31.01, 27.91)},
    "BSD68": {"BM3D": (31.07, 28.57, 25.62), "DnCNN": (31.73, 29.23, 26.23),
              "FFDNet": (31.63, 29.19, 26.29), "DRUNet": (31.91, 29.48, 26.59),
              "SwinIR": (31.97, 29.50, 26.58)},
    "CBSD68": {"BM3D": (33.52, 30.71, 27.38), "DnCNN": (33.90, 31.24, 27.95),
               "FFDNet": (33.87, 31.21, 27.96), "DRUNet": (34.30, 31.69, 28.51),
               "SwinIR": (34.42, 31.78, 28.56)},
    "Kodak24": {"BM3D": (34.28, 32.15, 28.46), "DnCNN": (34.60, 32.14, 28.95),
                "FFDNet": (34.63, 32.13, 28.98), "DRUNet": (35.31, 32.89, 29.86),
                "SwinIR": (35.34, 32.89, 29.79)},
}
_PUBLISHED_SIGMAS = (15, 25, 50)

#: Published PSNR (dB) by (set, sigma) and method: the AWGN tables above, plus the
#: Noise2Noise paper's RGB U-Net on the full-size Kodak images at sigma 25.
PUBLISHED: dict[tuple[str, int], dict[str, float]] = {
    (name, s): {method: values[k] for method, values in methods.items()}
    for name, methods in _PUBLISHED_AWGN.items() for k, s in enumerate(_PUBLISHED_SIGMAS)
}
PUBLISHED[("Kodak24_full", 25)] = {"N2N clean targets": 32.50, "N2N noisy targets": 32.48,
                                   "BM3D": 31.82}


@dataclass
class ImageScore:
    """One model's result on one image."""

    name: str
    psnr: float
    ssim: float
    seconds: float
    pixels: int


@dataclass
class SetResult(ImageTotals):
    """One model on one test set at one noise level, with the per-image scores."""

    set: str
    sigma: float
    model: str
    images: list[ImageScore] = field(default_factory=list)


    @property
    def sec_per_mp(self) -> float:
        return self.seconds / self.megapixels if self.images else float("nan")

    def to_dict(self) -> dict:
        return {"set": self.set, "sigma": self.sigma, "model": self.model,
                "n_images": len(self.images), "psnr": self.psnr, "ssim": self.ssim,
                "seconds": self.seconds, "megapixels": self.megapixels,
                "sec_per_mp": self.sec_per_mp, "per_image": [asdict(s) for s in self.images]}


def level_label(level: "float | str") -> str:
    """How a noise level is shown: a Gaussian sigma (0-255 scale) as a number, else its spec."""
    return level if isinstance(level, str) else f"{level:g}"


def add_noise(clean: torch.Tensor, sigma: "float | str", seed: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The benchmark's noisy version of image number ``index`` (unclipped AWGN) and its
    noise level on the 0-1 scale, per image.

    ``sigma`` is the level of the noise spec ``gaussian:SIGMA`` (0-255 scale). The draw
    depends only on ``seed + index`` and the image's shape, so every model and every
    sigma see the same normal sample. ``sigma`` may also be any noise spec
    (:func:`denoise.noise.parse_noise`, e.g. ``gaussian:25+saltpepper:0.05``); the level
    returned is then the spec's Gaussian sigma, or None.
    """
    from ..noise import parse_noise

    generator = torch.Generator().manual_seed(seed + index)
    spec = sigma if isinstance(sigma, str) else f"gaussian:{sigma:g}"
    return parse_noise(spec).sample(clean, generator)


def score_image(name: str, output: torch.Tensor, clean: torch.Tensor, seconds: float) -> ImageScore:
    """PSNR and SSIM (data range 1) of ``output`` as given (:func:`run_model` clips model
    outputs; the noisy input is scored unclipped) against the clean image."""
    from ..metrics import psnr, ssim

    return ImageScore(name, float(psnr(output, clean)[0]), float(ssim(output, clean)[0]),
                      seconds, clean.shape[-2] * clean.shape[-1])


WARM_UP_SIZE = 48
"""Side of the crop each model denoises, untimed, before a timed run (lazy imports,
first-call allocations and the like are then not counted)."""


def run_model(name: "str | torch.nn.Module", noisy: torch.Tensor, sigma: torch.Tensor, *,
              device: str = "cpu") -> tuple[torch.Tensor, float]:
    """Denoise ``noisy`` with model ``name`` and the true ``sigma`` (0-1 scale, per image),
    through :func:`denoise.inference.restore`: the clipped output and the seconds of the
    forward pass (after an untimed warm-up on a crop). Whole images, never tiled."""
    restore(noisy[..., :WARM_UP_SIZE, :WARM_UP_SIZE], name, sigma, tile=None, device=device,
            warn_ignored_sigma=False)
    result = restore(noisy, name, sigma, tile=None, device=device, warn_ignored_sigma=False)
    return result.output, result.seconds


def load_test_set(spec: str, *, gray: bool = False, max_images: int | None = None
                  ) -> tuple[str, list[tuple[str, torch.Tensor]]]:
    """Load a test set as ``(label, [(image name, clean image (1, C, H, W)), ...])``.

    ``spec`` is a folder or the name of a set under the data root (see
    :func:`denoise.evaluation.testsets.load_set`). The label is the set's name, which selects the
    published figures, marked when the images are not the published set: color ones
    converted to gray, or only the first ``max_images`` images.
    """
    from ..io import rgb_to_gray
    from .testsets import load_set

    images = load_set(spec)
    path = Path(spec)
    label = path.resolve().name if path.is_dir() else spec
    if gray and any(x.shape[1] == 3 for _, x in images):
        images = [(name, rgb_to_gray(x)) for name, x in images]
        label += " (gray)"
    if max_images is not None and max_images < len(images):
        images = images[:max_images]
        label += f" (first {max_images})"
    return label, images


@dataclass
class BenchReport:
    """All results of a benchmark run, with the protocol they were measured under."""

    results: list[SetResult]
    seed: int

    def to_dict(self) -> dict:
        published = {f"{name} / {level_label(sigma)}": _published(name, sigma) for name, sigma in self._rows()
                     if _published(name, sigma)}
        return {"protocol": PROTOCOL, "seed": self.seed,
                "results": [r.to_dict() for r in self.results], "published_psnr": published}

    def to_markdown(self) -> str:
        return "\n\n".join([
            "PSNR (dB), mean over the set; † = published figure; – = not run (the model does not "
            "take this set's channel count) or no published figure (protocol: `denoise bench --help`)"
            + self._default_note(),
            self._psnr_table(), "SSIM, mean over the set", self._metric_table("ssim", "{:.4f}"),
            "Speed, seconds per megapixel (forward pass)", self._speed_table()])

    def _default_note(self) -> str:
        if DEFAULT not in self._models():
            return ""
        return (f"; {DEFAULT} = {default_model_name(1)} on gray images, "
                f"{default_model_name(3)} on color images")

    def _rows(self) -> list[tuple[str, float]]:
        seen: dict[tuple[str, float], None] = {}
        for r in self.results:
            seen.setdefault((r.set, r.sigma))
        return list(seen)

    def _models(self) -> list[str]:
        return list(dict.fromkeys(r.model for r in self.results if r.model != NOISY))

    def _lookup(self) -> dict[tuple[str, float, str], SetResult]:
        return {(r.set, r.sigma, r.model): r for r in self.results}

    def _psnr_table(self) -> str:
        found = self._lookup()
        rows = self._rows()
        methods = list(dict.fromkeys(m for name, s in rows for m in _published(name, s)))
        header = ["set", "σ", "n", "noisy", *self._models(), *(m + " †" for m in methods)]
        body = []
        for name, sigma in rows:
            noisy = found.get((name, sigma, NOISY))
            ours = [found.get((name, sigma, m)) for m in self._models()]
            ref = _published(name, sigma)
            n = len(noisy.images) if noisy else (len(ours[0].images) if ours and ours[0] else 0)
            body.append([name, level_label(sigma), n, _fmt(noisy, "psnr", "{:.2f}"),
                         *(_fmt(r, "psnr", "{:.2f}") for r in ours),
                         *(f"{ref[m]:.2f}" if m in ref else "–" for m in methods)])
        return markdown_table(header, body)

    def _metric_table(self, metric: str, fmt: str) -> str:
        found = self._lookup()
        header = ["set", "σ", "noisy", *self._models()]
        body = [[name, level_label(sigma), _fmt(found.get((name, sigma, NOISY)), metric, fmt),
                 *(_fmt(found.get((name, sigma, m)), metric, fmt) for m in self._models())]
                for name, sigma in self._rows()]
        return markdown_table(header, body)

    def _speed_table(self) -> str:
        body = []
        for m in self._models():
            runs = [r for r in self.results if r.model == m]
            seconds, mp = sum(r.seconds for r in runs), sum(r.megapixels for r in runs)
            body.append([m, f"{seconds / mp:.3f}", f"{mp:.2f}"])
        return markdown_table(["model", "s / MP", "MP processed"], body)


def _published(name: str, sigma: float) -> dict[str, float]:
    """The published figures for a set and sigma ({} when there are none)."""
    if isinstance(sigma, str):
        return {}  # not the published tables' noise
    return PUBLISHED.get((name, int(sigma)), {}) if float(sigma).is_integer() else {}


def _fmt(result: SetResult | None, metric: str, fmt: str) -> str:
    return fmt.format(getattr(result, metric)) if result is not None and result.images else "–"


def bench(sets: Sequence[str], sigmas: Sequence[float], models: Sequence[str], *,
          seed: int = 0, gray: bool = False, max_images: int | None = None,
          progress: bool = True, device: str = "cpu") -> BenchReport:
    """Run every model on every set at every sigma (0-255 scale); see the module docstring.

    Models are registry names, or "default" for the package's default denoiser.
    """
    from tqdm.auto import tqdm

    if not sets or not sigmas or not models:
        raise InputError("bench needs at least one set, one sigma and one model")
    for s in sigmas:
        if isinstance(s, str):
            from ..noise import parse_noise

            parse_noise(s)  # a one-line error for a bad spec, before any work
        elif not 0 < s <= 255:
            raise InputError(f"sigma must be in (0, 255] on the 0-255 scale, got {s:g}")
    for name in models:
        check_denoiser(name)
    loaded = [load_test_set(spec, gray=gray, max_images=max_images) for spec in sets]
    total = sum(len(images) for _, images in loaded) * len(sigmas) * len(models)
    results: list[SetResult] = []
    with tqdm(total=total, desc="bench", unit="img", disable=None if progress else True) as bar:
        for label, images in loaded:
            for sigma in sigmas:
                results += _bench_set(label, images, sigma, models, seed, bar, device)
    return BenchReport(results, seed)


def _bench_set(label: str, images: list[tuple[str, torch.Tensor]], sigma: float,
               models: Sequence[str], seed: int, bar, device: str = "cpu") -> list[SetResult]:
    """The noisy baseline and every model on one set at one sigma.

    A model that does not take the set's channel count is left out (a "–" in the tables).
    """
    noisy = [add_noise(x, sigma, seed, i) for i, (_, x) in enumerate(images)]
    results = [SetResult(label, sigma, NOISY, [score_image(name, y, x, 0.0)
                                               for (name, x), (y, _) in zip(images, noisy)])]
    for model_name in models:
        bar.set_postfix_str(f"{label} σ={level_label(sigma)} {model_name}")
        if not all(supports_channels(model_name, x.shape[1]) for _, x in images):
            bar.update(len(images))
            continue
        result = SetResult(label, sigma, model_name)
        for (name, clean), (y, level) in zip(images, noisy):
            out, seconds = run_model(model_name, y, level, device=device)
            result.images.append(score_image(name, out, clean, seconds))
            bar.update()
        results.append(result)
    return results
