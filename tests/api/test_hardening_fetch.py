"""The extension index (`extensions_index_url`, GET /easel/v1/extensions/available) can't be used to reach internal
addresses or to probe ports and files (issue #16 item 6): public http(s) only, one answer for every failure, and
the option is read-only when the server is exposed."""

from __future__ import annotations

import http.server
import json
import threading

import pytest
import requests

INDEX = {"extensions": [{"name": "Frame", "url": "https://example.com/a/frame.git", "description": "frames"}]}


@pytest.fixture
def index_server():
    """A loopback HTTP server: /index.json (the index), /broken (not JSON), /error (HTTP 500), /hop (redirect)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path == "/hop":
                self.send_response(302)
                self.send_header("Location", "/index.json")
                self.end_headers()
                return
            status, body = {"/index.json": (200, json.dumps(INDEX).encode()), "/broken": (200, b"<html>no")}.get(
                self.path, (500, b"boom")
            )
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available(base: str, value: str, **kw) -> requests.Response:
    r = requests.post(f"{base}/sdapi/v1/options", json={"extensions_index_url": value}, timeout=10, **kw)
    assert r.status_code == 200, r.text
    return requests.get(f"{base}/easel/v1/extensions/available", timeout=30, **kw)


def test_internal_urls_and_local_files_all_get_one_answer(live_server, index_server, data_dir, tmp_path_factory):
    server = live_server("--api", "--nowebui")
    base = server.url
    outside = tmp_path_factory.mktemp("outside") / "index.json"
    outside.write_text(json.dumps(INDEX))  # a real index, but outside the data dir
    probes = [
        index_server + "/index.json",  # a loopback port that is open and serves a valid index
        f"http://127.0.0.1:{closed_port()}/index.json",  # a closed port
        f"{base}/sdapi/v1/samplers",  # Easel itself
        "http://localhost:22/",
        "http://[::1]:80/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/index.json",
        "http://0x7f000001:80/",
        "http://nonexistent-host.invalid/index.json",
        "file:///etc/passwd",
        "/etc/passwd",
        "/etc/no-such-file",
        "file:///etc/hostname",
        str(outside),
        f"../{outside.parent.name}/index.json",
        "ftp://example.com/index.json",
        "gopher://127.0.0.1:70/",
    ]
    answers = {}
    for probe in probes:
        r = available(base, probe)
        answers[probe] = (r.status_code, r.json().get("detail"))
    assert set(answers.values()) == {(502, answers[probes[0]][1])}, answers
    detail = answers[probes[0]][1]
    assert "can't be reached or read" in detail and "127.0.0.1" not in detail and "refused" not in detail.lower()


def test_http_errors_and_bad_json_look_the_same_as_refusals(make_app, index_server, monkeypatch):
    """With the address rule relaxed for this test's loopback server (as if it were public), an HTTP 500, a page
    that isn't JSON and a closed port answer exactly like an internal address; a good index and a redirect work."""
    from fastapi.testclient import TestClient

    from webui import security
    from webui.api.server import build_fastapi

    app = make_app("--api", "--nowebui", start=False)
    monkeypatch.setattr(security, "is_public_address", lambda a: a == "127.0.0.1")
    with TestClient(build_fastapi(app), base_url="http://127.0.0.1") as client:

        def get(url):
            app.options.set({"extensions_index_url": url})
            return client.get("/easel/v1/extensions/available")

        ok = get(index_server + "/hop")
        assert ok.status_code == 200 and [e["name"] for e in ok.json()["extensions"]] == ["Frame"]
        bad = [get(index_server + p) for p in ("/error", "/broken")] + [
            get(f"http://[::1]:{closed_port()}/"),
            get(f"http://127.0.0.1:{closed_port()}/"),
        ]
        assert {(r.status_code, r.json()["detail"]) for r in bad} == {(502, bad[0].json()["detail"])}


def test_a_json_file_in_the_data_dir_works_on_loopback_only(make_app, live_server, data_dir):
    (data_dir / "index.json").write_text(json.dumps(INDEX))
    loopback = live_server("--api", "--nowebui")
    r = available(loopback.url, str(data_dir / "index.json"))
    assert r.status_code == 200 and r.json()["extensions"][0]["name"] == "Frame"
    assert available(loopback.url, "index.json").status_code == 200  # relative to the data dir

    exposed = live_server("--listen", "--api", "--api-auth", "u:p", "--gradio-auth", "u:p", "--nowebui")
    assert exposed.app.options.get("extensions_index_url") == "index.json"  # left in config.json (same data dir)
    r = requests.get(f"{exposed.url}/easel/v1/extensions/available", auth=("u", "p"), timeout=30)
    assert r.status_code == 502 and "can't be reached or read" in r.json()["detail"]


def test_the_option_is_read_only_when_exposed(live_server):
    from webui.errors import Forbidden
    from webui.extensions.manager import manager_for

    server = live_server("--listen", "--api", "--api-auth", "u:p", "--gradio-auth", "u:p", "--nowebui")
    for value in ("http://127.0.0.1:1/", "https://example.com/index.json", "/etc/passwd"):
        r = requests.post(
            f"{server.url}/sdapi/v1/options", json={"extensions_index_url": value}, auth=("u", "p"), timeout=10
        )
        assert r.status_code == 403 and "read-only" in r.json()["detail"], r.text
        r = requests.post(
            f"{server.url}/sdapi/v1/txt2img",
            auth=("u", "p"),
            timeout=30,
            json={
                "prompt": "x",
                "steps": 1,
                "override_settings": {"extensions_index_url": value},
                "override_settings_restore_afterwards": False,
            },
        )
        assert r.status_code == 403, r.text
    assert server.app.options.get("extensions_index_url") == ""
    with pytest.raises(Forbidden):  # the Extensions tab's box can't name another index either
        manager_for(server.app).available("http://127.0.0.1:1/")

    unlocked = live_server(
        "--listen",
        "--api",
        "--api-auth",
        "u:p",
        "--gradio-auth",
        "u:p",
        "--nowebui",
        "--enable-insecure-extension-access",
    )
    r = requests.post(
        f"{unlocked.url}/sdapi/v1/options",
        json={"extensions_index_url": "http://127.0.0.1:1/"},
        auth=("u", "p"),
        timeout=10,
    )
    assert r.status_code == 200  # the admin allowed extension management; the fetch guard still applies
    r = requests.get(f"{unlocked.url}/easel/v1/extensions/available", auth=("u", "p"), timeout=30)
    assert r.status_code == 502
