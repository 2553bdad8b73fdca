"""Uploads and results on the server: one private folder, random ids, expiry.

Every file the web app keeps lives in one folder made with mode 0700 in the system's
temporary folder; its files are named by ids the server draws
(``secrets.token_urlsafe``), never by anything the client sends. A client refers to an
upload or a job only by such an id, which is looked up in a dictionary: no request can
name a path on the server.

A result is deleted when it is downloaded; uploads and results are deleted
``expiry_seconds`` after their last use. An id that went away is remembered (up to
:data:`MAX_GONE` of them), so that asking for it again answers 410 Gone with the reason
rather than 404.
"""
from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from .config import ID_PATTERN, HTTPProblem, Settings

#: Ids of expired or deleted records remembered for a 410 answer.
MAX_GONE = 10_000


@dataclass
class Upload:
    """An image the client sent, checked and decoded once."""

    id: str
    path: Path  # the file as sent (its content checked), named by the id
    preview: Path  # an 8-bit PNG of its colour channels, for the page
    name: str  # the client's file name, cleaned; for display and the download's name only
    format: str  # "PNG", "JPEG" or "TIFF"
    width: int
    height: int
    channels: int  # 1 or 3 (alpha excluded)
    bit_depth: int
    alpha: bool
    sigma_estimate: float | None  # 0-255 scale
    size_bytes: int
    last_used: float = field(default_factory=time.monotonic)
    active_jobs: int = 0  # queued or running jobs reading it (it does not expire meanwhile)

    def public(self) -> dict:
        return {"id": self.id, "name": self.name, "format": self.format, "width": self.width,
                "height": self.height, "channels": self.channels, "bit_depth": self.bit_depth,
                "alpha": self.alpha, "sigma_estimate": self.sigma_estimate,
                "size_bytes": self.size_bytes, "preview": f"/api/uploads/{self.id}/preview"}

    def files(self) -> list[Path]:
        return [self.path, self.preview]


@dataclass
class Job:
    """One model run on one upload, from the queue to the download."""

    id: str
    upload: Upload
    model: str  # a name of the catalog, "+x8" added for the self-ensemble
    sigma: float | None  # 0-1 scale; None: estimated when the model uses it
    strength: float | None  # noise-map models: the map is the noise level times it
    reference: Upload | None
    state: str = "queued"  # queued, running, done, failed, cancelled
    done: int = 0  # tiles done
    total: int = 0  # tiles in all (0: not started)
    error: str | None = None
    result: dict | None = None
    result_path: Path | None = None
    preview_path: Path | None = None
    download_name: str = "result"
    downloaded: bool = False
    cancel_requested: bool = False
    created: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def finished_state(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    def files(self) -> list[Path]:
        return [p for p in (self.result_path, self.preview_path) if p is not None]


class Store:
    """The private folder and the records of one server process (thread-safe)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = Path(tempfile.mkdtemp(prefix="denoise-web-", dir=settings.workdir_parent))
        os.chmod(self.root, 0o700)
        self.lock = threading.RLock()
        self.uploads: dict[str, Upload] = {}
        self.jobs: dict[str, Job] = {}
        self._gone: OrderedDict[str, str] = OrderedDict()
        self._last_sweep = 0.0

    # ------------------------------------------------------------------ ids and files
    def new_id(self) -> str:
        """A fresh random id (24 URL-safe characters, 144 bits)."""
        while True:
            key = secrets.token_urlsafe(18)
            if ID_PATTERN.match(key) and key not in self.uploads and key not in self.jobs:
                return key

    def file(self, key: str, suffix: str) -> Path:
        """The path of a file of record ``key`` (an id drawn here, checked again)."""
        if not ID_PATTERN.match(key) or not suffix.replace(".", "").replace("-", "").isalnum():
            raise ValueError(f"not a server id: {key!r}")
        return self.root / f"{key}{suffix}"

    @staticmethod
    def delete_files(paths) -> None:
        for path in paths:
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    # ------------------------------------------------------------------ records
    def add_upload(self, upload: Upload) -> None:
        with self.lock:
            self.uploads[upload.id] = upload

    def add_job(self, job: Job) -> None:
        with self.lock:
            self.jobs[job.id] = job

    def upload(self, key, what: str = "upload") -> Upload:
        """The upload ``key``; 404 when unknown, 410 when it expired or was deleted."""
        with self.lock:
            found = self.uploads.get(key) if isinstance(key, str) else None
            if found is None:
                self._missing(key, what, "upload the image again")
            found.last_used = time.monotonic()
            return found

    def job(self, key) -> Job:
        """The job ``key``; 404 when unknown, 410 when it expired."""
        with self.lock:
            found = self.jobs.get(key) if isinstance(key, str) else None
            if found is None:
                self._missing(key, "job", "run it again")
            return found

    def _missing(self, key, what: str, advice: str):
        reason = self._gone.get(key) if isinstance(key, str) else None
        if reason is not None:
            raise HTTPProblem(410, f"the {what} {key} {reason}; {advice}")
        raise HTTPProblem(404, f"no such {what}: {str(key)[:40]!r} (ids come from this server; "
                               f"{advice})")

    def delete_upload(self, key: str) -> None:
        with self.lock:
            upload = self.upload(key)
            if upload.active_jobs:
                raise HTTPProblem(409, f"the upload {key} is in use by a queued or running job; "
                                       "cancel it first")
            del self.uploads[key]
            self._forget(key, "was deleted")
        self.delete_files(upload.files())

    def _forget(self, key: str, reason: str) -> None:
        self._gone[key] = reason
        while len(self._gone) > MAX_GONE:
            self._gone.popitem(last=False)

    # ------------------------------------------------------------------ expiry
    def sweep(self, now: float | None = None, *, every: float = 5.0) -> int:
        """Delete what expired (at most once every ``every`` seconds); how many records."""
        now = time.monotonic() if now is None else now
        limit = self.settings.expiry_seconds
        doomed: list[Path] = []
        with self.lock:
            if now - self._last_sweep < every:
                return 0
            self._last_sweep = now
            old_jobs = [j for j in self.jobs.values()
                        if j.finished_state and j.finished is not None and now - j.finished > limit]
            for job in old_jobs:
                del self.jobs[job.id]
                self._forget(job.id, "has expired" if not job.downloaded else
                             "has expired (its result was downloaded)")
                doomed += job.files()
            old_uploads = [u for u in self.uploads.values()
                           if not u.active_jobs and now - u.last_used > limit]
            for upload in old_uploads:
                del self.uploads[upload.id]
                self._forget(upload.id, "has expired")
                doomed += upload.files()
        self.delete_files(doomed)
        return len(old_jobs) + len(old_uploads)

    def close(self) -> None:
        """Delete the private folder and everything in it."""
        with self.lock:
            self.uploads.clear()
            self.jobs.clear()
        shutil.rmtree(self.root, ignore_errors=True)
