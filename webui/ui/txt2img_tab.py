"""The txt2img tab: A1111's layout and elem_ids. Submits to the job queue and follows the job until it ends."""

from __future__ import annotations

from typing import Any, Mapping

import gradio as gr

from webui.errors import InvalidRequest, NotFound
from webui.generation.requests import GenerationResult, Txt2ImgRequest
from webui.infotext import parse_infotext
from webui.models import samplers
from webui.ui.common import as_int, error_html, error_message, infotext_html
from webui.ui.progress import follow

# request field -> the component attribute that shows it; the order of `fill()`'s updates
FIELDS: tuple[tuple[str, str], ...] = (
    ("prompt", "prompt"), ("negative_prompt", "negative"), ("sampler_name", "sampler"), ("scheduler", "scheduler"),
    ("steps", "steps"), ("width", "width"), ("height", "height"), ("cfg_scale", "cfg_scale"), ("seed", "seed"),
    ("n_iter", "batch_count"), ("batch_size", "batch_size"),
)


def canonical_sampler(name: str | None) -> str | None:
    """The dropdown name for a sampler name, alias or legacy combined name; None when Easel has no such sampler."""
    if not name:
        return None
    try:
        spec, _ = samplers.resolve(name, None)
    except InvalidRequest:
        return None
    return spec.name if spec.name in samplers.sampler_names() else None


def schedule_choices(sampler: str | None) -> list[str]:
    try:
        return samplers.schedule_types_for(sampler) or ["Automatic"]
    except (InvalidRequest, TypeError):
        return ["Automatic"]


def with_infotext(image, text: str):
    """A copy of the image carrying its infotext, so the gallery's PNG keeps the `parameters` chunk."""
    out = image.copy()
    out.info = {**getattr(image, "info", {}), "parameters": text}
    return out


def seed_of(infotext: str | None) -> int | None:
    if not infotext:
        return None
    seed = parse_infotext(infotext).get("Seed")
    return as_int(seed, -1) if seed is not None else None


