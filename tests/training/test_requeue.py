"""A LoRA training job still waiting when the server stopped (or crashed) runs at the next start under its own id,
on the checkpoint it had resolved to (issue #16 item 15: queued jobs are never lost)."""

from __future__ import annotations

import threading
import time


def test_a_waiting_training_job_runs_at_the_next_start(make_app, dataset):
    from webui.training.jobs import start_training

    first = make_app("--nowebui")
    gate = threading.Event()
    blocker = first.jobs.submit("hold", {}, lambda j: gate.wait(30), record=False)
    body = {
        "name": "requeued",
        "dataset_dir": str(dataset),
        "steps": 3,
        "batch_size": 1,
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
    job = start_training(first, body)
    checkpoint = first.options.get("sd_model_checkpoint")
    first.jobs.stop(timeout=0)  # stop while the training job waits behind the blocker
    gate.set()
    first.stop()
    assert blocker.done.wait(10)
    raw = first.history.__class__(first.paths.db_file)
    waiting = {r["id"]: r for r in raw.waiting()}
    raw.close()
    assert waiting[job.id]["status"] == "queued"
    assert waiting[job.id]["request"]["body"]["checkpoint"] == checkpoint  # the one it resolved to, kept

    second = make_app("--nowebui")  # started: re-queues what was waiting
    deadline = time.time() + 120
    while (row := second.history.get(job.id))["status"] in ("queued", "running") and time.time() < deadline:
        time.sleep(0.1)
    assert row["status"] == "done", row
    assert (second.paths.lora_dir / "requeued.safetensors").exists()
