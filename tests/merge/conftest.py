"""Helpers for the merger's tests: the tiny checkpoints of tests/conftest.py (tiny-a, sub/tiny-b), more written on
demand into the app's checkpoint folder, and a way to wait for a merge job over HTTP."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

A, B = "tiny-a.safetensors", "sub/tiny-b.safetensors"


def read_all(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every tensor and the metadata of a .safetensors file, read by the library (the judge of the format)."""
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def wait_job(client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        view = client.get(f"/easel/v1/jobs/{job_id}").json()
        if view["status"] not in ("queued", "running"):
            return view
        time.sleep(0.05)
    raise AssertionError(f"merge job {job_id} did not finish")


def merge(client, **body) -> dict:
    """POST /easel/v1/merge and wait: the finished job's view (asserts it was accepted)."""
    r = client.post("/easel/v1/merge", json=body)
    assert r.status_code == 202, r.text
    return wait_job(client, r.json()["id"])


def merged(client, app, **body) -> tuple[dict[str, torch.Tensor], dict[str, str], dict]:
    view = merge(client, **body)
    assert view["status"] == "done", view
    tensors, meta = read_all(Path(view["result"]["path"]))
    return tensors, meta, view


def add_checkpoint(app, name: str, writer, **kw) -> Path:
    """Write a checkpoint into the app's checkpoint folder and list it."""
    path = writer(app.paths.ckpt_dir / name, **kw)
    app.models.refresh()
    return path


def header_json(path: Path) -> dict:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n))


@pytest.fixture
def ckpt(app):
    """The app's checkpoint folder and its two tiny checkpoints, as tensors."""
    folder = app.paths.ckpt_dir
    return folder, read_all(folder / A)[0], read_all(folder / B)[0]
