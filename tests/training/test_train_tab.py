"""The Train tab's handlers: start → live status (progress, loss plot, samples) → result; errors are messages."""

from __future__ import annotations

import gradio as gr

from webui.ui.train_tab import build_train_tab, split_values


def test_train_tab_runs_a_job_and_reports(app, dataset):
    with gr.Blocks():
        with gr.Tab("Train", elem_id="tab_train"):
            tab = build_train_tab(app)
    values = {k: getattr(c, "value", None) for k, c in tab.inputs.items()}
    values.update(
        name="ui", dataset_dir=str(dataset), steps=4, batch_size=2, rank=2, seed=1, sample_every=4, sample_steps=2
    )
    req, opts = split_values(values)
    assert req["steps"] == 4 and req["alpha"] is None and req["resolution"] is None and opts["targets"] == "attention"
    updates = list(tab.run_training(values))
    progress, plot, samples, result, job_id = updates[-1]
    assert "Done" in progress and job_id
    assert list(plot["step"]) == [1, 2, 3, 4] and len(plot["loss"]) == 4
    assert len(samples) == 1 and result.startswith(str(app.paths.lora_dir / "ui.safetensors"))
    assert "<lora:ui:1>" in result

    bad = list(tab.run_training({**values, "name": "a/b"}))
    assert len(bad) == 1 and "easel-error" in bad[0][0] and "file name" in bad[0][0]
    assert "No training" in tab.cancel_job(None)


def test_uploads_are_staged_and_removed_when_invalid(app, dataset, tmp_path):
    from webui.ui.train_tab import TrainTab

    tab = TrainTab.__new__(TrainTab)
    tab.app = app
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"x")
    out = list(tab.run_training({"name": "up", "steps": 1}, [str(dataset / "img0.png"), str(junk)]))
    assert "junk.bin" in out[0][0]
    assert not any((app.paths.data_dir / "training" / "uploads").iterdir())
