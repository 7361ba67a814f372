"""#19 item 14: the History table names each job's type, and a training job shows its LoRA name and final loss
(from the history the job queue really writes: a real training run on the tiny model, and a real txt2img job)."""

from __future__ import annotations

from webui.generation.requests import Txt2ImgRequest
from webui.ui.history_tab import COLUMNS, HistoryTab, job_details, job_row


def _row(job):
    return dict(zip(COLUMNS, job_row(job)))


def test_history_rows_name_the_job_type_and_training_result(app, dataset):
    from webui.training.jobs import start_training

    gen = app.jobs.wait(app.submit_txt2img(Txt2ImgRequest(prompt="a red circle", steps=1, seed=1), from_api=True))
    assert gen.images
    job = start_training(
        app,
        {
            "name": "histlora",
            "dataset_dir": str(dataset),
            "steps": 2,
            "resolution": 64,
            "batch_size": 1,
            "rank": 2,
            "save_every": 0,
            "sample_every": 0,
        },
    )
    app.jobs.wait(job)
    assert job.status == "done", job.error
    rows = {r["kind"]: r for r in app.history.list(limit=10)}
    train, txt = _row(rows["train-lora"]), _row(rows["txt2img"])
    assert txt["Type"] == "txt2img" and txt["Prompt / result"] == "a red circle"
    assert train["Type"] == "train" and train["Size"] == ""
    loss = job.training.losses[-1]
    assert train["Prompt / result"].startswith(f"LoRA histlora · final loss {loss:.4f}")
    assert "step 2/2" in train["Prompt / result"]
    assert "train" in job_details(rows["train-lora"]) and "histlora" in job_details(rows["train-lora"])
    # the tab's own listing (what the table shows) carries the Type column
    table = HistoryTab.load(type("T", (), {"app": app})(), "")[1]
    assert {r[1] for r in table} >= {"train", "txt2img"}


def test_other_kinds_are_named():
    base = {"status": "done", "created_at": 0, "params": {}}
    assert _row({**base, "kind": "extras"})["Type"] == "extras"
    assert (
        _row({**base, "kind": "merge", "result": {"name": "m.safetensors"}})["Prompt / result"]
        == "merge: m.safetensors"
    )
    assert _row({**base, "kind": "install-model"})["Type"] == "install"
    assert _row({**base, "kind": "img2img", "prompt": "p"})["Type"] == "img2img"
    assert _row({**base, "kind": "ext-thing"})["Type"] == "ext-thing"
    # a training job that never reported a loss (cancelled while queued) still names its LoRA
    assert _row({**base, "kind": "train-lora", "params": {"name": "x"}})["Prompt / result"] == "LoRA x"
