"""A small ASGI middleware in front of every route of the web app.

* **Host check**: bound to loopback, the server answers only requests whose Host header
  is a loopback name (127.0.0.1, localhost, [::1]): a web page elsewhere that points a
  DNS name of its own at 127.0.0.1 (DNS rebinding) gets 421.
* **Origin check**: a request that changes something (POST, PUT, PATCH, DELETE) and
  carries an Origin header must come from the page itself: another site's page gets 403.
* **Headers**: a Content-Security-Policy that lets the page load nothing from any
  other host, ``nosniff``, no framing, no referrer, and no caching of the API's answers.
"""
from __future__ import annotations

import json
from urllib.parse import urlsplit

#: The page may load and connect to its own server only (images also from blob: URLs,
#: the results it keeps after they were deleted from the server).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"),
           (b"cross-origin-resource-policy", b"same-origin")]
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def host_name(host: str) -> str:
    """The name in a Host header, without the port (``[::1]:8000`` -> ``[::1]``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """The host and origin checks and the security headers (see the module docstring)."""

    def __init__(self, app, allowed_hosts=None) -> None:
        self.app = app
        self.allowed = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if self.allowed is not None and host_name(host) not in self.allowed:
            await _refuse(send, 421, f"this server answers only to {', '.join(sorted(self.allowed))} "
                                     "(it is bound to loopback); open it by that address")
            return
        origin = headers.get("origin")
        if scope["method"] in UNSAFE_METHODS and origin is not None and origin != "null" \
                and urlsplit(origin).netloc.lower() != host.lower():
            await _refuse(send, 403, "cross-origin requests are refused: use the page this "
                                     "server serves")
            return
        if scope["method"] in UNSAFE_METHODS and origin == "null":
            await _refuse(send, 403, "requests from an opaque origin are refused")
            return
        api = scope["path"].startswith("/api/")

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                extra = list(HEADERS)
                if api:
                    extra.append((b"cache-control", b"no-store"))
                names = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": list(message.get("headers", [])) +
                           [(k, v) for k, v in extra if k not in names]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _refuse(send, status: int, message: str) -> None:
    body = json.dumps({"error": message, "status": status}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *HEADERS]})
    await send({"type": "http.response.body", "body": body})
