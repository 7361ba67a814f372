"""LoRA training as a job on the tiny model: the loss falls, the file is kohya-format with ss_* metadata and loads in
plain diffusers, the serving model is untouched, a cancelled run resumes exactly, and bad input writes nothing."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
import pytest

from tests.lora.conftest import render
from tests.training.conftest import make_dataset
from webui.errors import InvalidRequest
from webui.training import TrainLoraRequest, start_training


def _req(dataset: Path, **kw) -> TrainLoraRequest:
    base = dict(
        name="sq",
        dataset_dir=str(dataset),
        steps=40,
        batch_size=2,
        learning_rate=1e-2,
        rank=4,
        seed=1,
        save_every=0,
        sample_every=0,
    )
    return TrainLoraRequest(**{**base, **kw})


def test_train_export_and_load_in_plain_diffusers(app, dataset):
    from safetensors import safe_open

    from webui.models import loader

    pipe = app.models.active.pipeline
    base = render(pipe, "sks square")
    job = start_training(app, _req(dataset, sample_every=20, sample_prompt="sks square", train_text_encoder=True))
    assert job.kind == "train-lora"
    result = app.jobs.wait(job, timeout=300)
    out = app.paths.lora_dir / "sq.safetensors"
    assert result == {"name": "sq", "path": str(out)} and job.status == "done"

    status = job.training
    losses = status.losses
    assert status.step == status.total_steps == 40 and len(losses) == 40 and status.loss == losses[-1]
    q = len(losses) // 4
    assert statistics.mean(losses[-q:]) < statistics.mean(losses[:q])
    assert [Path(p).name for p in status.samples] == ["step-000020.png", "step-000040.png"]
    assert all(Path(p).is_file() for p in status.samples)
    assert not (app.paths.data_dir / "training" / "sq" / "state.safetensors").exists()  # a completed run keeps no state

    with safe_open(str(out), "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    assert any(k.startswith("lora_unet_down_blocks_") and k.endswith(".lora_down.weight") for k in keys)
    assert any(k.startswith("lora_te_text_model_encoder_layers_") for k in keys)
    assert meta["ss_network_dim"] == "4" and float(meta["ss_network_alpha"]) == 4.0
    assert meta["ss_base_model_version"] == "sd_v1" and meta["ss_sd_model_name"] == app.models.active.info.path.name
    assert len(meta["ss_sd_model_hash"]) == 8 and meta["ss_new_sd_model_hash"] == app.models.active.info.sha256
    assert meta["ss_num_train_images"] == "4" and meta["ss_steps"] == "40"
    assert float(meta["ss_training_started_at"]) <= time.time()
    assert json.loads(meta["ss_tag_frequency"]) == {
        "1_dataset": {"sks square": 4, "color 0": 1, "color 1": 1, "color 2": 1, "color 3": 1}
    }

    assert np.array_equal(render(pipe, "sks square"), base)  # the serving model is exactly the base again

    fresh = loader.build_from_single_file(app.models.active.info.path, app.paths.data_dir / "cache" / "plain").pipeline
    assert np.array_equal(render(fresh, "sks square"), base)
    fresh.load_lora_weights(str(out))  # plain diffusers, the file unchanged
    assert int(np.abs(render(fresh, "sks square") - base).max()) > 2


def test_cancel_then_resume_continues_the_run(app, dataset):
    full = start_training(app, _req(dataset, name="ref", steps=16, batch_size=1))
    app.jobs.wait(full, timeout=300)

    job = start_training(app, _req(dataset, steps=16, batch_size=1, save_every=4))
    deadline = time.time() + 120
    while job.training.step < 6 and not job.done.is_set() and time.time() < deadline:
        time.sleep(0.002)
    app.jobs.cancel(job.id)
    app.jobs.wait(job, timeout=120)
    stopped = job.training.step
    assert job.status == "interrupted" and 6 <= stopped < 16
    assert (app.paths.data_dir / "training" / "sq" / "state.safetensors").exists()
    assert job.value["path"] and Path(job.value["path"]).exists()  # the last complete save

    again = start_training(app, _req(dataset, steps=16, batch_size=1, save_every=4, seed=-1))
    app.jobs.wait(again, timeout=300)
    st = again.training
    assert st.resumed_from == stopped and st.step == 16 and len(st.losses) == 16
    assert st.losses[:stopped] == job.training.losses[:stopped]
    assert np.allclose(st.losses, full.training.losses, rtol=1e-4, atol=1e-5)  # as if never interrupted


def test_bad_input_is_refused_and_nothing_is_written(app, tmp_path, dataset):
    lora_dir = app.paths.lora_dir
    before = sorted(lora_dir.rglob("*"))
    jobs_before = app.jobs.completed, len(app.jobs.queued())
    empty = tmp_path / "empty"
    empty.mkdir()
    pdf = make_dataset(tmp_path / "pdf", n=2)
    (pdf / "notes.pdf").write_bytes(b"%PDF-1.4")
    corrupt = make_dataset(tmp_path / "corrupt", n=2)
    (corrupt / "img0.png").write_bytes((corrupt / "img0.png").read_bytes()[:60])  # truncated
    nocap = make_dataset(tmp_path / "nocap", n=2, captions=False)
    cases = [
        (dict(dataset_dir=str(empty)), "no images"),
        (dict(dataset_dir=str(tmp_path / "missing")), "not found"),
        (dict(dataset_dir=str(pdf)), "notes.pdf"),
        (dict(dataset_dir=str(corrupt)), "img0.png"),
        (dict(dataset_dir=str(nocap)), "caption"),
        (dict(checkpoint="nope.safetensors"), "nope"),
        (dict(rank=0), "rank"),
        (dict(name="../evil"), "file name"),
        (dict(name="a/b"), "file name"),
        (dict(name="a\\b"), "file name"),
        (dict(name=""), "empty"),
    ]
    for change, words in cases:
        with pytest.raises(InvalidRequest, match=words):
            start_training(app, _req(dataset, **change))
    with pytest.raises(InvalidRequest, match="name"):
        start_training(app, {"dataset_dir": str(dataset)})  # a dict is validated the same way
    assert sorted(lora_dir.rglob("*")) == before
    assert not (app.paths.data_dir / "training").exists()
    assert (app.jobs.completed, len(app.jobs.queued())) == jobs_before

    # a template instead of caption files is fine, and a foreign file of the same name is protected
    from tests.lora.factory import write_kohya

    write_kohya(lora_dir / "taken.safetensors", seed=1)
    with pytest.raises(InvalidRequest, match="already exists"):
        start_training(app, _req(nocap, name="taken", caption="sks square"))
