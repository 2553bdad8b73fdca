"""Imports every built-in model module so that its @register_model calls run."""
from . import classical, dct, dct_learned, ffdnet, pipeline, rednet, scratchnet, sr, unet  # noqa: F401
