"""POST /easel/v1/train/lora and its status route; the existing /sdapi/v1/loras route over the LoRA service."""

from __future__ import annotations

import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.lora.factory import write_kohya


@pytest.fixture
def train_client(app):
    from webui.api.errors import install_error_handlers
    from webui.api.training import build_training_router

    api = FastAPI()
    install_error_handlers(api)
    api.include_router(build_training_router(app))
    with TestClient(api) as c:
        yield c


def test_train_over_http(app, train_client, dataset):
    body = {
        "name": "web",
        "dataset_dir": str(dataset),
        "steps": 6,
        "batch_size": 2,
        "learning_rate": 1e-3,
        "rank": 2,
        "alpha": 1,
        "resolution": 64,
        "seed": 3,
        "caption": "",
        "train_text_encoder": False,
        "save_every": 0,
        "sample_every": 0,
        "sample_prompt": "",
    }
    r = train_client.post("/easel/v1/train/lora", json=body)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    deadline = time.time() + 120
    while True:
        view = train_client.get(f"/easel/v1/train/lora/{job_id}").json()
        if view["status"] in ("done", "failed") or time.time() > deadline:
            break
        time.sleep(0.05)
    assert view["status"] == "done", view
    assert view["step"] == view["total_steps"] == 6 and len(view["losses"]) == 6 and view["loss"] == view["losses"][-1]
    assert view["result"] == {"name": "web", "path": str(app.paths.lora_dir / "web.safetensors")}


def test_bad_requests_are_4xx_and_write_nothing(app, train_client, dataset):
    ok = {"name": "x", "dataset_dir": str(dataset)}
    for body, field in [
        ({**ok, "rank": 0}, "rank"),
        ({**ok, "name": "../x"}, "name"),
        ({**ok, "lr": 1}, "lr"),
        ({"dataset_dir": str(dataset)}, "name"),
        ({**ok, "dataset_dir": "/nope"}, "not found"),
        ({**ok, "checkpoint": "missing"}, "missing"),
    ]:
        r = train_client.post("/easel/v1/train/lora", json=body)
        assert 400 <= r.status_code < 500 and field in r.text, (body, r.text)
        assert set(r.json()) == {"error", "detail", "body", "errors"}
    assert list(app.paths.lora_dir.iterdir()) == [] and app.jobs.queued() == []
    assert train_client.get("/easel/v1/train/lora/nope").status_code == 404


def test_sdapi_loras_lists_the_service(app, client):
    from webui.lora.catalog import LoraCatalog
    from webui.lora.service import LoraService

    app.loras = LoraService(LoraCatalog([app.paths.lora_dir, app.paths.lycoris_dir], app.hashes))
    path = write_kohya(app.paths.lora_dir / "one.safetensors", seed=1, metadata={"ss_output_name": "One"})
    assert client.get("/sdapi/v1/loras").json() == []  # not scanned yet
    assert client.post("/sdapi/v1/refresh-loras").status_code == 200
    items = client.get("/sdapi/v1/loras").json()
    assert [(i["name"], i["alias"], i["path"]) for i in items] == [("one", "One", str(path))]
    assert items[0]["metadata"]["ss_output_name"] == "One"


def test_generic_jobs_route_carries_training_fields(app, client, dataset):
    body = {
        "name": "viajobs",
        "dataset_dir": str(dataset),
        "steps": 4,
        "batch_size": 2,
        "rank": 2,
        "alpha": 1,
        "resolution": 64,
        "seed": 1,
        "save_every": 0,
        "sample_every": 0,
    }
    job_id = client.post("/easel/v1/train/lora", json=body).json()["job_id"]
    deadline = time.time() + 120
    while (view := client.get(f"/easel/v1/jobs/{job_id}").json())["status"] not in ("done", "failed"):
        assert time.time() < deadline
        time.sleep(0.05)
    assert view["status"] == "done" and view["kind"] == "train-lora"
    assert view["step"] == view["total_steps"] == 4 and len(view["losses"]) == 4
    assert view["loss"] == view["losses"][-1]
    assert view["result"]["name"] == "viajobs" and view["result"]["path"].endswith("viajobs.safetensors")
    # after the job leaves memory, history still answers the same
    row = app.history.get(job_id)
    assert row["result"]["name"] == "viajobs" and len(row["result"]["losses"]) == 4


def test_lora_tag_in_a_generation_changes_pixels_and_is_written(app, client):
    import base64
    import io
    import json

    import numpy as np
    from PIL import Image

    write_kohya(app.paths.lora_dir / "tagged.safetensors", seed=3)
    client.post("/sdapi/v1/refresh-loras")
    assert "tagged" in [x["name"] for x in client.get("/sdapi/v1/loras").json()]
    base = client.post("/sdapi/v1/txt2img", json={"prompt": "a cat", "steps": 3, "seed": 5}).json()
    tagged = client.post("/sdapi/v1/txt2img", json={"prompt": "a cat <lora:tagged:1>", "steps": 3, "seed": 5}).json()
    px = [np.asarray(Image.open(io.BytesIO(base64.b64decode(r["images"][0])))) for r in (base, tagged)]
    assert not np.array_equal(px[0], px[1])
    text = json.loads(tagged["info"])["infotexts"][0]
    assert 'Lora hashes: "tagged: ' in text and "<lora:tagged:1>" in text
    again = client.post("/sdapi/v1/txt2img", json={"prompt": "a cat", "steps": 3, "seed": 5}).json()
    assert np.array_equal(px[0], np.asarray(Image.open(io.BytesIO(base64.b64decode(again["images"][0])))))
