"""Load on ``denoise serve``: many clients at once, each with its own 2-megapixel image.

Starts a real server on a free loopback port, then N clients (default 20) at the same
moment each upload a different 2-megapixel RGB PNG (scikit-image's astronaut photo
mirrored to 1640x1220, shifted by a different amount per client, with its own seeded
Gaussian noise, sigma 25), ask for a model run, poll until done and download the result.
Every result is checked: it must be the restoration of that client's own image (its PSNR
against that client's clean image beats the noisy input's), with the client's file name.
Reports that all completed, the server's peak memory (VmHWM: the peak resident set size
the kernel recorded for the server process) and the time from the first upload to the
last result:

    python benchmarks/web_load.py                      # 20 clients, wavelet
    python benchmarks/web_load.py --model dct          # slower: about 20 x 15-30 s here

The server runs one model at a time, so the time to the last result is mostly the sum of
the runs; the other jobs wait in its queue.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from denoise.web.launch import serve_process

SIZE = (1220, 1640)  # rows, columns: 2.0 megapixels


@contextlib.contextmanager
def server(*options: str):
    """A ``denoise serve`` process; yields ``(url, pid)``."""
    with serve_process(*options) as proc:
        yield proc.url, proc.pid
        if proc.poll() is not None:
            raise RuntimeError(f"the server died: {''.join(proc.log)[-2000:]}")


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in kB (Linux)."""
    out = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def images(count: int, size: tuple[int, int] = SIZE, sigma: float = 25.0):
    """``count`` different (clean, noisy PNG bytes) pairs of ``size`` (rows, columns)."""
    from PIL import Image
    from skimage import data

    photo = data.astronaut().astype(np.float32) / 255
    reach = 97 * count
    big = np.pad(photo, ((0, size[0] + reach - 512), (0, size[1] + reach - 512), (0, 0)), mode="symmetric")
    for i in range(count):
        shift = 97 * i
        clean = np.round(big[shift:shift + size[0], shift:shift + size[1]] * 255) / 255
        rng = np.random.default_rng(1000 + i)
        noisy = np.clip(clean + rng.normal(0, sigma / 255, clean.shape).astype(np.float32), 0, 1)
        buffer = io.BytesIO()
        Image.fromarray(np.round(noisy * 255).astype(np.uint8)).save(buffer, format="PNG", compress_level=1)
        yield clean, buffer.getvalue()


def request(url: str, data: bytes | None = None, method: str = "GET", headers=None, timeout=600):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            return answer.status, answer.read(), dict(answer.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


@dataclass
class Client:
    """What one client did and saw."""

    index: int
    clean: np.ndarray
    noisy: bytes
    uploaded: float = 0.0
    finished: float = 0.0
    max_place: int = 0
    result: bytes = b""
    filename: str = ""
    errors: list[str] = field(default_factory=list)


def run_client(base: str, client: Client, model: str, start: threading.Event, poll: float) -> Client:
    start.wait()
    t0 = time.perf_counter()
    name = f"client-{client.index:02d}.png"
    status, body, _ = request(f"{base}/api/uploads?name={name}", client.noisy, "POST",
                              {"Content-Type": "application/octet-stream"})
    if status != 201:
        client.errors.append(f"upload {status}: {body[:200]!r}")
        return client
    upload = json.loads(body)["id"]
    client.uploaded = time.perf_counter() - t0
    job = {"upload": upload, "model": model, "sigma": 25}
    status, body, _ = request(f"{base}/api/jobs", json.dumps(job).encode(), "POST",
                              {"Content-Type": "application/json"})
    if status != 202:
        client.errors.append(f"job {status}: {body[:200]!r}")
        return client
    job_id = json.loads(body)["id"]
    while True:
        status, body, _ = request(f"{base}/api/jobs/{job_id}")
        state = json.loads(body)
        if status != 200 or state["state"] in ("failed", "cancelled"):
            client.errors.append(f"poll {status}: {state.get('error') or state.get('state')}")
            return client
        client.max_place = max(client.max_place, state["position"] or 0)
        if state["state"] == "done":
            break
        time.sleep(poll)
    status, body, headers = request(f"{base}{state['result']['download']}")
    if status != 200:
        client.errors.append(f"download {status}")
        return client
    client.result, client.filename = body, state["result"]["filename"]
    client.finished = time.perf_counter() - t0
    return client


def check(client: Client) -> None:
    """The result must restore this client's own image, under its own name."""
    from PIL import Image

    if client.errors:
        return
    result = np.asarray(Image.open(io.BytesIO(client.result)), dtype=np.float32) / 255
    noisy = np.asarray(Image.open(io.BytesIO(client.noisy)), dtype=np.float32) / 255
    if result.shape != client.clean.shape:
        client.errors.append(f"result shape {result.shape}, expected {client.clean.shape}")
        return

    def db(a):
        return 10 * np.log10(1 / np.mean((a - client.clean) ** 2))

    if not db(result) > db(noisy) + 2:
        client.errors.append(f"result is not this client's image ({db(result):.2f} dB vs noisy {db(noisy):.2f})")
    if not client.filename.startswith(f"client-{client.index:02d}-"):
        client.errors.append(f"result named {client.filename!r}")


def load(base: str, pid: int, clients: int, model: str, size=SIZE, poll: float = 0.5) -> dict:
    """Run the load; the figures and every client's errors."""
    request(f"{base}/api/models")  # the catalog is built once, before the clock starts
    idle = memory_kb(pid)
    everyone = [Client(i, clean, noisy) for i, (clean, noisy) in enumerate(images(clients, size))]
    start = threading.Event()
    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(run_client, base, c, model, start, poll) for c in everyone]
        time.sleep(0.2)
        t0 = time.perf_counter()
        start.set()
        done = [f.result() for f in futures]
    wall = time.perf_counter() - t0
    for c in done:
        check(c)
    mem = memory_kb(pid)
    return {"clients": clients, "completed": sum(not c.errors for c in done), "model": model,
            "megapixels": size[0] * size[1] / 1e6, "wall_s": wall,
            "last_upload_s": max(c.uploaded for c in done),
            "first_result_s": min((c.finished for c in done if not c.errors), default=float("nan")),
            "last_result_s": max((c.finished for c in done if not c.errors), default=float("nan")),
            "max_place": max(c.max_place for c in done),
            "idle_rss_mb": idle["VmRSS"] / 1024, "peak_rss_mb": mem["VmHWM"] / 1024,
            "errors": [f"client {c.index}: {e}" for c in done for e in c.errors]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--model", default="wavelet")
    args = parser.parse_args(argv)
    with server() as (base, pid):
        r = load(base, pid, args.clients, args.model)
    print(f"| clients | image | model | completed | last upload | first result | last result "
          f"| max queue place | server RSS idle | server peak RSS |\n|---|---|---|---|---|---|---|---|---|---|\n"
          f"| {r['clients']} | {r['megapixels']:.2f} MP RGB PNG | {r['model']} | "
          f"{r['completed']} / {r['clients']} | {r['last_upload_s']:.1f} s | {r['first_result_s']:.1f} s | "
          f"{r['last_result_s']:.1f} s | {r['max_place']} | {r['idle_rss_mb']:.0f} MB | {r['peak_rss_mb']:.0f} MB |")
    for line in r["errors"]:
        print(line)
    return 0 if r["completed"] == r["clients"] else 1


if __name__ == "__main__":
    sys.exit(main())
