"""denoise: learned image restoration.

The small public API::

    import denoise
    x, info = denoise.read_image("noisy.png")        # (1, C, H, W) float32 in [0, 1]
    y = denoise.denoise(x, model="dct", sigma=25 / 255)
    denoise.psnr(y, clean), denoise.ssim(y, clean)
    model = denoise.load_model("dct")                 # any registered model
    fitted = denoise.fit("my_photos/", minutes=5).model  # fine-tuned on one's own noisy photos
"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import (
    DenoiseError,
    ImageReadError,
    ImageWriteError,
    InputError,
    ModelError,
)
from .models.registry import create_model, list_models, register_model

load_model = create_model


def __getattr__(name):
    # Lazy access to the heavier submodules' main functions.
    if name in ("read_image", "write_image"):
        from . import io
        return getattr(io, name)
    if name in ("psnr", "ssim", "residual_std"):
        from . import metrics
        return getattr(metrics, name)
    if name == "estimate_sigma":
        from .estimate import estimate_sigma
        return estimate_sigma
    if name in ("denoise", "restore"):
        from . import inference
        return getattr(inference, name)
    if name == "fit":
        from .training.fit import fit
        return fit
    raise AttributeError(f"module 'denoise' has no attribute {name!r}")


__all__ = [
    "DenoiseError", "ImageReadError", "ImageWriteError", "InputError", "ModelError",
    "create_model", "list_models", "load_model", "register_model",
    "read_image", "write_image", "psnr", "ssim", "residual_std", "estimate_sigma", "denoise", "restore",
    "fit",
]
