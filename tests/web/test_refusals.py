"""Every refusal of the web API: its status code, its one-line message, and the server
still serving afterwards."""
from __future__ import annotations

import json
import struct
import threading
import time
import zlib

import pytest

import denoise.inference as inference

from .conftest import image_bytes, noisy, smooth, upload, wait_job

pytest.importorskip("starlette")


def refused(response, status: int, *words: str) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["status"] == status and "\n" not in body["error"]
    for word in words:
        assert word.lower() in body["error"].lower(), body["error"]
    return body["error"]


def still_serving(client) -> None:
    assert client.get("/api/models").status_code == 200


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds almost no data (a
    decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))


def test_bad_uploads(make_client):
    client = make_client(max_upload_bytes=20_000, max_pixels=10_000)
    refused(client.post("/api/uploads?name=notes.png", content=b"just some text, not an image"),
            415, "notes.png", "not an image")
    gif = _gif()
    refused(client.post("/api/uploads?name=a.gif", content=gif), 415, "GIF", "PNG, JPEG or TIFF")
    whole = image_bytes(noisy(smooth(40, 40)))
    refused(client.post("/api/uploads?name=cut.png", content=whole[: len(whole) // 2]), 422,
            "cut.png", "truncated")
    refused(client.post("/api/uploads", content=b""), 400, "empty")
    refused(client.post("/api/uploads?name=big.png", content=b"\0" * 30_000), 413, "big.png", "MB")
    chunks = iter([b"\0" * 15_000, b"\0" * 15_000])  # no Content-Length: counted while streaming
    refused(client.post("/api/uploads?name=stream.png", content=chunks), 413, "upload limit")
    refused(client.post("/api/uploads?name=wide.png", content=image_bytes(smooth(80, 200))), 413,
            "wide.png", "200x80", "megapixels")
    for message in (client.post("/api/uploads?name=bomb.png", content=png_header_only(9000, 9000)),
                    client.post("/api/uploads?name=bomb.png", content=png_header_only(60000, 60000))):
        refused(message, 413, "bomb.png", "megapixels")
    assert list(client.app.state.store.root.iterdir()) == []  # nothing of them is kept
    still_serving(client)


def _gif() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("P", (8, 8)).save(buffer, format="GIF")
    return buffer.getvalue()


def test_no_server_path_in_messages(client):
    whole = image_bytes(noisy(smooth(40, 40)))
    text = refused(client.post("/api/uploads", content=whole[:300]), 422, "the upload")
    assert str(client.app.state.store.root) not in text and "/tmp" not in text


def test_bad_jobs(client):
    record = upload(client, image_bytes(noisy(smooth(32, 32))))
    gray = upload(client, image_bytes(noisy(smooth(32, 32, channels=1))), "gray.png")
    post = lambda **job: client.post("/api/jobs", json={"upload": record["id"], "model": "dct", **job})  # noqa: E731
    refused(post(model="no-such-model"), 422, "unknown model 'no-such-model'", "dct")
    refused(post(model="/etc/passwd"), 422, "unknown model")
    refused(post(model="../../weights/n2n-unet-color.safetensors"), 422, "unknown model")
    refused(post(model=None), 422, "choose a model")
    for sigma in (0, -5, 255.5, 1000, "25", True):
        refused(post(sigma=sigma), 422, "sigma", "(0, 255]")
    refused(client.post("/api/jobs", content=b'{"upload": "%s", "model": "dct", "sigma": NaN}' % record["id"].encode(),
                        headers={"content-type": "application/json"}), 422, "sigma")
    refused(post(strength=100), 422, "strength")
    refused(post(ensemble="yes"), 422, "ensemble")
    refused(client.post("/api/jobs", json={"upload": gray["id"], "model": "n2n-unet-color"}), 422,
            "does not take gray")
    refused(post(reference=gray["id"]), 422, "reference", "32x32")
    refused(post(upload="A" * 24), 404, "no such upload")
    refused(post(upload="../../etc/passwd"), 404, "no such upload")
    refused(client.post("/api/jobs", content=b"{not json", headers={"content-type": "application/json"}),
            400, "not valid JSON")
    refused(client.post("/api/jobs", json=[1, 2]), 400, "JSON object")
    refused(client.post("/api/jobs", content=b"upload=x", headers={"content-type": "text/plain"}), 415, "JSON")
    still_serving(client)


def test_bad_ids_and_routes(client):
    refused(client.get("/api/jobs/not-an-id"), 404, "not an id")
    refused(client.get("/api/jobs/" + "B" * 24), 404, "no such job")
    refused(client.post("/api/jobs/" + "B" * 24 + "/cancel"), 404, "no such job")
    refused(client.get("/api/uploads/..%2F..%2Fetc%2Fpasswd/preview"), 404)
    refused(client.get("/api/nothing"), 404, "no such page")
    refused(client.delete("/api/jobs"), 405, "not allowed")
    refused(client.get("/static/../app.py"), 404)
    still_serving(client)


def test_second_download_expired_result_and_cancel_of_a_finished_job(client):
    record = upload(client, image_bytes(noisy(smooth(32, 32))))
    job = client.post("/api/jobs", json={"upload": record["id"], "model": "dct"}).json()
    job = wait_job(client, job["id"])
    refused(client.post(f"/api/jobs/{job['id']}/cancel"), 409, "already finished", "nothing to cancel")
    assert client.get(f"/api/jobs/{job['id']}/download").status_code == 200
    refused(client.get(f"/api/jobs/{job['id']}/download"), 410, "already downloaded")
    refused(client.get(f"/api/jobs/{job['id']}/preview"), 410, "already downloaded")
    other = wait_job(client, client.post("/api/jobs", json={"upload": record["id"], "model": "dct"}).json()["id"])
    store = client.app.state.store
    assert store.sweep(now=time.monotonic() + 4000, every=0) == 3  # two jobs and the upload
    refused(client.get(f"/api/jobs/{other['id']}/download"), 410, "expired", "run it again")
    refused(client.get(f"/api/jobs/{other['id']}"), 410, "expired")
    refused(client.get(f"/api/uploads/{record['id']}/preview"), 410, "expired", "upload the image again")
    refused(client.post("/api/jobs", json={"upload": record["id"], "model": "dct"}), 410, "expired")
    assert list(store.root.iterdir()) == []
    still_serving(client)


def test_busy_queue_and_unfinished_download(make_client, monkeypatch):
    client = make_client(max_queued=2)
    gate = threading.Event()
    original = inference.restore

    def blocked(*args, **kw):
        gate.wait(30)
        return original(*args, **kw)

    monkeypatch.setattr(inference, "restore", blocked)
    record = upload(client, image_bytes(noisy(smooth(32, 32))))
    post = lambda: client.post("/api/jobs", json={"upload": record["id"], "model": "dct"})  # noqa: E731
    first = post().json()
    wait_job(client, first["id"], until=("running",))
    queued = [post().json() for _ in range(2)]
    refused(post(), 503, "busy", "2 jobs are waiting")
    refused(client.get(f"/api/jobs/{first['id']}/download"), 409, "still running")
    refused(client.get(f"/api/jobs/{queued[0]['id']}/download"), 409, "still waiting")
    refused(client.delete(f"/api/uploads/{record['id']}"), 409, "in use")
    gate.set()
    assert all(wait_job(client, j["id"])["state"] == "done" for j in [first, *queued])


def test_foreign_hosts_and_origins_are_refused(make_client):
    refused(make_client(base_url="http://attacker.example").get("/"), 421, "127.0.0.1")
    client = make_client()
    record = upload(client, image_bytes(smooth()))
    refused(client.post("/api/jobs", json={"upload": record["id"], "model": "dct"},
                        headers={"origin": "http://attacker.example"}), 403, "cross-origin")
    refused(client.post("/api/uploads", content=image_bytes(smooth()), headers={"origin": "null"}), 403)
    same = client.post("/api/jobs", json={"upload": record["id"], "model": "dct"},
                       headers={"origin": "http://127.0.0.1"})
    assert same.status_code == 202
    anywhere = make_client(base_url="http://my-machine.lan", allowed_hosts=None)  # --host 0.0.0.0
    assert anywhere.get("/").status_code == 200


def test_the_job_description_size_is_capped(client):
    body = json.dumps({"upload": "x", "model": "dct", "pad": "x" * 20000})
    refused(client.post("/api/jobs", content=body, headers={"content-type": "application/json"}), 413, "too long")
