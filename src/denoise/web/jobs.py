"""The job queue: one model run at a time per process, the others waiting in order.

A single worker thread takes jobs first in, first out and runs each through
:func:`denoise.inference.restore` (the one inference path), with a callback that
records the tiles done and raises :class:`Cancelled` when the user cancelled, so a
running job stops after its current tile. The result is written by
:func:`denoise.io.write_image`, the writer of ``denoise run``: the input's format, bit
depth and alpha channel. A failing job is marked failed with a one-line reason; the
worker goes on with the next.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque

import torch

from ..errors import DenoiseError
from .catalog import Catalog
from .config import FORMATS, HTTPProblem, Settings
from .images import clean_name, decode, release_memory, stem, write_preview
from .store import Job, Store

log = logging.getLogger("denoise.web")


class Cancelled(Exception):
    """Raised by the progress callback of a job the user cancelled."""


class JobQueue:
    """Waiting jobs and the worker thread that runs them one at a time."""

    def __init__(self, store: Store, catalog: Catalog, settings: Settings) -> None:
        self.store, self.catalog, self.settings = store, catalog, settings
        self._cond = threading.Condition(store.lock)
        self._pending: deque[Job] = deque()
        self.current: Job | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="denoise-web-worker", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the API's side
    def submit(self, job: Job) -> None:
        """Queue ``job``; 503 when the queue is full."""
        with self._cond:
            if len(self._pending) >= self.settings.max_queued:
                raise HTTPProblem(503, f"the server is busy: {len(self._pending)} jobs are waiting; "
                                       "try again in a minute")
            job.upload.active_jobs += 1
            if job.reference is not None:
                job.reference.active_jobs += 1
            self.store.add_job(job)
            self._pending.append(job)
            self._cond.notify_all()

    def position(self, job: Job) -> tuple[int | None, int]:
        """``(place, ahead)``: the place in the waiting line (1: next; 0: running; None:
        finished) and how many jobs run before it (the running one included)."""
        with self._cond:
            if job.state == "queued" and job in self._pending:
                place = self._pending.index(job) + 1
                return place, place - 1 + (self.current is not None)
            if job.state in ("queued", "running"):
                return 0, 0
            return None, 0

    def cancel(self, job: Job) -> None:
        """Cancel a queued job now, a running one after its current tile; 409 when the
        job has already finished."""
        with self._cond:
            if job.finished_state:
                raise HTTPProblem(409, f"job {job.id} has already finished ({job.state}); "
                                       "there is nothing to cancel")
            job.cancel_requested = True
            if job.state == "queued" and job in self._pending:
                self._pending.remove(job)
                self._finish(job, "cancelled")

    def status(self) -> dict:
        with self._cond:
            return {"running": self.current.id if self.current else None,
                    "waiting": len(self._pending)}

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker: pending jobs are cancelled, the running one asked to stop."""
        with self._cond:
            self._closed = True
            while self._pending:
                job = self._pending.popleft()
                job.cancel_requested = True
                self._finish(job, "cancelled")
            if self.current is not None:
                self.current.cancel_requested = True
            self._cond.notify_all()
        self._thread.join(timeout)

    # ------------------------------------------------------------------ the worker's side
    def _finish(self, job: Job, state: str, error: str | None = None) -> None:
        """Mark ``job`` finished (the lock is held)."""
        job.state, job.error, job.finished = state, error, time.monotonic()
        job.upload.active_jobs -= 1
        job.upload.last_used = job.finished
        if job.reference is not None:
            job.reference.active_jobs -= 1
            job.reference.last_used = job.finished

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait(timeout=30.0)
                    if not self._pending:
                        self.store.sweep()
                if self._closed:
                    return
                job = self._pending.popleft()
                job.state, self.current = "running", job
            state, error = "done", None
            try:
                run_job(job, self.store, self.catalog, self.settings)
            except Cancelled:
                state = "cancelled"
            except (DenoiseError, HTTPProblem) as exc:
                state, error = "failed", " ".join(str(exc).split())
            except MemoryError:
                state, error = "failed", "out of memory: try a smaller image"
            except Exception as exc:  # noqa: BLE001 - the worker must survive any bug
                log.exception("job %s failed", job.id)
                state, error = "failed", f"internal error ({type(exc).__name__}); see the server's log"
            release_memory()
            with self._cond:
                if state != "done":
                    self.store.delete_files(job.files())
                    job.result_path = job.preview_path = None
                    job.result = None
                self._finish(job, state, error)
                self.current = None


