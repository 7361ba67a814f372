"""What the tabs share: errors and infotext as HTML, and `GenerationTab`, the layout and handlers of txt2img and
img2img (prompt row with ↙️, sampling, seed with its extras, override settings, the results column with progress,
live preview, gallery and Send-to buttons). A subclass lists its request fields in FIELDS and builds the rest.
The shared fields and their value helpers are in generation_fields.py (re-exported here)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import gradio as gr

from webui.errors import NotFound
from webui.generation.native import native_size
from webui.generation.requests import GenerationResult
from webui.models import samplers
from webui.ui.extra_networks import ExtraNetworksPanel
from webui.ui.generation_fields import (
    COMMON_FIELDS,
    SEND_TARGETS,
    as_int,
    canonical_sampler,
    distilled_cfg_default,
    distilled_cfg_shown,
    infotext_html,
    schedule_choices,
    seed_of,
    split_overrides,
    with_infotext,
)
from webui.ui.live_jobs import LiveJobs
from webui.ui.messages import error_html, error_message, notice_html, ok_html  # noqa: F401 (ok_html: for the tabs)
from webui.ui.page_value import PageValue
from webui.ui.progress import follow
from webui.ui.prompt_tools import StylesRow, TokenCounter

if TYPE_CHECKING:
    from webui.app import Application

__all__ = [
    "COMMON_FIELDS",
    "SEND_TARGETS",
    "GenerationTab",
    "as_int",
    "canonical_sampler",
    "distilled_cfg_shown",
    "error_html",
    "error_message",
    "infotext_html",
    "notice_html",
    "ok_html",
    "schedule_choices",
    "seed_of",
    "split_overrides",
    "with_infotext",
]


class GenerationTab(LiveJobs):
    tabname = ""
    FIELDS: tuple[tuple[str, str], ...] = COMMON_FIELDS
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {}  # radio fields: the request's index <-> the label shown

    def __init__(self, application: Application):
        self.app = application

    def native_size(self) -> int:
        return native_size(self.app.models.active)

    # --- layout pieces -------------------------------------------------------------------------------------------
    def build_toprow(self) -> None:
        t = self.tabname
        with gr.Row(elem_id=f"{t}_toprow"):
            with gr.Column(scale=8):  # each counter lies in its box's top right corner (.easel-prompt-wrap)
                with gr.Column(elem_classes=["easel-prompt-wrap"]):
                    self.prompt = gr.Textbox(
                        label="Prompt",
                        show_label=False,
                        lines=3,
                        elem_id=f"{t}_prompt",
                        placeholder="Prompt (or paste generation parameters, then press ↙️)",
                    )
                    self.prompt_counter = TokenCounter(self.app, t, self.prompt)
                with gr.Column(elem_classes=["easel-prompt-wrap"]):
                    self.negative = gr.Textbox(
                        label="Negative prompt",
                        show_label=False,
                        lines=2,
                        elem_id=f"{t}_neg_prompt",
                        placeholder="Negative prompt",
                    )
                    self.negative_counter = TokenCounter(self.app, t, self.negative, negative=True)
            with gr.Column(scale=2, min_width=180):
                self.generate = gr.Button("Generate", variant="primary", elem_id=f"{t}_generate", size="lg")
                self.build_job_controls()  # Interrupt/Skip while a job runs, the queue line, Generate forever
                # ↙️, 🗑️ and the styles (dropdown, 🔄, Apply) in one row, as A1111's tool buttons
                self.styles = StylesRow(self.app, t, self.prompt, self.negative, before=self.build_tool_buttons)
                self.styles_dropdown = self.styles.dropdown
        self.extra_networks = ExtraNetworksPanel(self.app, t, self.prompt)  # LoRA cards; a click edits the prompt

    def build_tool_buttons(self) -> None:
        t = self.tabname
        self.paste = gr.Button("↙️", elem_id=f"{t}_paste", size="sm", scale=0, min_width=32, elem_classes=["easel-tool"])
        self.clear_prompt = gr.Button(
            "🗑️", elem_id=f"{t}_clear_prompt", size="sm", scale=0, min_width=32, elem_classes=["easel-tool"]
        )
        self.clear_prompt.click(
            lambda: ("", ""), inputs=None, outputs=[self.prompt, self.negative], queue=False, api_visibility="private"
        )

    def build_sampling(self) -> None:
        t, names = self.tabname, samplers.sampler_names()
        sampler = canonical_sampler(self.app.options.get("txt2img_default_sampler")) or (names[0] if names else None)
        with gr.Row():
            self.sampler = gr.Dropdown(names, value=sampler, label="Sampling method", elem_id=f"{t}_sampling")
            self.scheduler = gr.Dropdown(
                schedule_choices(sampler), value="Automatic", label="Schedule type", elem_id=f"{t}_scheduler"
            )
        self.steps = gr.Slider(
            1,
            150,
            value=int(self.app.options.get("txt2img_default_steps")),
            step=1,
            label="Sampling steps",
            elem_id=f"{t}_steps",
        )

    def build_size(self) -> None:
        size, t = self.native_size(), self.tabname
        self.width = gr.Slider(64, 2048, value=size, step=8, label="Width", elem_id=f"{t}_width")
        self.height = gr.Slider(64, 2048, value=size, step=8, label="Height", elem_id=f"{t}_height")

    def build_batch(self) -> None:
        t = self.tabname
        self.batch_count = gr.Slider(1, 100, value=1, step=1, label="Batch count", elem_id=f"{t}_batch_count")
        self.batch_size = gr.Slider(1, 8, value=1, step=1, label="Batch size", elem_id=f"{t}_batch_size")

    def build_cfg(self) -> None:
        self.cfg_scale = gr.Slider(1, 30, value=7.0, step=0.5, label="CFG Scale", elem_id=f"{self.tabname}_cfg_scale")
        # Forge's FLUX guidance (the guidance embedder's input), shown only while a FLUX checkpoint is active
        self.distilled_cfg_scale = gr.Slider(
            0,
            30,
            value=distilled_cfg_default(self.app),  # 30 while a FLUX.1 Fill checkpoint is active
            step=0.1,
            label="Distilled CFG Scale",
            elem_id=f"{self.tabname}_distilled_cfg_scale",
            visible=distilled_cfg_shown(self.app),
        )

    def build_seed(self) -> None:
        t = self.tabname
        with gr.Row(elem_id=f"{t}_seed_row"):
            self.seed = gr.Number(-1, label="Seed", precision=0, elem_id=f"{t}_seed", scale=6)
            self.random_seed = gr.Button("🎲", elem_id=f"{t}_random_seed", scale=0, min_width=40)
            self.reuse_seed = gr.Button("♻️", elem_id=f"{t}_reuse_seed", scale=0, min_width=40)
            self.seed_extras = gr.Checkbox(False, label="Extra", elem_id=f"{t}_subseed_show", scale=0, min_width=80)
        with gr.Row(visible=False, elem_id=f"{t}_seed_extras") as self.seed_extras_row:
            self.subseed = gr.Number(-1, label="Variation seed", precision=0, elem_id=f"{t}_subseed")
            self.subseed_strength = gr.Slider(
                0, 1, value=0, step=0.01, label="Variation strength", elem_id=f"{t}_subseed_strength"
            )
            self.seed_resize_w = gr.Slider(
                0, 2048, value=0, step=8, label="Resize seed from width", elem_id=f"{t}_seed_resize_from_w"
            )
            self.seed_resize_h = gr.Slider(
                0, 2048, value=0, step=8, label="Resize seed from height", elem_id=f"{t}_seed_resize_from_h"
            )
        self.override = gr.Dropdown(
            [],
            value=[],
            multiselect=True,
            allow_custom_value=True,
            visible=False,
            label="Override settings",
            elem_id=f"{self.tabname}_override_settings",
        )

    def build_results(self) -> None:
        from webui.ui.gallery_buttons import GalleryButtons

        t = self.tabname
        # the live preview lies over the gallery (A1111), not in a box of its own that pushes the gallery down
        with gr.Column(elem_classes=["easel-results"], elem_id=f"{t}_gallery_container"):
            self.gallery = gr.Gallery(
                label="Output",
                format="png",
                columns=4,
                object_fit="contain",
                interactive=False,
                elem_id=f"{t}_gallery",
                height=512,
            )
            self.preview = gr.Image(
                label="Live preview",
                visible=False,
                interactive=False,
                elem_id=f"{t}_preview",
                height=496,
                elem_classes=["easel-live-preview"],
            )
        self.progress = gr.HTML("", elem_id=f"{t}_progress")
        self.buttons = GalleryButtons(self.app, t, t, SEND_TARGETS)  # Save, Zip, 📂, Send to …
        self.send = self.buttons.send
        self.info = gr.HTML("", elem_id=f"html_info_{t}")
        self.results = PageValue({"infotexts": [], "selected": 0})
        self.job_id = PageValue(None)

    @property
    def field_components(self) -> list[gr.components.Component]:
        return [getattr(self, attr) for _, attr in self.FIELDS]

    # --- events --------------------------------------------------------------------------------------------------
    def wire_common(self, inputs: list) -> None:
        self.prompt_counter.wire(self.steps)
        self.negative_counter.wire(self.steps)
        self.generate_inputs = inputs  # Generate itself is wired by live_jobs.wire_live_jobs (it needs the page's id)
        self.interrupt.click(self.on_interrupt, inputs=[self.job_id], outputs=None, queue=False)
        self.skip.click(self.on_skip, inputs=[self.job_id], outputs=None, queue=False)
        self.random_seed.click(lambda: -1, inputs=None, outputs=[self.seed], queue=False)
        self.reuse_seed.click(self.on_reuse_seed, inputs=[self.results], outputs=[self.seed], queue=False)
        self.sampler.change(
            self.on_sampler, inputs=[self.sampler, self.scheduler], outputs=[self.scheduler], queue=False
        )
        self.seed_extras.change(
            lambda on: gr.update(visible=bool(on)),
            inputs=[self.seed_extras],
            outputs=[self.seed_extras_row],
            queue=False,
        )
        self.gallery.select(self.on_select, inputs=[self.results], outputs=[self.info, self.results], queue=False)
        self.buttons.wire(self.gallery, self.results)

    def request_fields(self, values) -> dict[str, Any]:
        """FIELDS' component values → request keyword arguments (UI-only values applied and dropped)."""
        raw = {key: value for (key, _), value in zip(self.FIELDS, values)}
        for key, labels in self.CHOICES.items():
            if key in raw:
                raw[key] = labels.index(raw[key]) if raw[key] in labels else 0
        options, extra = split_overrides(raw.pop("_overrides", None))
        if not raw.pop("_seed_extras", True):
            raw.update(subseed_strength=0, seed_resize_from_w=-1, seed_resize_from_h=-1)
        for key in ("seed", "subseed"):
            if key in raw:
                raw[key] = as_int(raw[key], -1)
        for key in ("seed_resize_from_w", "seed_resize_from_h"):
            if key in raw and not as_int(raw[key], 0) > 0:
                raw[key] = -1
        raw.update({k: raw[k] or None for k in ("sampler_name", "scheduler") if k in raw})
        raw["prompt"], raw["negative_prompt"] = raw.get("prompt") or "", raw.get("negative_prompt") or ""
        if "styles" in raw:
            raw["styles"] = list(raw["styles"] or [])
        return {**raw, **extra, "override_settings": options}

    def follow_job(self, submit: Callable[[], Any]):
        """Generator: queue the job, show its place in the queue, then progress and preview, then the images."""
        try:
            job = submit()
        except Exception as e:  # validation and option errors: visible, and the UI keeps working
            msg = error_message(e)
            gr.Warning(msg)
            yield {self.info: error_html(msg), self.progress: ""}
            return
        yield {self.job_id: job.id, self.preview: gr.update(value=None, visible=False)}
        for snap in follow(self.app.jobs, job):
            out: dict[Any, Any] = {self.progress: snap.html}
            if snap.preview is not None:
                out[self.preview] = gr.update(value=snap.preview, visible=True)
            yield out
        yield self.finished(job)

    def finished(self, job) -> dict[Any, Any]:
        out: dict[Any, Any] = {self.job_id: None, self.preview: gr.update(value=None, visible=False), self.progress: ""}
        result = job.value if isinstance(job.value, GenerationResult) else None
        if result is None or not result.images:  # nothing to show: keep the previous images in the gallery
            shown_as = notice_html  # the user's own Interrupt, Cancel or Skip is a notice, not an error
            if job.status == "cancelled":
                msg = "Cancelled before it started."
            elif job.status == "interrupted":
                msg = "Interrupted before any image was finished."
            elif job.error is not None:
                msg, shown_as = error_message(job.error), error_html
                gr.Warning(msg)
            else:
                msg = "No image was produced (every batch was skipped)."
            out[self.info] = shown_as(msg)
            return out
        images = [with_infotext(img, text) for img, text in zip(result.images, result.infotexts)]
        first = int(result.info.get("index_of_first_image", 0) or 0) if len(images) > 1 else 0
        texts = list(result.infotexts)
        out[self.gallery] = gr.update(value=images, selected_index=None)
        out[self.results] = {"infotexts": texts, "selected": first}
        notice = notice_html(f"Interrupted: {len(texts) - first} image(s) finished.") if result.interrupted else ""
        shown = infotext_html(texts[first]) if texts else ""
        out[self.info] = notice + "".join(error_html(n) for n in result.warnings) + shown
        return out

    def on_interrupt(self, job_id: str | None) -> None:
        if job_id:
            try:
                self.app.jobs.cancel(job_id)  # queued: removed; running: interrupted
                return
            except NotFound:
                pass
        self.app.jobs.interrupt()

    def on_skip(self, job_id: str | None) -> None:
        current = self.app.jobs.current
        if current is not None and (not job_id or current.id == job_id):
            self.app.jobs.skip()

    def on_reuse_seed(self, results: Mapping[str, Any]):
        texts = (results or {}).get("infotexts") or []
        i = (results or {}).get("selected", 0)
        seed = seed_of(texts[i] if 0 <= i < len(texts) else None)
        return gr.update() if seed is None else seed

    def on_select(self, results: Mapping[str, Any], evt: gr.SelectData):
        texts = (results or {}).get("infotexts") or []
        i = evt.index if isinstance(evt.index, int) else 0
        if not 0 <= i < len(texts):
            return gr.update(), results
        return infotext_html(texts[i]), {"infotexts": texts, "selected": i}

    @staticmethod
    def on_sampler(sampler: str | None, scheduler: str | None):
        choices = schedule_choices(sampler)
        return gr.update(choices=choices, value=scheduler if scheduler in choices else "Automatic")

    # --- filling the fields ("Send to", ↙️, History) --------------------------------------------------------------
    def fill(self, fields: Mapping[str, Any]) -> list[Any]:
        """One update per `field_components` entry from A1111 request fields; fields not given stay as they are."""
        fields = dict(fields)
        sampler = canonical_sampler(fields.get("sampler_name"))
        fields["sampler_name"] = sampler
        if "scheduler" in fields:
            fields["scheduler"] = fields["scheduler"] if fields["scheduler"] in schedule_choices(sampler) else None
        return [
            gr.update() if fields.get(key) is None else self.fill_update(key, fields[key], sampler)
            for key, _ in self.FIELDS
        ]

    def fill_update(self, key: str, value: Any, sampler: str | None) -> Any:
        if key == "sampler_name":
            return gr.update(value=value, choices=samplers.sampler_names())
        if key == "scheduler":
            return gr.update(value=value, choices=schedule_choices(sampler))
        if key == "styles":  # only the styles that exist here
            names = self.app.styles.names()
            return gr.update(choices=names, value=[s for s in value if s in names])
        if key == "_overrides":  # [(label, json value)]
            entries = [tuple(e) for e in value]
            return gr.update(choices=entries, value=[v for _, v in entries], visible=bool(entries))
        if key in self.CHOICES:
            labels = self.CHOICES[key]
            index = int(value) if not isinstance(value, str) else (labels.index(value) if value in labels else 0)
            return labels[index] if 0 <= index < len(labels) else gr.update()
        return value
