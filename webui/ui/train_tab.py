"""The Train tab: a LoRA from a folder (or uploaded images) in a few clicks, followed live (progress with ETA,
loss plot, sample images) and usable in the next prompt as `<lora:name:1>` as soon as it is saved.

It holds no training logic: it builds a TrainLoraRequest + TrainOptions and calls `start_training`, then polls
the job's TrainingStatus. Build it inside the top-level `gr.Tab("Train", elem_id="tab_train")`.
"""

from __future__ import annotations

import html
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import gradio as gr

from webui.errors import EaselError
from webui.training.jobs import TrainLoraRequest, TrainOptions, existing_lora_note, start_training
from webui.ui.common import error_html, error_message
from webui.ui.page_value import PageValue

if TYPE_CHECKING:
    from webui.app import Application

POLL_SECONDS = 0.5

# (request or options field, label, component factory) in the order of the Start button's inputs
REQUEST_FIELDS = (
    "name",
    "dataset_dir",
    "checkpoint",
    "caption",
    "steps",
    "batch_size",
    "learning_rate",
    "rank",
    "alpha",
    "resolution",
    "seed",
    "train_text_encoder",
    "save_every",
    "sample_every",
    "sample_prompt",
    "overwrite",
)
OPTION_FIELDS = (
    "repeats",
    "epochs",
    "grad_accum",
    "lr_scheduler",
    "warmup_steps",
    "targets",
    "text_encoder_lr",
    "noise_offset",
    "min_snr_gamma",
    "gradient_checkpointing",
    "mixed_precision",
    "optimizer",
    "save_precision",
    "sample_steps",
)


