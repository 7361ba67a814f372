"""Training resume never unpickles (issue #16 item 13): the state is safetensors + JSON, a run resumed from it
continues the same loss curve, and a hostile pickle put in the run folder is never loaded."""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import torch

from webui.training.dataset import encode_latents, load_dataset
from webui.training.run import bucket_step
from webui.training.trainer import LoraTrainer, TrainConfig, TrainHooks


class Hostile:
    """Unpickling this runs os.mkdir(marker): proof that a pickle was loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _trainer(pipe, cache, state_file=None, steps=6):
    cfg = TrainConfig(
        steps=steps,
        batch_size=1,
        learning_rate=1e-2,
        rank=2,
        alpha=2,
        seed=5,
        lr_scheduler="cosine",
        warmup_steps=2,
        train_text_encoder=True,
        resolution=64,
    )
    return LoraTrainer(pipe, cfg, cache, state_file=state_file)


def test_resume_from_safetensors_continues_the_loss_curve(app, dataset, tmp_path):
    from safetensors import safe_open

    pipe = app.models.active.pipeline
    cache = encode_latents(pipe.vae, load_dataset(dataset, "{caption}"), 64, bucket_step(pipe))
    full = _trainer(pipe, cache)
    try:
        reference = full.run().losses
    finally:
        full.teardown()

    state = tmp_path / "run" / "state.safetensors"
    first = _trainer(pipe, cache, state)
    try:
        out = first.run(TrainHooks(should_stop=lambda: first.step >= 3))
        first.save_state()
    finally:
        first.teardown()
    assert out.stopped and out.step == 3
    assert state.read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle or a zip
    with safe_open(str(state), "pt") as f:
        keys, meta = set(f.keys()), f.metadata()
        assert f.get_tensor("s.generator").dtype == torch.uint8
    assert meta["format"] == "easel-train-state"
    assert any(k.startswith("s.adapter.unet.") for k in keys) and any(
        k.startswith("s.adapter.text_encoder.") for k in keys
    )
    assert any(k.startswith("s.optimizer.state.") and k.endswith(".exp_avg_sq") for k in keys)

    second = _trainer(pipe, cache, state)
    try:
        assert second.step == second.resumed_from == 3
        lr_before = second.lr_scheduler.get_last_lr()
        resumed = second.run()
    finally:
        second.teardown()
    assert lr_before == first.lr_scheduler.get_last_lr()  # the schedule continues where it was
    assert resumed.step == 6 and len(resumed.losses) == 6
    assert resumed.losses[:3] == out.losses
    assert np.allclose(resumed.losses, reference, rtol=1e-4, atol=1e-5)  # as if never interrupted


def test_a_pickle_in_the_run_folder_is_never_loaded(app, client, dataset, caplog):
    run_dir = app.paths.data_dir / "training" / "evil"
    run_dir.mkdir(parents=True)
    markers = [run_dir / "pwned-legacy", run_dir / "pwned-new"]
    torch.save({"step": 2, "payload": Hostile(markers[0])}, run_dir / "state.pt")  # what older versions read
    torch.save({"step": 2, "payload": Hostile(markers[1])}, run_dir / "state.safetensors")  # under the new name

    body = {
        "name": "evil",
        "dataset_dir": str(dataset),
        "steps": 3,
        "batch_size": 1,
        "rank": 2,
        "resolution": 64,
        "save_every": 0,
        "sample_every": 0,
    }
    with caplog.at_level(logging.WARNING, logger="easel.training"):
        r = client.post("/easel/v1/train/lora", json=body)
        assert r.status_code == 202, r.text
        deadline = time.time() + 180
        while (view := client.get(f"/easel/v1/train/lora/{r.json()['job_id']}").json())["status"] not in (
            "done",
            "failed",
        ) and time.time() < deadline:
            time.sleep(0.05)
    assert view["status"] == "done", view
    assert view["step"] == 3 and len(view["losses"]) == 3  # started over: no resume from either file
    assert not any(m.exists() for m in markers), "a pickle was unpickled"
    text = caplog.text
    assert "state.pt" in text and "pickle" in text  # the legacy file is named in a warning
    assert "state.safetensors" in text and "starting over" in text
