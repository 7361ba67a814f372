"""A model server on loopback for the install tests: http.server in a thread, serving registered files with the
behaviours the tests need (a connection dropped mid-body, Range honoured or not, redirects with Hugging Face's
headers, no Content-Length, a gate that holds the body half-way), and recording every request it gets."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


@dataclass
class Route:
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop_after: list[int] = field(default_factory=list)  # per request, in order: bytes sent before the socket closes
    ranges: bool = True  # honour Range requests (206), else answer 200 with the whole body
    length: bool = True  # send Content-Length (else the body ends when the connection closes)
    redirect: str | None = None  # 302 to this path, with `headers`
    gate: threading.Event | None = None  # when set: half the body, then wait for the event
    status: int = 200


@dataclass
class Seen:
    path: str
    range: str | None


class ModelServer:
    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.seen: list[Seen] = []
        self.sent = 0  # body bytes sent over all requests
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.seen.append(Seen(self.path, self.headers.get("Range")))
                route = server.routes.get(self.path.split("?")[0])
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if route.redirect:
                    self.send_response(302)
                    self.send_header("Location", route.redirect)
                    for k, v in route.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body, start = route.body, 0
                rng = self.headers.get("Range")
                if rng and route.ranges and rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[6:-1])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(route.status)
                for k, v in route.headers.items():
                    self.send_header(k, v)
                part = body[start:]
                if route.length:
                    self.send_header("Content-Length", str(len(part)))
                else:
                    self.close_connection = True
                    self.send_header("Connection", "close")
                self.end_headers()
                limit = route.drop_after.pop(0) if route.drop_after else None
                if limit is not None:
                    part = part[:limit]
                if route.gate is not None:
                    half = len(part) // 2
                    self._send(part[:half])
                    route.gate.wait(30)
                    part = part[half:]
                self._send(part)
                if limit is not None:
                    self.close_connection = True  # drop: the client sees fewer bytes than announced

            def _send(self, data: bytes) -> None:
                for i in range(0, len(data), 256 << 10):
                    self.wfile.write(data[i : i + (256 << 10)])
                    self.wfile.flush()
                    server.sent += len(data[i : i + (256 << 10)])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def add(self, path: str, **kw) -> str:
        self.routes[path] = Route(**kw)
        return self.url(path)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def models_server():
    server = ModelServer()
    yield server
    server.close()


@pytest.fixture
def dl_app(make_app):
    return make_app("--nowebui", "--allow-private-downloads")


@pytest.fixture
def dl_client(dl_app):
    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    with TestClient(build_fastapi(dl_app)) as c:
        yield c


def wait_job(client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        view = client.get(f"/easel/v1/jobs/{job_id}").json()
        if view["status"] not in ("queued", "running"):
            return view
        time.sleep(0.05)
    raise AssertionError(f"install job {job_id} did not finish")


def install(client, **body) -> dict:
    """POST /easel/v1/models/install and wait: the finished job's view (asserts it was accepted)."""
    r = client.post("/easel/v1/models/install", json=body)
    assert r.status_code == 202, r.text
    return wait_job(client, r.json()["id"])


def files_in(folder: Path) -> set[str]:
    """Every file under `folder`, hidden ones included (a .part left behind counts)."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()
