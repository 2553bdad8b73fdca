"""The ``denoise`` command: one entry (:func:`main`, one error wrapper) and one module per
command family: ``run``; ``demo`` and ``bench`` (evaluate); ``models``; ``train`` and
``export-weights``; ``data ee559`` and ``ee559``. Argument types and the 0-255 noise scale
of the command line live in :mod:`denoise.cli.args`.
"""
from .main import main

__all__ = ["main"]
