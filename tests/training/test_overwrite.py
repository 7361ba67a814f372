"""#19 item 15: training into an existing LoRA name asks first (409 until "Overwrite existing LoRA" is ticked), and
a run that replaces an earlier LoRA leaves it untouched until it completes: its saves and a cancel go to
<name>-partial.safetensors, and the cancel says so."""

from __future__ import annotations

import time

import pytest

from webui.errors import Conflict
from webui.training import TrainLoraRequest, start_training
from webui.training.jobs import existing_lora_note
from webui.ui.train_tab import status_view


def _req(dataset, **kw) -> TrainLoraRequest:
    base = dict(
        name="ow",
        dataset_dir=str(dataset),
        steps=3,
        batch_size=1,
        learning_rate=1e-2,
        rank=2,
        seed=1,
        save_every=0,
        sample_every=0,
        resolution=64,
    )
    return TrainLoraRequest(**{**base, **kw})


def _cancel_after(app, job, step: int) -> None:
    deadline = time.time() + 120
    while job.training.step < step and not job.done.is_set() and time.time() < deadline:
        time.sleep(0.002)
    app.jobs.cancel(job.id)
    app.jobs.wait(job, timeout=120)


def test_existing_name_is_asked_and_kept_until_the_new_run_completes(app, dataset):
    out = app.paths.lora_dir / "ow.safetensors"
    partial = app.paths.lora_dir / "ow-partial.safetensors"
    assert existing_lora_note(app, "ow") is None
    app.jobs.wait(start_training(app, _req(dataset)), timeout=300)
    first = out.read_bytes()
    note = existing_lora_note(app, "ow")
    assert note and "ow.safetensors already exists (3 steps" in note and "Overwrite existing LoRA" in note

    with pytest.raises(Conflict, match="already exists .*Overwrite existing LoRA"):
        start_training(app, _req(dataset))
    assert out.read_bytes() == first

    # overwrite ticked, then cancelled mid-run: the earlier file is untouched, the partial weights are beside it
    job = start_training(app, _req(dataset, overwrite=True, steps=40, save_every=2))
    _cancel_after(app, job, 4)
    assert job.status == "interrupted" and job.training.step < 40
    assert out.read_bytes() == first and partial.exists()
    assert job.value["kept_existing"] is True and job.value["partial"] == str(partial)
    progress, _plot, _samples, result = status_view(job)
    assert "The earlier ow.safetensors is unchanged; the partial weights (step" in progress
    assert "ow-partial.safetensors" in progress and "<lora:ow-partial:1>" in result

    # resumed and completed: only now is the earlier file replaced, and the partial one goes away
    again = start_training(app, _req(dataset, overwrite=True, steps=40, save_every=2))
    app.jobs.wait(again, timeout=300)
    assert again.status == "done" and again.training.resumed_from == job.training.step
    assert out.read_bytes() != first and not partial.exists()


def test_cancel_of_a_new_name_says_where_the_partial_lora_is(app, dataset):
    job = start_training(app, _req(dataset, name="fresh", steps=40, save_every=2))
    _cancel_after(app, job, 3)
    progress = status_view(job)[0]
    assert "Cancelled at step" in progress and "the partial LoRA (step" in progress
    assert "was saved as fresh.safetensors" in progress and job.value["kept_existing"] is False


def test_overwrite_over_http_is_409_then_accepted(app, dataset):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from webui.api.errors import install_error_handlers
    from webui.api.training import build_training_router

    api = FastAPI()
    install_error_handlers(api)
    api.include_router(build_training_router(app))
    body = _req(dataset, name="http").model_dump()
    with TestClient(api) as c:
        first = c.post("/easel/v1/train/lora", json=body)
        assert first.status_code == 202
        deadline = time.time() + 120
        while c.get(f"/easel/v1/train/lora/{first.json()['job_id']}").json()["status"] not in ("done", "failed"):
            assert time.time() < deadline
            time.sleep(0.05)
        r = c.post("/easel/v1/train/lora", json=body)
        assert r.status_code == 409 and "Overwrite" in r.json()["detail"]
        for bad in ("yes please", None, 2):
            assert c.post("/easel/v1/train/lora", json={**body, "overwrite": bad}).status_code == 422
        assert c.post("/easel/v1/train/lora", json={**body, "overwrite": True}).status_code == 202
