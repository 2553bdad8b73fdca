"""``denoise serve``: the local web page (drop an image, compare methods, download).

Needs the optional extra ``web`` (Starlette and uvicorn); without it the command says so
in one line. Bound to loopback by default; any other address prints a warning that the
page has no authentication.
"""
from __future__ import annotations

import argparse
import errno
import socket
import sys
import threading
import warnings

from ..errors import InputError, MissingDependencyError
from .args import PROG, paragraphs, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="a local web page: drop an image, compare methods, download the result",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=paragraphs(
            "Start a local web app: drop an image (PNG, JPEG, TIFF; 8 or 16 bit; gray, RGB, "
            "RGBA), pick a model and the noise level, watch the tiles, drag a divider between "
            "the input and the result or between two models, zoom and pan both, read PSNR and "
            "SSIM against a clean reference, and download the result in the input's format "
            "and bit depth. Models run one at a time; other jobs wait in a queue.",
            "Uploads and results stay in a private temporary folder, deleted when downloaded "
            "or when they expire, and all of it when the server stops. The page loads nothing "
            "from any other host and works offline. It has no authentication: keep it on "
            "loopback unless every machine that can reach it may use it."),
        epilog="Example: denoise serve --open   (then http://127.0.0.1:8000)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=port_number, default=8000, help="port (default 8000; 0: any free)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.add_argument("--max-upload-mb", type=positive_int, default=100, metavar="MB",
                   help="largest upload accepted (default 100 MB)")
    p.add_argument("--max-megapixels", type=positive_int, default=40, metavar="MP",
                   help="largest image accepted, width x height (default 40 megapixels)")
    p.add_argument("--expire-minutes", type=positive_int, default=60, metavar="MIN",
                   help="delete uploads and results unused for this long (default 60)")
    p.add_argument("--device", default="cpu", help="device models run on: cpu (default), auto, cuda, mps")
    p.set_defaults(func=cmd_serve)


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, got {value}")
    return value


def _require_web() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(f"'denoise serve' needs the web extra ({exc.name} is missing): "
                                     "pip install 'denoise[web]'") from None


def _listen(host: str, port: int) -> socket.socket:
    """A bound, listening socket (so that a busy port is a one-line error, not a log)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InputError(f"cannot listen on {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        why = "the port is in use (pick another with --port)" if exc.errno == errno.EADDRINUSE \
            else (exc.strerror or str(exc))
        raise InputError(f"cannot listen on {host}:{port}: {why}") from None
    sock.listen(128)
    return sock


def _fewer_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas: the server's many threads (one per request being read)
    would each get an arena, and freed image buffers scattered over them keep the
    process's memory high (a no-op where the C library is not glibc)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def cmd_serve(args: argparse.Namespace) -> int:
    """``denoise serve``: check, bind, warn, serve until Ctrl+C."""
    _require_web()
    import uvicorn

    from ..inference import resolve_device
    from ..web import Settings, create_app
    from ..web.config import MB, hosts_for, is_loopback

    resolve_device(args.device)  # a one-line error for an unknown or absent device
    settings = Settings(max_upload_bytes=args.max_upload_mb * MB,
                        max_pixels=args.max_megapixels * 1_000_000,
                        expiry_seconds=args.expire_minutes * 60.0,
                        allowed_hosts=hosts_for(args.host), device=args.device)
    sock = _listen(args.host, args.port)
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{port}/"
    if not is_loopback(args.host):
        warnings.warn(f"listening on {args.host}: the page has no authentication; anyone who can "
                      "reach this address can upload images and run models here")
    print(f"{PROG}: serving on {url} (Ctrl+C to stop)", file=sys.stderr, flush=True)
    if args.open:
        import webbrowser

        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    _fewer_malloc_arenas()
    app = create_app(settings)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        app.state.close()
        sock.close()
    return 0
