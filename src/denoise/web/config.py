"""The web app's settings and the one error type its routes turn into HTTP answers.

Kept free of any web framework import, so that the command line can check its options
(and the tests can build settings) without the ``web`` extra installed.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ..errors import DenoiseError, InputError

#: What an upload may be, by content (Pillow's format names), and the suffix of its file
#: on the server and of the result the user downloads.
FORMATS = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif"}
#: Media types of the downloads, by format.
MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "TIFF": "image/tiff"}
#: Ids are made by the server (``secrets.token_urlsafe(18)``: 24 URL-safe characters);
#: anything else in a URL is refused before any lookup.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{24}$")

MB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Limits and behaviour of one server process.

    Attributes:
        max_upload_bytes: refuse uploads larger than this (HTTP 413).
        max_pixels: refuse images with more pixels (width x height) than this (HTTP 413),
            checked from the header before any decoding (decompression bombs).
        expiry_seconds: uploads and results are deleted this long after their last use.
        max_queued: jobs waiting at most; more are refused (HTTP 503).
        tile: tile size passed to :func:`denoise.inference.restore` (progress granularity).
        allowed_hosts: the Host headers accepted (DNS-rebinding guard); None: any.
        workdir_parent: where the private folder is made (None: the system's temp folder).
        device: the device models run on ("cpu", "auto", ...).
    """

    max_upload_bytes: int = 100 * MB
    max_pixels: int = 40_000_000
    expiry_seconds: float = 3600.0
    max_queued: int = 100
    tile: int = 1024
    allowed_hosts: tuple[str, ...] | None = ("127.0.0.1", "localhost", "[::1]", "::1")
    workdir_parent: str | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "max_queued", "tile"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if not self.expiry_seconds > 0:
            raise InputError(f"expiry_seconds must be positive, got {self.expiry_seconds!r}")


class HTTPProblem(DenoiseError):
    """A refusal with its HTTP status: the routes answer ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = " ".join(message.split())


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the server on this machine."""
    text = host.strip().strip("[]")
    if text == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def hosts_for(host: str) -> tuple[str, ...] | None:
    """The Host headers to accept when bound to ``host``: the loopback names when it is a
    loopback address (a web page elsewhere cannot reach the server by a DNS name that
    points at 127.0.0.1), else None (any: the operator chose to expose it)."""
    if not is_loopback(host):
        return None
    names = {"127.0.0.1", "localhost", "[::1]", "::1"}
    names.add(host.strip())
    return tuple(sorted(names))
