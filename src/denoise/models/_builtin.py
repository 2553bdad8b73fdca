"""Imports every built-in model module so that its @register_model calls run."""
import importlib

for _mod in ("dct", "classical", "unet"):
    try:
        importlib.import_module(f"denoise.models.{_mod}")
    except ModuleNotFoundError as exc:  # a module not written yet must not break the rest
        if exc.name != f"denoise.models.{_mod}":
            raise
