"""The txt2img tab: A1111's layout and elem_ids, with the "Hires. fix" accordion. Submits to the job queue and
follows the job until it ends (the shared machinery is `GenerationTab` in common.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.errors import EaselError
from webui.generation.hires import hires_size
from webui.generation.requests import SAME_CHECKPOINT, SAME_SAMPLER, SAME_SCHEDULER, Txt2ImgRequest
from webui.generation.upscalers import LATENT_MODES, list_upscalers
from webui.models import samplers
from webui.ui.common import COMMON_FIELDS, GenerationTab, as_int, canonical_sampler
from webui.ui.generation_fields import slg_shown
from webui.ui.scripts_ui import build_scripts_ui

if TYPE_CHECKING:
    from webui.app import Application

HIRES_FIELDS: tuple[tuple[str, str], ...] = (
    ("enable_hr", "enable_hr"),
    ("hr_upscaler", "hr_upscaler"),
    ("hr_second_pass_steps", "hr_steps"),
    ("denoising_strength", "hr_denoising"),
    ("hr_scale", "hr_scale"),
    ("hr_resize_x", "hr_resize_x"),
    ("hr_resize_y", "hr_resize_y"),
    ("hr_checkpoint_name", "hr_checkpoint"),
    ("hr_sampler_name", "hr_sampler"),
    ("hr_scheduler", "hr_scheduler"),
    ("hr_prompt", "hr_prompt"),
    ("hr_negative_prompt", "hr_negative"),
)
# SD 3/3.5 skip-layer guidance (generation/slg.py): txt2img only, as diffusers' SD 3 img2img/inpaint lack it
SLG_FIELDS: tuple[tuple[str, str], ...] = tuple(
    (name, name) for name in ("slg_scale", "slg_layers", "slg_start", "slg_end")
)
FIELDS = COMMON_FIELDS + HIRES_FIELDS + SLG_FIELDS


def upscaler_choices(models_dir) -> list[tuple[str, str]]:
    """(label, value) for the hires upscaler: the latent modes, then the pixel upscalers and model files. A model
    file that can't be used is listed with its reason; choosing it gives that reason as the error."""
    out = [(name, name) for name in LATENT_MODES]
    for u in list_upscalers(models_dir):
        out.append((f"{u.name} (unavailable: {u.error})" if u.error else u.name, u.name))
    return out


def all_schedule_labels() -> list[str]:
    return [s["label"] for s in samplers.api_schedulers()]


def hires_text(width, height, scale, resize_x, resize_y) -> str:
    """A1111's line in the Hires. fix panel: "from 512×512 to 1024×1024" (the service's own size rule)."""
    try:
        w, h = int(width), int(height)
        if w <= 0 or h <= 0:
            return ""
        tw, th = hires_size(w, h, float(scale), int(resize_x or 0), int(resize_y or 0))
    except (TypeError, ValueError, ZeroDivisionError, EaselError):
        return ""
    return f'<span class="easel-hr-size">from {w}×{h} to {tw}×{th}</span>'


