"""Imports every built-in model module so that its @register_model calls run."""
from . import classical, dct, unet  # noqa: F401
