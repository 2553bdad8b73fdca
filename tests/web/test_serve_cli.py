"""``denoise serve``: its options, its one-line errors, the warning off loopback, and a
real server process answering on a free port."""
from __future__ import annotations

import builtins
import json
import socket
import urllib.request

import pytest

from denoise.cli import main


def test_help_lists_the_command(capsys):
    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--host" in out and "--port" in out and "--open" in out and "authentication" in out


def test_without_the_web_extra_it_says_what_to_install(monkeypatch, capsys):
    real_import = builtins.__import__

    def no_uvicorn(name, *args, **kw):
        if name == "uvicorn":
            raise ImportError("No module named 'uvicorn'", name="uvicorn")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_uvicorn)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'denoise[web]'" in err and "uvicorn" in err


def test_a_busy_port_is_a_one_line_error(capsys):
    pytest.importorskip("uvicorn")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"127.0.0.1:{port}" in err and "in use" in err


@pytest.mark.parametrize("host,warned", [("0.0.0.0", True), ("127.0.0.1", False), ("localhost", False)])
def test_binding_off_loopback_warns_that_there_is_no_authentication(monkeypatch, capsys, host, warned):
    uvicorn = pytest.importorskip("uvicorn")
    seen = {}

    def fake_run(self, sockets=None):
        seen["app"] = self.config.app

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    assert main(["serve", "--host", host, "--port", "0"]) == 0
    err = capsys.readouterr().err
    assert ("no authentication" in err) == warned and "serving on http://" in err
    allowed = seen["app"].state.settings.allowed_hosts
    assert (allowed is None) == warned
    assert not seen["app"].state.store.root.exists()  # closed when the server stops


def test_bad_options_are_refused(capsys):
    assert main(["serve", "--port", "70000"]) == 2
    assert main(["serve", "--max-upload-mb", "0"]) == 2
    assert main(["serve", "--device", "tpu", "--port", "0"]) == 2


def test_a_real_server_serves_the_page_and_the_api(server):
    url, _ = server
    with urllib.request.urlopen(url + "/", timeout=30) as page:
        assert page.status == 200 and b"denoise" in page.read()
    with urllib.request.urlopen(url + "/api/models", timeout=60) as answer:
        assert any(m["name"] == "dct" for m in json.load(answer)["models"])
