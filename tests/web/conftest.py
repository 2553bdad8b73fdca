"""Fixtures of the web tests: an app with its test client, test images as file bytes, and
a real ``denoise serve`` process on a free loopback port."""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch


def image_bytes(array: np.ndarray, suffix: str = ".png", bit_depth: int | None = None) -> bytes:
    """An image file's bytes written by the package's own writer (``denoise.io``):
    ``array`` (H, W[, C]) in [0, 1], C = 1, 3 or 4 (the last one alpha)."""
    import tempfile

    from denoise.io import ImageInfo, write_image

    x = torch.from_numpy(np.asarray(array, dtype=np.float32))
    x = x.unsqueeze(-1) if x.dim() == 2 else x
    x = x.permute(2, 0, 1).unsqueeze(0)
    alpha = x[:, 3:] if x.shape[1] == 4 else None
    x = x[:, :3] if x.shape[1] == 4 else x
    info = ImageInfo(bit_depth=bit_depth or 8, mode="L" if x.shape[1] == 1 else "RGB", alpha=alpha)
    with tempfile.TemporaryDirectory() as folder:
        path = write_image(Path(folder) / f"image{suffix}", x, info, bit_depth=bit_depth)
        return path.read_bytes()


def smooth(height: int = 48, width: int = 64, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth test picture (H, W, C) in [0, 1] (C = 1: (H, W))."""
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    phase = seed * 0.7
    planes = [0.5 + 0.35 * np.sin(4 * xx + 3 * yy + phase + k) for k in range(channels)]
    out = np.stack(planes, axis=-1)
    return out[..., 0] if channels == 1 else out


def noisy(clean: np.ndarray, sigma: float = 25 / 255, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 1)


@pytest.fixture
def make_client(tmp_path):
    """``make_client(**settings)``: a started test client on a new app (closed after)."""
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Starlette 1.x prefers httpx2; httpx works
        from starlette.testclient import TestClient
    from denoise.web import Settings, create_app

    opened = []

    def make(base_url: str = "http://127.0.0.1", **options):
        options.setdefault("workdir_parent", str(tmp_path))
        app = create_app(Settings(**options))
        client = TestClient(app, base_url=base_url).__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        try:
            client.__exit__(None, None, None)
        except Exception:  # noqa: BLE001 - a test closed it already
            pass


@pytest.fixture
def client(make_client):
    return make_client()


def wait_job(client, job_id: str, timeout: float = 120.0, until=("done", "failed", "cancelled")) -> dict:
    """Poll a job until it reaches one of the states ``until``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in until:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s")


def upload(client, data: bytes, name: str = "photo.png") -> dict:
    response = client.post(f"/api/uploads?name={name}", content=data)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def server(tmp_path):
    """A real ``denoise serve`` process on a free port: yields (base URL, process). Its
    output goes to a file (a pipe nobody reads could fill up and block it)."""
    pytest.importorskip("uvicorn")
    from denoise.web.launch import serve_process

    with serve_process(env={"OMP_NUM_THREADS": "1"}, log=tmp_path / "server.log") as proc:
        yield proc.url, proc


def load_benchmark(name: str):
    """Import ``benchmarks/NAME.py`` as a module (the load and screenshot scripts double as
    test helpers); yields it and forgets it afterwards."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)
