"""User-facing errors.

Every problem caused by bad input (a file, a parameter, a tensor) raises a subclass of
:class:`DenoiseError` with a one-line message that says what to do. The command line
prints that line and exits with status 2; anything else is a bug.
"""


class DenoiseError(Exception):
    """Base class of the errors reported to the user in one line."""


class InputError(DenoiseError, ValueError):
    """Bad tensor, shape, dtype, value or parameter passed to the API."""


class ImageReadError(DenoiseError, OSError):
    """A file that is missing, unreadable, truncated or not an image."""


class OutputError(DenoiseError, OSError):
    """An output file that cannot be written (missing or read-only folder, existing file)."""


class ImageWriteError(OutputError):
    """An output image that cannot be written (missing or read-only folder, existing file)."""


class ModelError(DenoiseError, KeyError):
    """Unknown model name, missing or mismatched weights."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(DenoiseError, ImportError):
    """An optional package (bm3d, onnx) is needed but not installed."""


class TrainingError(DenoiseError, RuntimeError):
    """Training cannot go on (NaN loss, checkpoint not writable, refused resume)."""
