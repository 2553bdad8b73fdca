"""The ASGI app of ``denoise serve``: the page, its static files and a small JSON API.

Routes (every refusal answers ``{"error": "one line", "status": N}``):

* ``GET /``: the page; ``GET /static/...``: its script and style (no other host).
* ``GET /api/models``: tasks, models (card summary, speed here), limits.
* ``POST /api/uploads?name=FILE``: the image file's bytes as the body -> 201 with its
  id, size, depth and estimated noise level; 400 empty, 413 too large (bytes or
  pixels), 415 not PNG/JPEG/TIFF by content, 422 damaged or truncated.
* ``GET /api/uploads/{id}``, ``GET /api/uploads/{id}/preview`` (PNG), ``DELETE``.
* ``POST /api/jobs`` JSON ``{"upload", "model", "sigma" (0-255 or null: estimated),
  "strength", "ensemble", "reference"}`` -> 202 with the job; 400 bad JSON, 404/410
  unknown/expired upload, 415 not JSON, 422 unknown model or bad value, 503 queue full.
* ``GET /api/jobs/{id}``: state (queued with its place, running with tiles done/total,
  done with the result and metrics, failed with the reason, cancelled).
* ``POST /api/jobs/{id}/cancel``: 200; 409 when the job has already finished.
* ``GET /api/jobs/{id}/preview`` (PNG); ``GET /api/jobs/{id}/download``: the result in
  the input's format and depth, deleted from the server once sent; 409 not done, 410
  downloaded already or expired.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .catalog import Catalog
from .config import FORMATS, ID_PATTERN, MEDIA_TYPES, HTTPProblem, Settings
from .guard import Guard
from .images import (
    DECODERS,
    clean_name,
    decode,
    estimate_sigma_255,
    inspect,
    limit_text,
    release_memory,
    write_preview,
)
from .jobs import JobQueue
from .store import Job, Store, Upload

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("denoise.web")


def create_app(settings: Settings | None = None) -> Starlette:
    """A new app with its own private folder, queue and worker thread (stopped, and the
    folder deleted, when the app shuts down; ``app.state.close()`` does it by hand)."""
    settings = settings or Settings()
    store = Store(settings)
    catalog = Catalog(settings.device)
    queue = JobQueue(store, catalog, settings)

    def close() -> None:
        queue.close()
        store.close()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        close()

    routes = [
        Route("/", index),
        Route("/api/models", models),
        Route("/api/queue", queue_status),
        Route("/api/uploads", upload, methods=["POST"]),
        Route("/api/uploads/{key}", upload_info, methods=["GET", "DELETE"]),
        Route("/api/uploads/{key}/preview", upload_preview),
        Route("/api/jobs", create_job, methods=["POST"]),
        Route("/api/jobs/{key}", job_status),
        Route("/api/jobs/{key}/cancel", cancel_job, methods=["POST"]),
        Route("/api/jobs/{key}/preview", job_preview),
        Route("/api/jobs/{key}/download", download),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {HTTPProblem: problem, HTTPException: http_error, Exception: crash}
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    app.add_middleware(Guard, allowed_hosts=settings.allowed_hosts)
    app.state.settings, app.state.store, app.state.catalog, app.state.queue = settings, store, catalog, queue
    app.state.close = close
    return app


# ---------------------------------------------------------------------- errors
async def problem(request: Request, exc: HTTPProblem) -> JSONResponse:
    return JSONResponse({"error": exc.message, "status": exc.status}, status_code=exc.status)


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    messages = {404: f"no such page or API route: {request.url.path[:80]}",
                405: f"{request.method} is not allowed on {request.url.path[:80]}"}
    text = messages.get(exc.status_code, str(exc.detail))
    return JSONResponse({"error": text, "status": exc.status_code}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


async def crash(request: Request, exc: Exception) -> JSONResponse:
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server's log",
                         "status": 500}, status_code=500)


def _state(request: Request) -> tuple[Settings, Store, Catalog, JobQueue]:
    s = request.app.state
    s.store.sweep()
    return s.settings, s.store, s.catalog, s.queue


def _key(request: Request) -> str:
    key = request.path_params["key"]
    if not ID_PATTERN.match(key):
        raise HTTPProblem(404, "not an id of this server (ids are 24 letters, digits, - or _)")
    return key


# ---------------------------------------------------------------------- page and catalog
async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html")


async def models(request: Request) -> JSONResponse:
    settings, _, catalog, _ = _state(request)
    public = await run_in_threadpool(catalog.public)
    public["limits"] = {"max_upload_bytes": settings.max_upload_bytes,
                        "max_pixels": settings.max_pixels,
                        "expiry_seconds": settings.expiry_seconds, "text": limit_text(settings)}
    return JSONResponse(public)


async def queue_status(request: Request) -> JSONResponse:
    return JSONResponse(_state(request)[3].status())


# ---------------------------------------------------------------------- uploads
async def upload(request: Request) -> JSONResponse:
    """Stream the body into the private folder (refused past the limit), then check it."""
    settings, store, _, _ = _state(request)
    given = clean_name(request.query_params.get("name"), default="")
    name = given or "the upload"
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPProblem(413, f"{name} is {int(declared) / 2**20:.1f} MB; this server takes "
                               f"uploads of at most {limit / 2**20:g} MB")
    key = store.new_id()
    part = store.file(key, ".part")
    size = 0
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as sink:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPProblem(413, f"{name} is larger than this server's upload limit "
                                           f"of {limit / 2**20:g} MB")
                sink.write(chunk)
        if size == 0:
            raise HTTPProblem(400, "the upload is empty: send the image file's bytes as the "
                                   "request body")
        record = await run_in_threadpool(_check_upload, part, key, given, size, settings, store)
    except BaseException:  # a refusal, or the client went away: keep nothing of it
        store.delete_files(list(store.root.glob(f"{key}*")))
        raise
    store.add_upload(record)
    return JSONResponse(record.public(), status_code=201)


def _check_upload(part: Path, key: str, given: str, size: int, settings: Settings,
                  store: Store) -> Upload:
    """Check the received file by content, decode it once (estimate, preview), keep it."""
    label = given or "the upload"
    fmt, width, height = inspect(part, label, settings)
    with DECODERS:
        x, info = decode(part, label)
        sigma = estimate_sigma_255(x)
        preview = store.file(key, ".in.png")
        write_preview(x, preview)
        channels, height, width = x.shape[1:]
        del x
        release_memory()
    path = store.file(key, FORMATS[fmt])
    part.replace(path)
    return Upload(key, path, preview, given or f"image{FORMATS[fmt]}", fmt, width, height,
                  channels, info.bit_depth, info.alpha is not None, sigma, size)


async def upload_info(request: Request) -> Response:
    _, store, _, _ = _state(request)
    key = _key(request)
    if request.method == "DELETE":
        store.delete_upload(key)
        return JSONResponse({"deleted": key})
    return JSONResponse(store.upload(key).public())


async def upload_preview(request: Request) -> Response:
    _, store, _, _ = _state(request)
    record = store.upload(_key(request))
    return _file(record.preview, "image/png")


def _file(path: Path | None, media_type: str, **kw) -> Response:
    if path is None or not path.is_file():
        raise HTTPProblem(410, "this file has been deleted from the server (downloaded or expired)")
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-store"}, **kw)


# ---------------------------------------------------------------------- jobs
async def create_job(request: Request) -> JSONResponse:
    settings, store, catalog, queue = _state(request)
    body = await _json_body(request)
    source = store.upload(body.get("upload"))
    reference = None
    if body.get("reference") is not None:
        reference = store.upload(body["reference"], "reference upload")
    ensemble = body.get("ensemble", False)
    if not isinstance(ensemble, bool):
        raise HTTPProblem(422, f"ensemble must be true or false, got {ensemble!r}")
    name, item = await run_in_threadpool(catalog.resolve, body.get("model"), source.channels, ensemble)
    sigma = _number(body.get("sigma"), "sigma", 0, 255, "on the 0-255 scale")
    strength = _number(body.get("strength"), "strength", 0, 20, "(1 = the noise level as set)")
    if strength is not None and strength < 0.05:
        raise HTTPProblem(422, f"strength must be at least 0.05 (1 = the noise level as set), got {strength:g}")
    if reference is not None:
        _check_reference(reference, source, item["scale"])
    job = Job(store.new_id(), source, name, None if sigma is None else sigma / 255,
              strength if item["noise_map"] else None, reference)
    queue.submit(job)
    return JSONResponse(_job_public(job, queue), status_code=202)


async def _json_body(request: Request) -> dict:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise HTTPProblem(415, "send the job as JSON (Content-Type: application/json)")
    raw = await request.body()
    if len(raw) > 16384:
        raise HTTPProblem(413, "the job description is too long")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise HTTPProblem(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise HTTPProblem(400, "the request body must be a JSON object such as "
                               '{"upload": ID, "model": "dct", "sigma": 25}')
    return body


def _number(value, name: str, low: float, high: float, unit: str) -> float | None:
    """``value`` as a number in (low, high], or None when absent/null."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low < value <= high:
        raise HTTPProblem(422, f"{name} must be a number in ({low:g}, {high:g}] {unit}, got "
                               f"{json.dumps(value)[:40]}")
    return float(value)


