"""Imports every built-in model module so that its @register_model calls run."""
from . import classical, dct, ffdnet, unet  # noqa: F401