class Txt2ImgTab:
    def __init__(self, application):
        self.app = application
        self._build()
        self._wire()

    # --- layout --------------------------------------------------------------------------------------------------
    def native_size(self) -> int:
        active = self.app.models.active
        return int(active.native_size) if active is not None else 512

    def _build(self) -> None:
        opts = self.app.options
        names = samplers.sampler_names()
        sampler = canonical_sampler(opts.get("txt2img_default_sampler")) or (names[0] if names else None)
        size = self.native_size()
        with gr.Row(elem_id="txt2img_toprow"):
            with gr.Column(scale=8):
                self.prompt = gr.Textbox(label="Prompt", show_label=False, lines=3, elem_id="txt2img_prompt",
                                         placeholder="Prompt")
                self.negative = gr.Textbox(label="Negative prompt", show_label=False, lines=2,
                                           elem_id="txt2img_neg_prompt", placeholder="Negative prompt")
            with gr.Column(scale=2, min_width=180):
                self.generate = gr.Button("Generate", variant="primary", elem_id="txt2img_generate", size="lg")
                with gr.Row():
                    self.interrupt = gr.Button("Interrupt", elem_id="txt2img_interrupt", size="sm")
                    self.skip = gr.Button("Skip", elem_id="txt2img_skip", size="sm")
        with gr.Row(equal_height=False):
            with gr.Column(elem_id="txt2img_settings"):
                with gr.Row():
                    self.sampler = gr.Dropdown(names, value=sampler, label="Sampling method",
                                               elem_id="txt2img_sampling")
                    self.scheduler = gr.Dropdown(schedule_choices(sampler), value="Automatic", label="Schedule type",
                                                 elem_id="txt2img_scheduler")
                self.steps = gr.Slider(1, 150, value=int(opts.get("txt2img_default_steps")), step=1,
                                       label="Sampling steps", elem_id="txt2img_steps")
                with gr.Row():
                    with gr.Column(scale=3):
                        self.width = gr.Slider(64, 2048, value=size, step=8, label="Width", elem_id="txt2img_width")
                        self.height = gr.Slider(64, 2048, value=size, step=8, label="Height",
                                                elem_id="txt2img_height")
                    with gr.Column(scale=2):
                        self.batch_count = gr.Slider(1, 100, value=1, step=1, label="Batch count",
                                                     elem_id="txt2img_batch_count")
                        self.batch_size = gr.Slider(1, 8, value=1, step=1, label="Batch size",
                                                    elem_id="txt2img_batch_size")
                self.cfg_scale = gr.Slider(1, 30, value=7.0, step=0.5, label="CFG Scale", elem_id="txt2img_cfg_scale")
                with gr.Row(elem_id="txt2img_seed_row"):
                    self.seed = gr.Number(-1, label="Seed", precision=0, elem_id="txt2img_seed", scale=6)
                    self.random_seed = gr.Button("🎲", elem_id="txt2img_random_seed", scale=0, min_width=40)
                    self.reuse_seed = gr.Button("♻️", elem_id="txt2img_reuse_seed", scale=0, min_width=40)
            with gr.Column(elem_id="txt2img_results"):
                self.progress = gr.HTML("", elem_id="txt2img_progress")
                self.preview = gr.Image(label="Live preview", visible=False, interactive=False,
                                        elem_id="txt2img_preview", height=256)
                self.gallery = gr.Gallery(label="Output", format="png", columns=4, object_fit="contain",
                                          interactive=False, elem_id="txt2img_gallery", height=512)
                self.info = gr.HTML("", elem_id="html_info_txt2img")
        self.results = gr.State({"infotexts": [], "selected": 0})
        self.job_id = gr.State(None)

    @property
    def field_components(self) -> list[gr.components.Component]:
        return [getattr(self, attr) for _, attr in FIELDS]

    # --- events --------------------------------------------------------------------------------------------------
    def _wire(self) -> None:
        outputs = [self.gallery, self.info, self.progress, self.preview, self.results, self.job_id]
        self.generate.click(self.run, inputs=self.field_components, outputs=outputs, show_progress="hidden",
                            concurrency_limit=None)  # the job queue orders the work, not Gradio
        self.interrupt.click(self.on_interrupt, inputs=[self.job_id], outputs=None, queue=False)
        self.skip.click(self.on_skip, inputs=[self.job_id], outputs=None, queue=False)
        self.random_seed.click(lambda: -1, inputs=None, outputs=[self.seed], queue=False)
        self.reuse_seed.click(self.on_reuse_seed, inputs=[self.results], outputs=[self.seed], queue=False)
        self.sampler.change(self.on_sampler, inputs=[self.sampler, self.scheduler], outputs=[self.scheduler],
                            queue=False)
        self.gallery.select(self.on_select, inputs=[self.results], outputs=[self.info, self.results], queue=False)

    def request(self, prompt, negative, sampler, scheduler, steps, width, height, cfg_scale, seed, n_iter,
                batch_size) -> Txt2ImgRequest:
        return Txt2ImgRequest(prompt=prompt or "", negative_prompt=negative or "", sampler_name=sampler or None,
                              scheduler=scheduler or None, steps=steps, width=width, height=height,
                              cfg_scale=cfg_scale, seed=as_int(seed, -1), n_iter=n_iter, batch_size=batch_size)

    def run(self, *values):
        """Generator: queue the job, show its place in the queue, then progress and preview, then the images."""
        try:
            job = self.app.submit_txt2img(self.request(*values), from_api=False)
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
        out: dict[Any, Any] = {self.job_id: None, self.preview: gr.update(value=None, visible=False),
                               self.progress: ""}
        result = job.value if isinstance(job.value, GenerationResult) else None
        if result is None or not result.images:  # nothing to show: keep the previous images in the gallery
            if job.status == "cancelled":
                msg = "Cancelled before it started."
            elif job.status == "interrupted":
                msg = "Interrupted before any image was finished."
            elif job.error is not None:
                msg = error_message(job.error)
                gr.Warning(msg)
            else:
                msg = "No image was produced (every batch was skipped)."
            out[self.info] = error_html(msg)
            return out
        images = [with_infotext(img, text) for img, text in zip(result.images, result.infotexts)]
        first = int(result.info.get("index_of_first_image", 0) or 0) if len(images) > 1 else 0
        texts = list(result.infotexts)
        out[self.gallery] = gr.update(value=images, selected_index=None)
        out[self.results] = {"infotexts": texts, "selected": first}
        notes = [f"Interrupted: {len(texts) - first} image(s) finished."] if result.interrupted else []
        notes += list(result.warnings)
        shown = infotext_html(texts[first]) if texts else ""
        out[self.info] = "".join(error_html(n) for n in notes) + shown
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

    # --- "send to txt2img" ---------------------------------------------------------------------------------------
    def fill(self, fields: Mapping[str, Any]) -> list[Any]:
        """One update per `field_components` entry from A1111 request fields; fields not given stay as they are."""
        fields = dict(fields)
        sampler = canonical_sampler(fields.get("sampler_name"))
        fields["sampler_name"] = sampler
        if "scheduler" in fields:
            fields["scheduler"] = fields["scheduler"] if fields["scheduler"] in schedule_choices(sampler) else None
        updates = []
        for key, attr in FIELDS:
            value = fields.get(key)
            if value is None:
                updates.append(gr.update())
            elif key == "sampler_name":
                updates.append(gr.update(value=value, choices=samplers.sampler_names()))
            elif key == "scheduler":
                updates.append(gr.update(value=value, choices=schedule_choices(sampler)))
            else:
                updates.append(value)
        return updates

