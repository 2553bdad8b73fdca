"""``denoise serve``: a local web page to restore an image and compare methods.

Drop an image, pick a task and a model from the registry, watch the tiles go by, drag a
divider between the input and the result (or two results), zoom and pan both at once,
read PSNR and SSIM against a clean reference, and download the result in the input's
format and bit depth. Everything runs through :func:`denoise.inference.restore` and
:mod:`denoise.io`, like ``denoise run``.

Modules: :mod:`~denoise.web.app` (routes), :mod:`~denoise.web.jobs` (the queue: one
run at a time), :mod:`~denoise.web.store` (the private folder, ids, expiry),
:mod:`~denoise.web.images` (checking uploads by content, previews),
:mod:`~denoise.web.catalog` (the models offered), :mod:`~denoise.web.guard` (host and
origin checks, security headers), :mod:`~denoise.web.config` (settings). The page
itself is ``static/`` (hand-written HTML, JavaScript and CSS; nothing from another host).

Needs the optional extra: ``pip install 'denoise[web]'`` (Starlette and uvicorn).
"""
from .config import Settings

__all__ = ["Settings", "create_app"]


def create_app(settings: Settings | None = None):
    """The ASGI app (see :func:`denoise.web.app.create_app`)."""
    from .app import create_app as make

    return make(settings)
