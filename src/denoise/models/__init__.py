"""Denoisers, registered by name. See :mod:`denoise.models.registry`."""
from .registry import create_model, get_entry, list_models, load_weights, register_model

__all__ = ["create_model", "get_entry", "list_models", "load_weights", "register_model"]
