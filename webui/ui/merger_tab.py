"""The Checkpoint Merger tab (A1111's, with its labels and elem_ids): three checkpoint dropdowns with a refresh
button, the method, the multiplier, the output name, fp16, "Copy config from", a VAE to bake in, a discard pattern,
and Merge. It builds the API's request and calls `submit_merge`, then follows the job: no merge logic lives here.
Build it inside the top-level `gr.Tab("Checkpoint Merger", elem_id="tab_modelmerger")`."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, Iterator

import gradio as gr

from webui.errors import EaselError
from webui.merge import CONFIG_SOURCES, MergeRequest, submit_merge
from webui.merge.names import MAX_NAME
from webui.ui.common import error_html, error_message, ok_html

if TYPE_CHECKING:
    from webui.app import Application

POLL_SECONDS = 0.5
METHOD_LABELS = {
    "No interpolation": "no_interpolation",
    "Weighted sum": "weighted_sum",
    "Add difference": "add_difference",
}
NO_VAE = "None"


def checkpoint_titles(application: Application) -> list[str]:
    return [i.title for i in application.catalog.list() if not i.is_folder]


def vae_choices(application: Application) -> list[str]:
    from webui.models.catalog import scan_vaes

    return [NO_VAE] + [v.name for v in scan_vaes(application.paths.vae_dir)]


def request_body(a, b, c, method: str, multiplier, name, half, config: str, vae, discard) -> dict[str, Any]:
    """The form → `POST /easel/v1/merge`'s body (the same request the API takes)."""
    return {
        "primary": a or "",
        "secondary": b or None,
        "tertiary": c or None,
        "method": METHOD_LABELS.get(method, method),
        "multiplier": float(multiplier),
        "name": (name or "").strip(),
        "save_as_half": bool(half),
        "config_source": CONFIG_SOURCES.index(config) if config in CONFIG_SOURCES else 0,
        "bake_in_vae": vae if vae and vae != NO_VAE else None,
        "discard_weights": discard or "",
    }


def status_html(job) -> str:
    """The job's progress line (tensors written / total), then where the checkpoint was saved, or why not."""
    if job.done.is_set():
        if job.status == "done" and isinstance(job.value, dict):
            return ok_html(f"Checkpoint saved to {job.value['path']}")
        reason = error_message(job.error) if job.error is not None else job.status
        return error_html(f"Merge {job.status}: {reason}")
    c = job.control
    if not c.sampling_steps:
        text = c.textinfo if job.status == "running" and c.textinfo else "Queued"
        return f'<div class="easel-progress"><span>{html.escape(text)}</span></div>'
    frac = c.sampling_step / c.sampling_steps
    text = f"{c.textinfo or 'Merging'} · tensor {c.sampling_step}/{c.sampling_steps} · {frac * 100:.0f}%"
    return (
        f'<div class="easel-progress"><progress value="{frac:.3f}" max="1" style="width:100%"></progress>'
        f"<span>{html.escape(text)}</span></div>"
    )


class MergerTab:
    def __init__(self, application: Application):
        self.app = application
        self._build()
        self._wire()

    def _build(self) -> None:
        d = MergeRequest.model_fields
        titles = checkpoint_titles(self.app)
        gr.HTML(
            "<p>A merged checkpoint is saved in the checkpoint folder as .safetensors. "
            "<b>Weighted sum</b>: A·(1−M) + B·M. <b>Add difference</b>: A + (B − C)·M. "
            "<b>No interpolation</b>: A as it is (to bake in a VAE, save as float16 or discard weights).</p>"
        )
        with gr.Row():
            self.primary = gr.Dropdown(
                titles, value=None, label="Primary model (A)", elem_id="modelmerger_primary_model_name"
            )
            self.secondary = gr.Dropdown(
                titles, value=None, label="Secondary model (B)", elem_id="modelmerger_secondary_model_name"
            )
            self.tertiary = gr.Dropdown(
                titles, value=None, label="Tertiary model (C)", elem_id="modelmerger_tertiary_model_name"
            )
            self.refresh = gr.Button("🔄", elem_id="modelmerger_refresh", scale=0, min_width=48)
        self.name = gr.Textbox(label="Custom Name (Optional)", elem_id="modelmerger_custom_name", max_length=MAX_NAME)
        self.multiplier = gr.Slider(
            0.0,
            1.0,
            value=d["multiplier"].default,
            step=0.05,
            label="Multiplier (M) - set to 0 to get model A",
            elem_id="modelmerger_interp_amount",
        )
        self.method = gr.Radio(
            list(METHOD_LABELS), value="Weighted sum", label="Interpolation Method", elem_id="modelmerger_interp_method"
        )
        with gr.Row():
            self.half = gr.Checkbox(False, label="Save as float16", elem_id="modelmerger_save_as_half")
            self.config = gr.Radio(
                list(CONFIG_SOURCES),
                value=CONFIG_SOURCES[0],
                label="Copy config from",
                elem_id="modelmerger_config_method",
            )
        with gr.Row():
            self.vae = gr.Dropdown(
                vae_choices(self.app), value=NO_VAE, label="Bake in VAE", elem_id="modelmerger_bake_in_vae"
            )
            self.discard = gr.Textbox(
                label="Discard weights with matching name",
                elem_id="modelmerger_discard_weights",
                placeholder="a regular expression, e.g. ^model_ema",
            )
        self.merge = gr.Button("Merge", variant="primary", elem_id="modelmerger_merge")
        self.result = gr.HTML(elem_id="modelmerger_result")

    def _wire(self) -> None:
        dropdowns = [self.primary, self.secondary, self.tertiary, self.vae]
        self.refresh.click(
            self.on_refresh,
            inputs=[self.primary, self.secondary, self.tertiary, self.vae],
            outputs=dropdowns,
            queue=False,
        )
        self.merge.click(
            self.on_merge,
            inputs=[
                self.primary,
                self.secondary,
                self.tertiary,
                self.method,
                self.multiplier,
                self.name,
                self.half,
                self.config,
                self.vae,
                self.discard,
            ],
            outputs=[self.result, *dropdowns],
        )

    def _choices(self, a=None, b=None, c=None, vae=None) -> list[Any]:
        titles, vaes = checkpoint_titles(self.app), vae_choices(self.app)
        keep = [x if x in titles else None for x in (a, b, c)]
        return [gr.update(choices=titles, value=v) for v in keep] + [
            gr.update(choices=vaes, value=vae if vae in vaes else NO_VAE)
        ]

    def on_refresh(self, a=None, b=None, c=None, vae=None) -> list[Any]:
        self.app.models.refresh()
        return self._choices(a, b, c, vae)

    def on_merge(self, a, b, c, method, multiplier, name, half, config, vae, discard) -> Iterator[list[Any]]:
        """Queue the merge, then yield its progress every POLL_SECONDS; at the end the dropdowns list the result."""
        same = [gr.update()] * 4
        try:
            job = submit_merge(self.app, request_body(a, b, c, method, multiplier, name, half, config, vae, discard))
        except EaselError as e:
            yield [error_html(e.message), *same]
            return
        while True:
            yield [status_html(job), *same]
            if job.done.wait(POLL_SECONDS):
                break
        yield [status_html(job), *self._choices(a, b, c, vae)]
