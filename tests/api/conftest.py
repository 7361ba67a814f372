"""One shared API server for the read-mostly API tests (starting an Application per test would blow the time
budget), plus small helpers. Tests that need their own flags use the `live_server`/`make_app` fixtures."""

from __future__ import annotations

import base64
import contextlib
import io
import shutil
import threading
import time

import pytest
import requests

from tests.conftest import LiveServer, app_flags

ALLOWED_ORIGIN = "http://allowed.example"
SHARED_FLAGS = ("--api", "--nowebui", "--cors-allow-origins", ALLOWED_ORIGIN, "--max-body-size", "1")


def start_shared_server(tmp_path_factory, tiny_models, name: str, *flags: str) -> LiveServer:
    """An Application on its own data dir (copies of the tiny models) served on a free loopback port."""
    from webui.app import Application
    from webui.flags import parse_args

    data_dir = tmp_path_factory.mktemp(name)
    shutil.copytree(tiny_models, data_dir / "models")
    application = Application(parse_args(app_flags(data_dir, *flags)))
    application.catalog.demo_dir = None
    application.start(wait_for_model=True)
    return LiveServer(application).__enter__()


def stop_shared_server(server: LiveServer) -> None:
    server.__exit__(None, None, None)
    server.app.stop()


@pytest.fixture(scope="session")
def api_server(tmp_path_factory, tiny_models):
    """A live `--api --nowebui` server on its own data dir, shared by every test that asks for it. Tests must leave
    it idle and restore any option they change."""
    server = start_shared_server(tmp_path_factory, tiny_models, "api-shared", *SHARED_FLAGS)
    # warm the pipeline once, so per-test timings measure the queue and not torch's first-call setup
    r = requests.post(f"{server.url}/sdapi/v1/txt2img", json={"prompt": "warm", "steps": 1, "seed": 1}, timeout=120)
    assert r.status_code == 200, r.text
    yield server
    stop_shared_server(server)


def png_base64(size=(16, 16), color=(200, 30, 30), text: str | None = None) -> str:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    if text:
        info.add_text("parameters", text)
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG", pnginfo=info)
    return base64.b64encode(buf.getvalue()).decode()


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def wait_idle(application, timeout: float = 60.0) -> None:
    wait_until(lambda: application.jobs.current is None and not application.jobs.queued(), timeout)


@contextlib.contextmanager
def interrupting_watchdog(server: LiveServer):
    """For fuzzing: every generation job is interrupted as soon as it starts and every queued one cancelled, so
    fuzzed sizes and step counts exercise the API layer and the queue, not the CPU (model loads run)."""
    stop = threading.Event()

    def watch():
        jobs = server.app.jobs
        while not stop.wait(0.02):
            current = jobs.current
            if current is not None and current.kind not in (
                "load-checkpoint",
                "unload-checkpoint",
                "reload-checkpoint",
            ):
                jobs.interrupt()
            for job in jobs.queued():
                if job.record:
                    try:
                        jobs.cancel(job.id)
                    except Exception:  # it may have started meanwhile
                        pass

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
