"""Helpers for the extension tests: real git repositories made in the test, extension folders written on the fly,
and an API server with the extension routes mounted in the right order."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "example-extension"


def git(*args: str, cwd: Path) -> str:
    env_args = [
        "-c",
        "user.name=Test",
        "-c",
        "user.email=test@example.com",
        "-c",
        "init.defaultBranch=main",
        "-c",
        "commit.gpgsign=false",
    ]
    return subprocess.run(["git", *env_args, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def git_repo(src: Path, dest: Path) -> str:
    """Copy `src` to `dest`, make it a git repository with one commit on `main`; return its file:// URL."""
    shutil.copytree(src, dest)
    git("init", "-q", "-b", "main", cwd=dest)
    commit_all(dest, "first")
    return dest.as_uri()


def commit_all(repo: Path, message: str) -> str:
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


def write_extension(parent: Path, name: str, code: str, *, manifest: str = "", module: str = "main") -> Path:
    """parent/name/{extension.toml, scripts/<module>.py} with api = 1."""
    folder = parent / name
    (folder / "scripts").mkdir(parents=True)
    (folder / "extension.toml").write_text(f'name = "{name}"\nversion = "0.1.0"\napi = 1\n{manifest}')
    (folder / "scripts" / f"{module}.py").write_text(textwrap.dedent(code))
    return folder


def build_server(application):
    """The app's FastAPI server with the extension routers. Until the lead wires them into build_fastapi, build
    the same server here, in the intended order: extension routes first (before the sdapi lists they replace)."""
    from fastapi import FastAPI

    from webui.api.easel_jobs import build_easel_jobs_router
    from webui.api.errors import install_error_handlers
    from webui.api.extensions import build_extensions_router, mount_extension_routes
    from webui.api.sdapi import build_sdapi_router
    from webui.api.server import build_fastapi, install_security

    api = build_fastapi(application)
    if any(getattr(r, "path", "") == "/easel/v1/extensions/install" for r in api.routes):
        return api
    api = FastAPI()
    install_error_handlers(api)
    api.include_router(build_extensions_router(application))
    mount_extension_routes(api, application)
    api.include_router(build_sdapi_router(application))
    api.include_router(build_easel_jobs_router(application))
    install_security(api, application)
    return api


@pytest.fixture
def serve():
    """serve(app) → a TestClient on the app's API server (closed at teardown)."""
    from fastapi.testclient import TestClient

    clients = []

    def factory(application):
        client = TestClient(build_server(application)).__enter__()
        clients.append(client)
        return client

    yield factory
    for c in clients:
        c.__exit__(None, None, None)


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def txt2img(client, **body) -> tuple[list[Image.Image], dict]:
    """POST /sdapi/v1/txt2img (tiny, fast defaults); the decoded images and the parsed info."""
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "a red circle", "steps": 2, "seed": 7, **body})
    assert r.status_code == 200, r.text
    data = r.json()
    return [decode(b) for b in data["images"]], json.loads(data["info"])


def extension_item(client, name: str) -> dict:
    items = {e["name"]: e for e in client.get("/sdapi/v1/extensions").json()}
    assert name in items, sorted(items)
    return items[name]