def _seconds(s: float | None) -> str:
    if s is None:
        return "…"
    s = max(0, int(round(s)))
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def split_values(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The form's values → (request fields, option fields); blanks mean "the default"."""

    def clean(v: Any) -> Any:
        return None if v == "" or v is None else v

    req = {k: clean(values.get(k)) for k in REQUEST_FIELDS}
    req = {k: v for k, v in req.items() if v is not None or k in ("alpha", "resolution")}
    for k in ("steps", "batch_size", "rank", "seed", "save_every", "sample_every", "resolution"):
        if req.get(k) is not None:
            req[k] = int(req[k])
    if req.get("resolution") == 0:
        req["resolution"] = None
    if req.get("alpha") == 0:
        req["alpha"] = None
    opts = {k: clean(values.get(k)) for k in OPTION_FIELDS}
    opts = {k: v for k, v in opts.items() if v is not None}
    for k in ("repeats", "epochs", "grad_accum", "warmup_steps", "sample_steps"):
        if k in opts:
            opts[k] = int(opts[k])
    if opts.get("text_encoder_lr") == 0:
        opts.pop("text_encoder_lr")
    return req, opts


def stage_uploads(application: Application, files: list[Any] | None) -> Path | None:
    """Copy uploaded images/captions into a fresh folder under <data-dir>/training/uploads (None: no uploads)."""
    if not files:
        return None
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    folder = application.paths.data_dir / "training" / "uploads" / stamp
    folder.mkdir(parents=True)
    for f in files:
        src = Path(getattr(f, "name", None) or str(f))
        shutil.copyfile(src, folder / src.name)
    return folder


def cancelled_text(st) -> str:
    """What a cancel left where, in plain words: never a silent replacement of an earlier LoRA (#19 item 15)."""
    r = st.result or {}
    head = f"Cancelled at step {st.step}/{st.total_steps}"
    partial, step = r.get("partial"), r.get("partial_step", -1)
    if not partial or step is None or step < 1:
        return head + ": nothing was saved." + (" The earlier LoRA is unchanged." if r.get("kept_existing") else "")
    if r.get("kept_existing"):
        return (
            f"{head}. The earlier {r.get('name')}.safetensors is unchanged; the partial weights (step {step}) "
            f"are in {Path(partial).name}."
        )
    return f"{head}: the partial LoRA (step {step} of {st.total_steps}) was saved as {Path(partial).name}."


def status_view(job) -> tuple[str, Any, list[str], str]:
    """(progress HTML, loss plot data, sample image paths, result text) of a training job."""
    import pandas as pd

    st = job.training
    frac = st.step / st.total_steps if st.total_steps else 0.0
    if job.done.is_set():
        text = {"done": "Done", "failed": "Failed"}.get(job.status, job.status)
        if job.status == "interrupted":
            text = cancelled_text(st)
        if job.error is not None:
            text += ": " + error_message(job.error)
    elif st.phase in ("training", "saving"):
        loss = f", loss {st.loss:.4f}" if st.loss is not None else ""
        text = f"Step {st.step}/{st.total_steps} · {frac * 100:.0f}% · ETA {_seconds(st.eta())}{loss}"
        if st.resumed_from:
            text += f" · resumed from step {st.resumed_from}"
    else:
        text = {"queued": "Queued"}.get(st.phase, st.phase.capitalize() + "…")
    bar = f'<progress value="{frac:.3f}" max="1" style="width:100%"></progress>'
    progress = f'<div class="easel-progress">{bar}<span>{html.escape(text)}</span></div>'
    losses = list(st.losses)
    plot = pd.DataFrame({"step": list(range(1, len(losses) + 1)), "loss": losses})
    result = ""
    if st.result and st.result.get("kept_existing") and st.result.get("partial"):
        partial = Path(st.result["partial"])
        result = f"{partial}  →  use it as <lora:{partial.stem}:1> (partial)"
    elif st.result and st.result.get("path"):
        result = f"{st.result['path']}  →  use it as <lora:{st.result['name']}:1>"
    return progress, plot, list(st.samples), result


class TrainTab:
    def __init__(self, application: Application):
        self.app = application
        self.inputs: dict[str, Any] = {}
        self._build()
        self._wire()

    def _default_dataset(self) -> str | None:
        """With the bundled demo model loaded, offer the example dataset (a "zebrastripe" style it can't draw yet)."""
        active = self.app.models.active
        example = self.app.paths.repo_dir / "examples" / "lora-dataset"
        return str(example) if active is not None and active.info.is_demo and example.is_dir() else None

    def _checkpoints(self) -> tuple[list[str], str | None]:
        titles = [i.title for i in self.app.catalog.list()]
        current = self.app.options.get("sd_model_checkpoint")
        return titles, current if current in titles else (titles[0] if titles else None)

    def _build(self) -> None:
        d, o = TrainLoraRequest.model_fields, TrainOptions.model_fields
        i = self.inputs
        titles, current = self._checkpoints()
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    i["name"] = gr.Textbox(label="LoRA name", placeholder="my-style", elem_id="train_name")
                    i["checkpoint"] = gr.Dropdown(
                        titles, value=current, label="Base checkpoint", elem_id="train_checkpoint"
                    )
                # asked before a LoRA of the same name is replaced (#19 item 15): a note as the name is typed, and
                # the service refuses (409) until this is ticked
                i["overwrite"] = gr.Checkbox(False, label="Overwrite existing LoRA", elem_id="train_overwrite")
                self.name_note = gr.HTML("", elem_id="train_name_note")
                i["dataset_dir"] = gr.Textbox(
                    label="Dataset folder on the server",
                    elem_id="train_dataset_dir",
                    value=self._default_dataset(),
                    placeholder="/path/to/images (with <image>.txt captions)",
                )
                self.uploads = gr.File(
                    label="…or upload images (and .txt captions)", file_count="multiple", elem_id="train_upload"
                )
                i["caption"] = gr.Textbox(
                    label="Caption template (trigger word; {caption} = the image's .txt)",
                    placeholder="a photo of sks dog",
                    elem_id="train_caption",
                )
                with gr.Row():
                    i["steps"] = gr.Number(d["steps"].default, label="Max steps", precision=0)
                    i["epochs"] = gr.Number(0, label="…or epochs (0: use steps)", precision=0)
                    i["repeats"] = gr.Number(1, label="Repeats", precision=0)
                    i["batch_size"] = gr.Number(d["batch_size"].default, label="Batch size", precision=0)
                    i["grad_accum"] = gr.Number(1, label="Gradient accumulation", precision=0)
                with gr.Row():
                    i["learning_rate"] = gr.Number(d["learning_rate"].default, label="Learning rate")
                    i["lr_scheduler"] = gr.Dropdown(
                        ["constant", "cosine", "linear"], value="constant", label="LR schedule"
                    )
                    i["warmup_steps"] = gr.Number(0, label="Warmup steps", precision=0)
                    i["rank"] = gr.Number(d["rank"].default, label="Rank", precision=0)
                    i["alpha"] = gr.Number(0, label="Alpha (0: = rank)")
                with gr.Row():
                    i["resolution"] = gr.Number(0, label="Resolution (0: native)", precision=0)
                    i["seed"] = gr.Number(-1, label="Seed", precision=0)
                    i["targets"] = gr.Radio(["attention", "attention+ff"], value="attention", label="Target modules")
                with gr.Accordion("More options", open=False):
                    with gr.Row():
                        i["train_text_encoder"] = gr.Checkbox(False, label="Train the text encoder")
                        i["text_encoder_lr"] = gr.Number(0, label="Text encoder LR (0: same)")
                        i["noise_offset"] = gr.Number(0.0, label="Noise offset")
                        i["min_snr_gamma"] = gr.Number(0.0, label="Min-SNR gamma (0: off)")
                    with gr.Row():
                        i["gradient_checkpointing"] = gr.Checkbox(False, label="Gradient checkpointing")
                        i["mixed_precision"] = gr.Dropdown(
                            ["no", "fp16", "bf16"], value="no", label="Mixed precision (GPU)"
                        )
                        i["optimizer"] = gr.Dropdown(
                            ["adamw", "adamw8bit"], value="adamw", label="Optimizer (8-bit: bitsandbytes on a GPU)"
                        )
                        i["save_precision"] = gr.Dropdown(
                            ["fp16", "bf16", "fp32"], value=o["save_precision"].default, label="Save precision"
                        )
                with gr.Row():
                    i["save_every"] = gr.Number(d["save_every"].default, label="Save every N steps", precision=0)
                    i["sample_every"] = gr.Number(0, label="Sample every N steps (0: never)", precision=0)
                    i["sample_steps"] = gr.Number(20, label="Sample steps", precision=0)
                i["sample_prompt"] = gr.Textbox(label="Sample prompt (empty: the first caption)")
                with gr.Row():
                    self.start = gr.Button("Start training", variant="primary", elem_id="train_start")
                    self.cancel = gr.Button("Cancel", elem_id="train_cancel")
            with gr.Column(scale=2):
                self.progress = gr.HTML(elem_id="train_progress")
                self.plot = gr.LinePlot(x="step", y="loss", title="Loss", elem_id="train_loss_plot", height=260)
                self.samples = gr.Gallery(label="Samples", columns=3, format="png", elem_id="train_samples")
                self.result = gr.Textbox(label="Saved LoRA", interactive=False, elem_id="train_result")
        self.job_id = PageValue(None)

    def _wire(self) -> None:
        fields = list(self.inputs)
        outputs = [self.progress, self.plot, self.samples, self.result, self.job_id]

        def run(*args) -> Iterator[tuple]:
            values = dict(zip(fields, args[:-1]))
            yield from self.run_training(values, args[-1])

        self.start.click(run, inputs=[self.inputs[k] for k in fields] + [self.uploads], outputs=outputs)
        self.inputs["name"].change(self.name_check, inputs=[self.inputs["name"]], outputs=[self.name_note], queue=False)
        self.cancel.click(self.cancel_job, inputs=[self.job_id], outputs=[self.progress])

    # --- handlers (plain functions of values; tests call them directly) -----------------------------------------
    def run_training(self, values: dict[str, Any], uploads: list[Any] | None = None) -> Iterator[tuple]:
        staged = None
        try:
            staged = stage_uploads(self.app, uploads)
            if staged is not None:
                values = {**values, "dataset_dir": str(staged)}
            req, opts = split_values(values)
            job = start_training(self.app, req, opts)
        except (EaselError, ValueError, TypeError) as e:
            if staged is not None:
                shutil.rmtree(staged, ignore_errors=True)
            yield error_html(error_message(e)), None, [], "", None
            return
        while True:
            finished = job.done.wait(POLL_SECONDS)
            yield (*status_view(job), job.id)
            if finished:
                return

    def name_check(self, name: str | None) -> str:
        note = existing_lora_note(self.app, (name or "").strip()) if name and name.strip() else None
        return f'<div class="easel-note">{html.escape(note)}</div>' if note else ""

    def cancel_job(self, job_id: str | None) -> str:
        if not job_id:
            return error_html("No training is running.")
        try:
            self.app.jobs.cancel(job_id)
        except EaselError as e:
            return error_html(error_message(e))
        return '<div class="easel-progress">Cancelling… (the last step is saved)</div>'


def build_train_tab(application: Application) -> TrainTab:
    return TrainTab(application)
