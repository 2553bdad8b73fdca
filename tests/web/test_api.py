"""The web app's HTTP API through Starlette's test client: upload, run, poll, download,
cancel; formats and depths kept; metrics; one run at a time; the private folder."""
from __future__ import annotations

import stat
import threading
import time

import numpy as np
import pytest
import torch

import denoise.inference as inference
from denoise.io import quantize, read_image, write_image
from denoise.metrics import psnr

from .conftest import image_bytes, noisy, smooth, upload, wait_job

pytest.importorskip("starlette")


def read_bytes(data: bytes, tmp_path, suffix: str):
    path = tmp_path / f"downloaded{suffix}"
    path.write_bytes(data)
    return read_image(path)


def run_job(client, upload_id: str, **job) -> dict:
    response = client.post("/api/jobs", json={"upload": upload_id, "model": "dct", "sigma": 25, **job})
    assert response.status_code == 202, response.text
    return wait_job(client, response.json()["id"])


def test_the_page_and_its_files_load_from_this_server_only(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    for asset in ("/static/app.js", "/static/viewer.js", "/static/style.css"):
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert "http://" not in response.text and "https://" not in response.text, asset
    assert "http://" not in page.text and "https://" not in page.text


def test_models_lists_the_registry_with_cards_and_tasks(client):
    catalog = client.get("/api/models").json()
    models = {m["name"]: m for m in catalog["models"]}
    assert models["dct"]["available"] and models["dct"]["uses_sigma"] and models["dct"]["task"] == "denoise"
    # the upscale task appears because a super-resolution model runs here (bicubic)
    assert [t["id"] for t in catalog["tasks"]] == ["denoise", "upscale"]
    assert models["bicubic"]["task"] == "upscale" and models["bicubic"]["scale"] == 2
    assert all(m["scale"] == 1 for m in catalog["models"] if m["task"] == "denoise")
    shipped = [m for m in catalog["models"] if m["available"] and m["kind"] == "learned"]
    assert shipped and all(m["card"] for m in shipped)  # the card summary of shipped weights
    assert catalog["limits"]["max_upload_bytes"] == 100 * 1024 * 1024


def test_upload_run_poll_download_equals_denoise_run(client, tmp_path):
    clean = smooth(48, 64)
    data = image_bytes(noisy(clean))
    record = upload(client, data, "holiday photo.png")
    assert record["width"] == 64 and record["height"] == 48 and record["channels"] == 3
    assert record["format"] == "PNG" and record["bit_depth"] == 8 and not record["alpha"]
    assert 15 < record["sigma_estimate"] < 35  # noise of 25 on the 0-255 scale
    preview = client.get(record["preview"])
    assert preview.status_code == 200 and preview.content[:8] == b"\x89PNG\r\n\x1a\n"
    job = run_job(client, record["id"])
    assert job["state"] == "done" and job["done"] == job["total"] == 1 and job["position"] is None
    result = job["result"]
    assert result["sigma"] == 25.0 and not result["sigma_estimated"] and result["filename"] == "holiday photo-dct.png"
    response = client.get(result["download"])
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;") and "holiday%20photo-dct.png" in disposition
    got, info = read_bytes(response.content, tmp_path, ".png")
    # what `denoise run --model dct --sigma 25` writes for the same file
    src = tmp_path / "in.png"
    src.write_bytes(data)
    x, src_info = read_image(src)
    expected = write_image(tmp_path / "expected.png", inference.restore(x, "dct", 25 / 255).output, src_info)
    assert torch.equal(got, read_image(expected)[0]) and info.bit_depth == 8


@pytest.mark.parametrize("suffix,depth,channels", [
    (".png", 16, 4), (".png", 8, 1), (".tif", 16, 3), (".tif", 16, 1), (".jpg", 8, 3), (".png", 8, 4)])
def test_the_result_keeps_format_depth_and_alpha(client, tmp_path, suffix, depth, channels):
    array = noisy(smooth(40, 44, channels=min(channels, 3)))
    if channels == 4:
        alpha = np.linspace(0, 1, 44)[None, :].repeat(40, 0)
        array = np.concatenate([array, alpha[..., None]], axis=-1)
    data = image_bytes(array, suffix, depth)
    record = upload(client, data, f"in{suffix}")
    assert record["bit_depth"] == depth and record["alpha"] == (channels == 4)
    job = run_job(client, record["id"], sigma=None)
    assert job["state"] == "done", job["error"]
    assert job["result"]["sigma_estimated"] and job["result"]["sigma"] > 0
    response = client.get(job["result"]["download"])
    assert response.status_code == 200
    got, info = read_bytes(response.content, tmp_path, suffix)
    assert info.format == {".png": "PNG", ".tif": "TIFF", ".jpg": "JPEG"}[suffix]
    assert info.bit_depth == depth and got.shape[1] == min(channels, 3)
    if channels == 4:
        src = tmp_path / f"src{suffix}"
        src.write_bytes(data)
        assert info.alpha is not None and torch.equal(info.alpha, read_image(src)[1].alpha)


def test_content_decides_the_format_not_the_name(client, tmp_path):
    record = upload(client, image_bytes(smooth()), "really-a-png.jpg")
    assert record["format"] == "PNG"
    job = run_job(client, record["id"])
    assert job["result"]["filename"] == "really-a-png-dct.png"


def test_metrics_against_a_clean_reference(client, tmp_path):
    clean = smooth(64, 64)
    noisy_id = upload(client, image_bytes(noisy(clean, seed=3)), "noisy.png")["id"]
    clean_id = upload(client, image_bytes(clean), "clean.png")["id"]
    result = run_job(client, noisy_id, reference=clean_id)["result"]
    assert result["psnr"] > result["input_psnr"] + 3 and 0 < result["input_ssim"] < result["ssim"] <= 1
    got, _ = read_bytes(client.get(result["download"]).content, tmp_path, ".png")
    ref = torch.from_numpy(clean.astype(np.float32)).permute(2, 0, 1)[None]
    assert result["psnr"] == pytest.approx(float(psnr(got, quantize(ref, 8))), abs=0.05)
    assert run_job(client, noisy_id)["result"]["psnr"] is None  # no reference, no metrics


def test_a_blind_model_reports_no_noise_level(client):
    catalog = {m["name"]: m for m in client.get("/api/models").json()["models"]}
    blind = next((n for n, m in catalog.items() if m["available"] and not m["uses_sigma"]
                  and m["channels"] in (None, 3)), None)
    if blind is None:
        pytest.skip("no blind model can run here")
    record = upload(client, image_bytes(noisy(smooth(32, 32))))
    result = run_job(client, record["id"], model=blind)["result"]
    assert result["sigma"] is None and result["model"] == blind


def test_ensemble_runs_the_eight_flips(client):
    record = upload(client, image_bytes(noisy(smooth(32, 32))))
    assert run_job(client, record["id"], ensemble=True)["result"]["model"] == "dct+x8"


def slow_restore(monkeypatch, delay: float = 0.02, log: list | None = None):
    """Make every tile of every run take ``delay`` seconds more (and log the overlap of runs)."""
    original = inference.restore
    running = [0]
    lock = threading.Lock()

    def restore(x, model, sigma=None, *, callback=None, **kw):
        with lock:
            running[0] += 1
            if log is not None:
                log.append(running[0])

        def hooked(done, total):
            time.sleep(delay)
            callback(done, total)

        try:
            return original(x, model, sigma, callback=hooked, **{**kw, "tile": 16})
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(inference, "restore", restore)


def test_one_run_at_a_time_in_order_with_the_place_shown(client, monkeypatch):
    overlap = []
    slow_restore(monkeypatch, 0.005, overlap)
    record = upload(client, image_bytes(noisy(smooth(40, 40))))
    jobs = [client.post("/api/jobs", json={"upload": record["id"], "model": "dct", "sigma": 20}).json()
            for _ in range(4)]
    assert [j["ahead"] for j in jobs] == [0, 1, 2, 3] and jobs[0]["position"] in (0, 1)
    assert [j["position"] - jobs[1]["position"] for j in jobs[1:]] == [0, 1, 2]
    seen_running = wait_job(client, jobs[1]["id"], until=("running", "done"))
    assert seen_running["state"] in ("running", "done")
    finished = [wait_job(client, j["id"]) for j in jobs]
    assert all(j["state"] == "done" for j in finished) and overlap and max(overlap) == 1
    assert client.get("/api/queue").json() == {"running": None, "waiting": 0}


def test_cancel_a_running_job_stops_it_after_the_current_tile(client, monkeypatch):
    slow_restore(monkeypatch, 0.05)
    record = upload(client, image_bytes(noisy(smooth(96, 96))))
    job = client.post("/api/jobs", json={"upload": record["id"], "model": "dct", "sigma": 20}).json()
    running = wait_job(client, job["id"], until=("running",))
    while running["done"] < 1:
        running = client.get(f"/api/jobs/{job['id']}").json()
    response = client.post(f"/api/jobs/{job['id']}/cancel")
    assert response.status_code == 200 and response.json()["state"] in ("cancelling", "cancelled")
    final = wait_job(client, job["id"])
    assert final["state"] == "cancelled" and final["done"] < final["total"] and final["result"] is None
    assert client.get(f"/api/jobs/{job['id']}/download").status_code == 409
    assert run_job(client, record["id"])["state"] == "done"  # the worker goes on


def test_cancel_a_queued_job(client, monkeypatch):
    slow_restore(monkeypatch, 0.05)
    record = upload(client, image_bytes(noisy(smooth(96, 96))))
    first, second = (client.post("/api/jobs", json={"upload": record["id"], "model": "dct"}).json()
                     for _ in range(2))
    response = client.post(f"/api/jobs/{second['id']}/cancel")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    client.post(f"/api/jobs/{first['id']}/cancel")
    assert wait_job(client, first["id"])["state"] == "cancelled"


def test_a_crashing_run_fails_the_job_and_the_server_goes_on(client, monkeypatch):
    original = inference.restore

    def broken(*args, **kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(inference, "restore", broken)
    record = upload(client, image_bytes(smooth()))
    job = run_job(client, record["id"])
    assert job["state"] == "failed" and "internal error" in job["error"]
    monkeypatch.setattr(inference, "restore", original)
    assert run_job(client, record["id"])["state"] == "done"


def test_files_live_in_a_private_folder_named_by_ids_and_go_away(make_client):
    client = make_client()
    store = client.app.state.store
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    record = upload(client, image_bytes(smooth()), "../../etc/passwd.png")
    assert record["name"] == "passwd.png"
    job = run_job(client, record["id"])
    names = sorted(p.name for p in store.root.iterdir())
    assert all(n.split(".")[0] in (record["id"], job["id"]) for n in names), names
    client.get(job["result"]["download"])
    assert not any(p.name.startswith(job["id"]) for p in store.root.iterdir())
    assert client.delete(f"/api/uploads/{record['id']}").status_code == 200
    assert client.get(f"/api/uploads/{record['id']}").status_code == 410
    assert list(store.root.iterdir()) == []
    root = store.root
    client.__exit__(None, None, None)  # shutting down deletes the folder
    assert not root.exists()


def test_the_upscale_task_appears_only_with_a_super_resolution_model():
    from denoise.web.catalog import Catalog

    catalog = Catalog()
    models = {name: m for name, m in catalog.models().items() if m["task"] == "denoise"}
    catalog._models = models
    assert "upscale" not in [t["id"] for t in catalog.public()["tasks"]]
    models["sr-x2"] = {**models["dct"], "name": "sr-x2", "scale": 2, "task": "upscale"}
    catalog._models = models
    assert [t["id"] for t in catalog.public()["tasks"]] == ["denoise", "upscale"]


def test_noise_map_models_are_offered_a_strength():
    from denoise.models.registry import get_entry
    from denoise.web.catalog import _noise_map

    assert _noise_map(get_entry("ffdnet-color")) and not _noise_map(get_entry("dct"))


def test_a_tiled_self_ensemble_counts_the_tiles_of_all_eight_passes(client, monkeypatch):
    record = upload(client, image_bytes(noisy(smooth(40, 40))))
    slow_restore(monkeypatch, 0.0)  # tiles of 16 pixels: 9 per pass
    seen = []
    original = inference.restore

    def spy(*args, callback=None, **kw):
        def hooked(done, total):
            callback(done, total)
            job = client.app.state.queue.current
            seen.append((job.done, job.total))
        return original(*args, callback=hooked, **kw)

    monkeypatch.setattr(inference, "restore", spy)
    job = run_job(client, record["id"], ensemble=True)
    assert job["state"] == "done" and job["done"] == job["total"] == seen[-1][1]
    assert [d for d, _ in seen] == list(range(1, len(seen) + 1)) and len(seen) == seen[0][1] > 8


def test_an_upscale_job_writes_a_larger_image_with_its_alpha(client):
    import io as _io

    from PIL import Image

    rgba = np.concatenate([smooth(24, 32), np.full((24, 32, 1), 0.5)], axis=-1)
    record = upload(client, image_bytes(rgba), "small.png")
    job = run_job(client, record["id"], model="bicubic", sigma=None)
    assert job["state"] == "done", job
    got = Image.open(_io.BytesIO(client.get(job["result"]["download"]).content))
    assert got.size == (64, 48) and got.mode == "RGBA"
