"""The demo: every available denoiser on photos bundled with scikit-image.

``denoise demo`` scales a few bundled photos down (which keeps the slow methods short:
BM3D, the slowest, takes seconds per photo), adds Gaussian noise from a fixed seed with the benchmark's
protocol (:mod:`denoise.evaluation.bench`: unclipped noise, the true sigma given to the models,
outputs clipped and not quantised), runs every available model, and writes

* ``results.md`` and ``results.json``: PSNR, SSIM and seconds of every method,
* ``<image>.png``: a comparison sheet per photo (noisy, each method, clean, and a zoomed
  crop of the most detailed region),
* ``noisy/<image>.png``: the noisy inputs as 8-bit PNG, to try ``denoise run`` on, and
  ``clean/<image>.png`` the clean photos, to compare with.

The demo's own output files are replaced when they exist, so it can be run again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError, OutputError
from ..inference import check_denoiser, supports_channels
from ..utils import write_json, write_text
from .bench import NOISY, ImageScore, SetResult, add_noise, run_model, score_image
from .report import Panel, comparison_sheet, detail_crop, markdown_table

#: The photos the demo uses by default: three color ones and a gray one.
DEMO_IMAGES = ("astronaut", "coffee", "chelsea", "camera")

#: Photos shipped inside the scikit-image package (no download needed).
BUNDLED_IMAGES = ("astronaut", "brick", "camera", "cat", "chelsea", "coffee", "coins", "grass",
                  "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page",
                  "retina", "rocket", "text")


def load_demo_image(name: str, size: int | None = 256) -> torch.Tensor:
    """A photo bundled with scikit-image as (1, C, H, W) float32 in [0, 1].

    When ``size`` is given, the image is scaled down (antialiased bicubic) so that its
    longer side is at most ``size`` pixels, then rounded to 8-bit levels like a file.
    """
    if name not in BUNDLED_IMAGES:
        raise InputError(f"unknown demo image {name!r}; choose among {', '.join(BUNDLED_IMAGES)}")
    if size is not None and size < 16:
        raise InputError(f"--size must be at least 16 pixels, got {size}")
    import skimage.data

    array = torch.from_numpy(getattr(skimage.data, name)().copy())
    x = (array[None, None] if array.dim() == 2 else array.permute(2, 0, 1)[None]).float() / 255
    h, w = x.shape[-2:]
    if size is not None and max(h, w) > size:
        scale = size / max(h, w)
        shape = (max(1, round(h * scale)), max(1, round(w * scale)))
        x = F.interpolate(x, size=shape, mode="bicubic", antialias=True, align_corners=False)
        x = (x.clamp(0, 1) * 255).round() / 255
    return x.contiguous()


@dataclass
class DemoResult:
    """Scores of every method on every demo photo, and the files written."""

    sigma: float
    seed: int
    size: int | None
    images: list[str]
    results: list[SetResult]
    files: list[Path] = field(default_factory=list)

    def score(self, model: str, image: str) -> ImageScore | None:
        for r in self.results:
            if r.model == model:
                return next((s for s in r.images if s.name == image), None)
        return None

    def table(self) -> str:
        """Markdown table: one row per method, PSNR per photo, mean PSNR, SSIM, seconds."""
        header = ["method", *(f"{name} PSNR" for name in self.images), "mean PSNR", "mean SSIM",
                  "seconds"]
        rows = []
        for r in self.results:
            cells = [self.score(r.model, name) for name in self.images]
            rows.append([r.model if r.model != NOISY else "noisy input",
                         *(f"{c.psnr:.2f}" if c else "–" for c in cells),
                         *((f"{r.psnr:.2f}", f"{r.ssim:.4f}") if r.images else ("–", "–")),
                         "–" if r.model == NOISY or not r.images else f"{r.seconds:.2f}"])
        return markdown_table(header, rows)

    def to_dict(self) -> dict:
        return {"sigma": self.sigma, "seed": self.seed, "size": self.size, "images": self.images,
                "protocol": "AWGN not clipped, true sigma given, outputs clipped to [0, 1], "
                            "not quantised; PSNR/SSIM with data_range=1",
                "results": [r.to_dict() for r in self.results]}

    def to_markdown(self) -> str:
        sheets = "\n".join(f"![{name}]({name}.png)" for name in self.images)
        size = f"longer side scaled to {self.size} px" if self.size else "full size"
        return (f"# denoise demo\n\nGaussian noise sigma={self.sigma:g} (0-255 scale), seed {self.seed}, "
                f"scikit-image photos ({size}). PSNR in dB, SSIM with data range 1, seconds of "
                f"the forward passes over all photos. A method missing for a photo (–) does not "
                f"handle its channel count; its means are over the photos it ran on.\n\n"
                f"{self.table()}\n\n{sheets}\n")


def available_demo_models() -> list[str]:
    """Every registered model that can run here (weights shipped, extras installed)."""
    from ..models.registry import list_models

    return [entry.name for entry in list_models(available_only=True) if entry.scale == 1]


def run_demo(out: str | Path, *, models: Sequence[str] | None = None, sigma: float = 25.0,
             seed: int = 0, images: Sequence[str] = DEMO_IMAGES, size: int | None = 256,
             progress: bool = True, device: str = "cpu") -> DemoResult:
    """Run the demo and write its files into ``out`` (created if missing); see the module doc.

    ``models`` defaults to every available model; ``sigma`` is on the 0-255 scale; the
    noise of photo ``i`` comes from seed ``seed + i`` (:func:`denoise.evaluation.bench.add_noise`).
    """
    from tqdm.auto import tqdm

    from ..io import write_image

    if not 0 < sigma <= 255:
        raise InputError(f"sigma must be in (0, 255] on the 0-255 scale, got {sigma:g}")
    if not images:
        raise InputError("the demo needs at least one image")
    models = list(dict.fromkeys(models or available_demo_models()))
    for name in models:
        check_denoiser(name)  # unknown, unavailable or upscaling models fail before any work
    photos = [(name, load_demo_image(name, size)) for name in dict.fromkeys(images)]
    out = _make_folder(Path(out))
    _make_folder(out / "noisy")
    _make_folder(out / "clean")
    results = {m: SetResult("demo", sigma, m) for m in [NOISY, *models]}
    written: list[Path] = []
    with tqdm(total=len(photos) * len(models), desc="demo", unit="run",
              disable=None if progress else True) as bar:
        for index, (name, clean) in enumerate(photos):
            noisy, level = add_noise(clean, sigma, seed, index)
            outputs = _denoise_photo(name, clean, noisy, level, results, bar, device)
            written.append(write_image(out / "noisy" / f"{name}.png", noisy, overwrite=True))
            written.append(write_image(out / "clean" / f"{name}.png", clean, overwrite=True))
            written.append(_sheet(out / f"{name}.png", name, clean, noisy, outputs, results, sigma))
    demo = DemoResult(sigma, seed, size, [name for name, _ in photos], list(results.values()), written)
    demo.files += [write_json(out / "results.json", demo.to_dict()),
                   write_text(out / "results.md", demo.to_markdown())]
    return demo


def _denoise_photo(name: str, clean: torch.Tensor, noisy: torch.Tensor, sigma: torch.Tensor,
                   results: dict[str, SetResult], bar, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Score the noisy photo and every model's output on it (adding to ``results``).

    Returns the outputs by model name; a model that does not take the photo's channel
    count is skipped.
    """
    results[NOISY].images.append(score_image(name, noisy, clean, 0.0))
    outputs = {}
    for model_name, result in results.items():
        if model_name == NOISY:
            continue
        bar.set_postfix_str(f"{name} {model_name}")
        if supports_channels(model_name, clean.shape[1]):
            y, seconds = run_model(model_name, noisy, sigma, device=device)
            outputs[model_name] = y
            result.images.append(score_image(name, y, clean, seconds))
        bar.update()
    return outputs


def _sheet(path: Path, name: str, clean: torch.Tensor, noisy: torch.Tensor,
           outputs: dict[str, torch.Tensor], results: dict[str, SetResult], sigma: float) -> Path:
    """The comparison sheet of one photo: noisy input, every output, clean reference."""

    def caption(model: str) -> str:
        s = next(s for s in results[model].images if s.name == name)
        return f"{s.psnr:.2f} dB, SSIM {s.ssim:.3f}"

    panels = [Panel("noisy input", noisy, caption(NOISY)),
              *(Panel(m, y, caption(m)) for m, y in outputs.items()),
              Panel("clean", clean)]
    side = max(24, min(clean.shape[-2:]) // 3)
    return comparison_sheet(path, panels, crop=detail_crop(clean, side),
                            title=f"{name}: Gaussian noise σ={sigma:g} (0-255 scale)")


def _make_folder(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {path}: {exc.strerror or exc}") from None
    return path
