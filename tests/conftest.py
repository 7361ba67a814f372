"""Shared fixtures: tiny SD 1.x checkpoints written once per session in A1111 single-file layout, Applications on
temp data dirs, and a real server on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DISABLE_TELEMETRY", "1")

import torch  # noqa: E402

from tests.factories import write_tiny_checkpoint  # noqa: E402

# Tiny models gain nothing from a second thread, and on a 2-core machine spinning OpenMP threads from several
# processes (a test run beside a training run) slow everything down many times over.
torch.set_num_threads(int(os.environ.get("EASEL_TEST_THREADS", "1")))


def pytest_collection_modifyitems(config, items) -> None:
    """Under pytest-xdist (tools/run_tests.py runs `-n 2 --dist loadgroup`) a test module runs whole on one worker,
    so its module fixtures (a live server, a Chromium) are built once."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """A models/ tree: Stable-diffusion/tiny-a.safetensors and Stable-diffusion/sub/tiny-b.safetensors."""
    root = tmp_path_factory.mktemp("models-src")
    ckpt = root / "Stable-diffusion"
    (ckpt / "sub").mkdir(parents=True)
    write_tiny_checkpoint(ckpt / "tiny-a.safetensors", seed=0)
    write_tiny_checkpoint(ckpt / "sub" / "tiny-b.safetensors", seed=1)
    (root / "VAE").mkdir()
    (root / "Lora").mkdir()
    return root


@pytest.fixture
def data_dir(tmp_path, tiny_models) -> Path:
    """A fresh data dir whose models/ holds copies of the tiny checkpoints."""
    shutil.copytree(tiny_models, tmp_path / "models")
    return tmp_path


def app_flags(data_dir: Path, *extra: str) -> list[str]:
    return ["--data-dir", str(data_dir), *extra]


@pytest.fixture
def make_app(data_dir):
    """Factory: make_app(*flags, start=True) → a started Application on `data_dir` (stopped at teardown)."""
    from webui.app import Application
    from webui.flags import parse_args

    made = []

    def factory(*flags: str, start: bool = True, demo: bool = False):
        ns = parse_args(app_flags(data_dir, *flags))
        app = Application(ns)
        if not demo:  # keep tests on the tiny models unless they ask for the bundled demo
            app.catalog.demo_dir = None
        if start:
            app.start(wait_for_model=True)
        made.append(app)
        return app

    yield factory
    for app in made:
        app.stop()


@pytest.fixture
def app(make_app):
    return make_app("--nowebui")


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    with TestClient(build_fastapi(app)) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving an Application's server in a thread, on 127.0.0.1:<free port>."""

    def __init__(self, application):
        import uvicorn

        from webui.app import create_server

        self.app = application
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_server(application), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def live_server(make_app):
    """Factory: live_server(*flags) → a running LiveServer (UI + API unless --nowebui)."""
    servers = []

    def factory(*flags: str):
        srv = LiveServer(make_app(*flags)).__enter__()
        servers.append(srv)
        return srv

    yield factory
    for s in servers:
        s.__exit__(None, None, None)


@pytest.fixture(scope="session")
def tiny_inpaint_file(tmp_path_factory) -> Path:
    """A tiny 9-channel inpainting checkpoint (SD 1.x inpainting layout)."""
    from tests.factories import TINY_EASEL_CONFIG, tiny_components
    from webui.models.ldm_keys import save_a1111_checkpoint

    unet, vae, te = tiny_components(seed=5, in_channels=9)
    return save_a1111_checkpoint(
        tmp_path_factory.mktemp("inpaint") / "tiny-inpainting.safetensors",
        unet,
        vae,
        te,
        easel_config=TINY_EASEL_CONFIG,
    )
