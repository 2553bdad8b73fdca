"""Twenty clients at once on a real ``denoise serve`` (benchmarks/web_load.py, small
images): every upload and job completes, and every client gets the restoration of its
own image under its own name (nothing lost or mixed up). No timing is asserted."""
from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    yield from load_benchmark("web_load")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the server's memory in /proc")
def test_twenty_concurrent_clients_all_complete_and_none_is_mixed_up(bench):
    pytest.importorskip("uvicorn")
    with bench.server() as (base, pid):
        report = bench.load(base, pid, clients=20, model="dct", size=(72, 96), poll=0.05)
    assert report["errors"] == [] and report["completed"] == 20
    assert report["peak_rss_mb"] >= report["idle_rss_mb"] > 0