class Txt2ImgTab(GenerationTab):
    tabname = "txt2img"
    job_kinds = ("txt2img",)
    FIELDS = FIELDS

    def __init__(self, application: Application):
        super().__init__(application)
        self._build()
        self._wire()

    def _build(self) -> None:
        self.build_toprow()
        with gr.Row(equal_height=False):
            with gr.Column(elem_id="txt2img_settings"):
                self.build_sampling()
                with gr.Row():
                    with gr.Column(scale=3):
                        self.build_size()
                    with gr.Column(scale=2):
                        self.build_batch()
                self.build_cfg()
                self.build_slg()
                self.build_seed()
                self.build_hires()
                self.scripts = build_scripts_ui(self.app, "txt2img")
            with gr.Column(elem_id="txt2img_results"):
                self.build_results()

    def build_slg(self) -> None:
        """Skip-layer guidance, shown only while an SD 3/3.5 checkpoint is active (as Distilled CFG is for FLUX)."""
        with gr.Accordion(
            "Skip layer guidance (SD 3.5)", open=False, elem_id="txt2img_slg", visible=slg_shown(self.app)
        ) as self.slg_panel:
            with gr.Row():
                self.slg_scale = gr.Slider(
                    0, 10, value=0, step=0.1, label="SLG scale (0: off)", elem_id="txt2img_slg_scale"
                )
                self.slg_layers = gr.Textbox(
                    "7, 8, 9", label="SLG layers", elem_id="txt2img_slg_layers", placeholder="7, 8, 9 (SD 3.5 Medium)"
                )
            with gr.Row():
                self.slg_start = gr.Slider(0, 1, value=0.01, step=0.01, label="SLG start", elem_id="txt2img_slg_start")
                self.slg_end = gr.Slider(0, 1, value=0.2, step=0.01, label="SLG end", elem_id="txt2img_slg_end")

    def build_hires(self) -> None:
        from webui.ui.quicksettings import checkpoint_titles

        # Gradio 6's Accordion takes no component in its header: the Enable checkbox is placed over the header's
        # right end by CSS (.easel-header-toggle), as A1111's InputAccordion shows it, and works without opening it;
        # a click on it (or Space on it) only sets it, the accordion stays as it is (A1111 stops that click too)
        with gr.Column(elem_id="txt2img_hr_wrap", elem_classes=["easel-toggle-wrap"]):
            self.enable_hr = gr.Checkbox(
                False,
                label="Enable",
                elem_id="txt2img_enable_hr",
                container=False,
                elem_classes=["easel-header-toggle"],
            )
            with gr.Accordion("Hires. fix", open=False, elem_id="txt2img_hr") as self.hr_accordion:
                self.hr_size = gr.HTML(
                    hires_text(self.width.value, self.height.value, 2.0, 0, 0), elem_id="txtimg_hr_finalres"
                )
                self.build_hires_fields(checkpoint_titles)

    def build_hires_fields(self, checkpoint_titles) -> None:
        with gr.Row():
            self.hr_upscaler = gr.Dropdown(
                upscaler_choices(self.app.paths.models_dir),
                value="Latent",
                label="Upscaler",
                elem_id="txt2img_hr_upscaler",
                allow_custom_value=True,
            )  # an unknown name gets the service's error
            self.hr_steps = gr.Slider(0, 150, value=0, step=1, label="Hires steps", elem_id="txt2img_hires_steps")
            self.hr_denoising = gr.Slider(
                0, 1, value=0.7, step=0.01, label="Denoising strength", elem_id="txt2img_denoising_strength"
            )
        with gr.Row():
            self.hr_scale = gr.Slider(1, 4, value=2.0, step=0.05, label="Upscale by", elem_id="txt2img_hr_scale")
            self.hr_resize_x = gr.Slider(
                0, 2048, value=0, step=8, label="Resize width to", elem_id="txt2img_hr_resize_x"
            )
            self.hr_resize_y = gr.Slider(
                0, 2048, value=0, step=8, label="Resize height to", elem_id="txt2img_hr_resize_y"
            )
        with gr.Row():
            self.hr_checkpoint = gr.Dropdown(
                [SAME_CHECKPOINT, *checkpoint_titles(self.app)],
                value=SAME_CHECKPOINT,
                label="Hires checkpoint",
                elem_id="hr_checkpoint",
            )
            self.hr_sampler = gr.Dropdown(
                [SAME_SAMPLER, *samplers.sampler_names()],
                value=SAME_SAMPLER,
                label="Hires sampling method",
                elem_id="hr_sampler",
            )
            self.hr_scheduler = gr.Dropdown(
                [SAME_SCHEDULER, *all_schedule_labels()],
                value=SAME_SCHEDULER,
                label="Hires schedule type",
                elem_id="hr_scheduler",
            )
        with gr.Row():
            self.hr_prompt = gr.Textbox(
                label="Hires prompt",
                lines=2,
                elem_id="hires_prompt",
                placeholder="Prompt for hires fix pass (empty: the same prompt)",
            )
            self.hr_negative = gr.Textbox(
                label="Hires negative prompt",
                lines=2,
                elem_id="hires_neg_prompt",
                placeholder="Negative prompt for hires fix pass (empty: the same)",
            )

    def _wire(self) -> None:
        self.wire_common([*self.field_components, *self.scripts.components])
        sizes = [self.width, self.height, self.hr_scale, self.hr_resize_x, self.hr_resize_y]
        for component in sizes:
            component.change(
                hires_text,
                inputs=sizes,
                outputs=[self.hr_size],
                queue=False,
                show_progress="hidden",
                api_visibility="private",
            )

    def request(self, *values) -> Txt2ImgRequest:
        n = len(self.FIELDS)
        fields = self.request_fields(values[:n])
        if len(values) > n:  # the Script dropdown and always-on scripts, by name
            fields["script_name"], fields["script_args"], fields["alwayson_scripts"] = self.scripts.request_fields(
                *values[n:]
            )
        for key in ("hr_second_pass_steps", "hr_resize_x", "hr_resize_y"):
            if key in fields:
                fields[key] = as_int(fields[key], 0)
        fields["hr_upscaler"] = fields.get("hr_upscaler") or None
        fields["hr_prompt"], fields["hr_negative_prompt"] = (
            fields.get("hr_prompt") or "",
            fields.get("hr_negative_prompt") or "",
        )
        if not fields.get("enable_hr"):
            fields["denoising_strength"] = None  # only the hires pass uses it; keep it out of a plain infotext
        if not slg_shown(self.app):  # hidden for other families: their requests leave SLG at its defaults (off)
            for name, _ in SLG_FIELDS:
                fields.pop(name, None)
        return Txt2ImgRequest(**fields)

    def run(self, *values):
        """Generator: queue the job, then follow it until the images are shown."""
        yield from self.follow_job(lambda: self.submit_values(*values))

    def submit_values(self, *values):
        return self.app.submit_txt2img(self.request(*values), from_api=False)

    def fill_update(self, key: str, value: Any, sampler: str | None) -> Any:
        if key == "hr_sampler_name":
            return canonical_sampler(value) or SAME_SAMPLER
        if key == "hr_scheduler":
            return value if value in all_schedule_labels() else SAME_SCHEDULER
        if key == "hr_checkpoint_name":
            return self.checkpoint_title(value) or SAME_CHECKPOINT
        if key == "slg_layers" and isinstance(value, (list, tuple)):
            return ", ".join(map(str, value))
        return super().fill_update(key, value, sampler)

    def checkpoint_title(self, query: str | None) -> str | None:
        if not query or query == SAME_CHECKPOINT:
            return None
        try:
            return self.app.catalog.find(query).title
        except EaselError:  # not a known checkpoint: the dropdown keeps "Use same checkpoint"
            return None