def _check_reference(reference: Upload, source: Upload, scale: int) -> None:
    want = (source.width * scale, source.height * scale, source.channels)
    have = (reference.width, reference.height, reference.channels)
    if have != want:
        raise HTTPProblem(422, f"the clean reference is {have[0]}x{have[1]} with {have[2]} "
                               f"channel(s); the result will be {want[0]}x{want[1]} with "
                               f"{want[2]}: choose the matching clean image")


def _job_public(job: Job, queue: JobQueue) -> dict:
    state = "cancelling" if job.state == "running" and job.cancel_requested else job.state
    place, ahead = queue.position(job)
    return {"id": job.id, "state": state, "position": place, "ahead": ahead, "model": job.model,
            "upload": job.upload.id, "done": job.done, "total": job.total, "error": job.error,
            "downloaded": job.downloaded,
            "result": job.result if job.state == "done" else None}


async def job_status(request: Request) -> JSONResponse:
    _, store, _, queue = _state(request)
    return JSONResponse(_job_public(store.job(_key(request)), queue))


async def cancel_job(request: Request) -> JSONResponse:
    _, store, _, queue = _state(request)
    job = store.job(_key(request))
    queue.cancel(job)
    return JSONResponse(_job_public(job, queue))


def _finished_job(store: Store, key: str) -> Job:
    job = store.job(key)
    if job.state != "done":
        why = {"queued": "is still waiting", "running": "is still running",
               "failed": f"failed ({job.error})", "cancelled": "was cancelled"}[job.state]
        raise HTTPProblem(409, f"job {key} {why}: there is no result to send")
    if job.downloaded:
        raise HTTPProblem(410, f"the result of job {key} was already downloaded and deleted "
                               "from the server; run the job again for another copy")
    return job


async def job_preview(request: Request) -> Response:
    _, store, _, _ = _state(request)
    return _file(_finished_job(store, _key(request)).preview_path, "image/png")


async def download(request: Request) -> Response:
    """Send the result once; it is deleted from the server when sent."""
    _, store, _, _ = _state(request)
    with store.lock:
        job = _finished_job(store, _key(request))
        job.downloaded = True
        files = job.files()
    response = _file(job.result_path, MEDIA_TYPES[job.upload.format], filename=job.download_name,
                     background=BackgroundTask(store.delete_files, files))
    return response