def run_job(job: Job, store: Store, catalog: Catalog, settings: Settings) -> None:
    """Run one job: decode, restore with progress and cancel, write the result and its
    preview, and measure it against the reference when there is one."""
    from ..inference import ENSEMBLE_SUFFIX, restore
    from ..io import write_image
    from ..upscale import resized_info

    # a tiled self-ensemble tiles each of its 8 transformed images: count the tiles of all
    passes = 8 if job.model.endswith(ENSEMBLE_SUFFIX) else 1
    calls = [0]

    def callback(done: int, total: int) -> None:
        calls[0] += 1
        job.total = total * passes
        job.done = min(calls[0], job.total)
        if job.cancel_requested:
            raise Cancelled

    if job.cancel_requested:
        raise Cancelled
    upload = job.upload
    x, info = decode(upload.path, upload.name)
    item = catalog.models()[job.model.partition("+")[0]]
    sigma = job.sigma if item["uses_sigma"] else None
    strength = job.strength if item["noise_map"] else None
    result = restore(x, job.model, sigma, tile=settings.tile, device=settings.device,
                     strength=strength, callback=callback)
    job.done = job.total = max(job.total, 1)
    y = result.output
    suffix = FORMATS[upload.format]
    job.result_path = store.file(job.id, suffix)
    job.preview_path = store.file(job.id, ".preview.png")
    write_image(job.result_path, y, resized_info(info, y.shape[-1] // x.shape[-1]), overwrite=True)
    write_preview(y, job.preview_path)
    job.download_name = f"{stem(upload.name)}-{clean_name(job.model.replace('+', '-'))}{suffix}"
    used = result.sigma
    job.result = {
        "model": result.model, "seconds": round(result.seconds, 3), "tiled": result.tiled,
        "width": y.shape[-1], "height": y.shape[-2],
        "sigma": None if used is None else round(float(torch.as_tensor(used).flatten()[0]) * 255, 2),
        "sigma_estimated": result.sigma_estimated,
        "strength": strength,
        "preview": f"/api/jobs/{job.id}/preview", "download": f"/api/jobs/{job.id}/download",
        "filename": job.download_name, **_metrics(job, x, y, info),
    }
    catalog.record_speed(job.model, x.shape[-1] * x.shape[-2] / 1e6, result.seconds)


def _metrics(job: Job, x: torch.Tensor, y: torch.Tensor, info) -> dict:
    """PSNR and SSIM (dB, 0-1) of the saved result and of the input against the clean
    reference, when the user gave one."""
    if job.reference is None:
        return {"psnr": None, "ssim": None, "input_psnr": None, "input_ssim": None}
    from ..io import quantize
    from ..metrics import psnr, ssim

    ref, _ = decode(job.reference.path, job.reference.name)
    depth = 8 if job.upload.format == "JPEG" else info.bit_depth
    saved = quantize(y, depth)  # what the downloaded file holds

    def pair(a: torch.Tensor) -> tuple[float | None, float | None]:
        if a.shape != ref.shape:
            return None, None
        p = float(psnr(a, ref)[0])
        s = float(ssim(a, ref)[0]) if min(a.shape[-2:]) >= 11 else None
        return (round(p, 3) if p != float("inf") else None), (None if s is None else round(s, 4))

    out_p, out_s = pair(saved)
    in_p, in_s = pair(x)
    return {"psnr": out_p, "ssim": out_s, "input_psnr": in_p, "input_ssim": in_s}
