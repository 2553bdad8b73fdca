"""The error raised by the scratch framework for bad input."""
from __future__ import annotations

from ..errors import InputError


class ScratchError(InputError):
    """Bad input to a scratch module or optimizer.

    Raised for wrong shapes or dtypes given to ``forward`` / ``backward``, ``backward``
    called before ``forward``, a ``state_dict`` whose keys or shapes do not match, or an
    invalid layer argument (such as a non-integer scale factor). It is an
    :class:`~denoise.errors.InputError`, so code that catches the library's input errors
    catches it too.
    """
