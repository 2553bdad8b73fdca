"""Start ``denoise serve`` in a child process on a free loopback port (for the load
benchmark, the screenshot script and the tests): one helper, so they start it alike."""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path


@contextlib.contextmanager
def serve_process(*options: str, env: dict | None = None, log: Path | None = None, timeout: float = 120):
    """Yield the running server process with ``.url`` (no trailing slash) and ``.log`` (a
    list of the lines it printed, or the ``log`` file it writes to). Its output is always
    read or written to a file, so a full pipe never blocks it; it is stopped on exit."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    command = [sys.executable, "-m", "denoise", "serve", "--port", "0", *options]
    reader = None
    if log is not None:
        with open(log, "w") as sink:
            proc = subprocess.Popen(command, stderr=sink, stdout=subprocess.DEVNULL, env=env,
                                    cwd=log.parent)
    else:
        proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                env=env)
    try:
        if log is not None:
            deadline = time.monotonic() + timeout
            while not (found := re.search(r"(http://127\.0\.0\.1:\d+)/", log.read_text())):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"denoise serve did not start: {log.read_text()}")
                time.sleep(0.1)
            proc.url, proc.log = found.group(1), log
        else:
            line = proc.stderr.readline()
            found = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            if not found:
                raise RuntimeError(f"denoise serve did not start: {line.strip()} {proc.stderr.read()}")
            proc.url, proc.log = found.group(1), []
            reader = threading.Thread(target=lambda: proc.log.extend(proc.stderr), daemon=True)
            reader.start()
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if reader is not None:
            reader.join(5)
