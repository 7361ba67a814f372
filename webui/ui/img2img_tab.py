"""The img2img tab, with A1111's sub-tabs: img2img, Sketch, Inpaint, Inpaint sketch, Inpaint upload and Batch.

Gradio 6's ImageEditor gives {"background", "layers", "composite"}. Sketch uses the composite as the init image.
Inpaint uses the background as the init image and the alpha of layers[0] as the mask. Inpaint sketch uses the
composite as the init image and the strokes (the alpha of every layer) as the mask (editor_inputs.py). The work is
the service's: `Application.submit_img2img` and `submit_img2img_batch`."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import gradio as gr
from PIL import Image

from webui.errors import InvalidRequest
from webui.generation.images import RESIZE_MODES
from webui.generation.img2img import MASKED_CONTENT
from webui.generation.requests import Img2ImgRequest
from webui.ui.common import COMMON_FIELDS, GenerationTab
from webui.ui.editor_brush import BLANK_SIZE, make_brush, sized_update
from webui.ui.editor_inputs import (
    MODES,
    TAB_LABELS,
    editor_inputs,
    editor_mask,
    flatten,
    init_and_mask,
    layer_alpha,
    mask_image,
    scaled_size,
)
from webui.ui.page_value import PageValue
from webui.ui.scripts_ui import build_scripts_ui

if TYPE_CHECKING:
    from webui.app import Application

# the editors' pure functions, where tests and callers have imported them from
__all__ = [
    "MODES",
    "TAB_LABELS",
    "Img2ImgTab",
    "editor_inputs",
    "editor_mask",
    "flatten",
    "init_and_mask",
    "layer_alpha",
    "mask_image",
    "scaled_size",
]

MASK_MODES = ("Inpaint masked", "Inpaint not masked")
INPAINT_AREAS = ("Whole picture", "Only masked")
INPAINT_MODES = ("inpaint", "inpaint_sketch", "inpaint_upload", "batch")
TAB_IDS = (
    "img2img_img2img_tab",
    "img2img_img2img_sketch_tab",
    "img2img_inpaint_tab",
    "img2img_inpaint_sketch_tab",
    "img2img_inpaint_upload_tab",
    "img2img_batch_tab",
)
EDITOR_IDS = {"sketch": "img2img_sketch", "inpaint_sketch": "inpaint_sketch"}
BRUSH_KINDS = {"sketch": "paint", "inpaint": "mask", "inpaint_sketch": "paint"}  # editor attribute → its brush
# Gradio's editor shows "Upload an image or select the draw tool to start" until a tool is picked: on an empty
# Sketch canvas pick the brush (once per page), so the user can draw at once, as on A1111's sketch canvas
# (polled: on a slow machine the editor's toolbar renders well after the tab switch, and one late look missed it)
PICK_BRUSH_JS = """() => { let tries = 0; const pick = () => {
  const root = document.getElementById('%s');
  if (!root || root.dataset.easelBrushPicked) return;
  const brush = root.querySelector('button[aria-label="Brush"]');
  if (brush) { root.dataset.easelBrushPicked = '1'; brush.click(); }
  else if (++tries < 200) setTimeout(pick, 150);
}; setTimeout(pick, 150); }"""
FIELDS = COMMON_FIELDS + (
    ("denoising_strength", "denoising"),
    ("resize_mode", "resize_mode"),
    ("mask_blur", "mask_blur"),
    ("inpainting_mask_invert", "mask_mode"),
    ("inpainting_fill", "masked_content"),
    ("inpaint_full_res", "inpaint_area"),
    ("inpaint_full_res_padding", "padding"),
)


class Img2ImgTab(GenerationTab):
    tabname = "img2img"
    job_kinds = ("img2img", "img2img-batch")
    FIELDS = FIELDS
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "resize_mode": RESIZE_MODES,
        "inpainting_mask_invert": MASK_MODES,
        "inpainting_fill": MASKED_CONTENT,
        "inpaint_full_res": INPAINT_AREAS,
    }

    def __init__(self, application: Application):
        super().__init__(application)
        self._build()
        self._wire()

    def _editor(self, label: str, elem_id: str, brush: gr.Brush, layers: Any = True) -> gr.ImageEditor:
        # a blank sketch canvas is 512×512; an uploaded picture gets a brush sized from it (editor_brush, _wire)
        return gr.ImageEditor(
            label=label,
            type="pil",
            format="png",
            image_mode="RGBA",
            elem_id=elem_id,
            sources=["upload", "clipboard"],
            brush=brush,
            eraser=gr.Eraser(default_size=BLANK_SIZE),
            layers=layers,
            transforms=(),
            height=480,
            canvas_size=(512, 512),
        )

    def _build(self) -> None:
        self.build_toprow()
        with gr.Row(equal_height=False):
            with gr.Column(elem_id="img2img_settings"):
                self._build_inputs()
                self.resize_mode = gr.Radio(
                    list(RESIZE_MODES), value=RESIZE_MODES[0], label="Resize mode", elem_id="resize_mode"
                )
                with gr.Group(visible=False, elem_id="img2img_inpaint_controls") as self.inpaint_controls:
                    self.mask_blur = gr.Slider(0, 64, value=4, step=1, label="Mask blur", elem_id="img2img_mask_blur")
                    self.mask_mode = gr.Radio(
                        list(MASK_MODES), value=MASK_MODES[0], label="Mask mode", elem_id="img2img_mask_mode"
                    )
                    self.masked_content = gr.Radio(
                        list(MASKED_CONTENT),
                        value="original",
                        label="Masked content",
                        elem_id="img2img_inpainting_fill",
                    )
                    with gr.Row():
                        self.inpaint_area = gr.Radio(
                            list(INPAINT_AREAS),
                            value=INPAINT_AREAS[0],
                            label="Inpaint area",
                            elem_id="img2img_inpaint_full_res",
                        )
                        self.padding = gr.Slider(
                            0,
                            256,
                            value=32,
                            step=4,
                            label="Only masked padding, pixels",
                            elem_id="img2img_inpaint_full_res_padding",
                        )
                self.build_sampling()
                with gr.Row():
                    with gr.Column(scale=3), gr.Tabs(elem_id="img2img_dimensions_row"):
                        with gr.Tab("Resize to", id="to", elem_id="img2img_tab_resize_to") as self.to_tab:
                            self.build_size()
                        with gr.Tab("Resize by", id="by", elem_id="img2img_tab_resize_by") as self.by_tab:
                            self.scale = gr.Slider(
                                0.05, 4, value=1.0, step=0.05, label="Scale", elem_id="img2img_scale"
                            )
                    with gr.Column(scale=2):
                        self.build_batch()
                self.build_cfg()
                self.denoising = gr.Slider(
                    0, 1, value=0.75, step=0.01, label="Denoising strength", elem_id="img2img_denoising_strength"
                )
                self.build_seed()
                self.scripts = build_scripts_ui(self.app, "img2img")
            with gr.Column(elem_id="img2img_results"):
                self.build_results()
        self.mode = PageValue("img2img")
        self.resize_by = PageValue(False)

    def _build_inputs(self) -> None:
        with gr.Tabs(elem_id="mode_img2img") as self.mode_tabs:
            self.mode_tab_list = []
            for mode, label, elem_id in zip(MODES, TAB_LABELS, TAB_IDS):
                with gr.Tab(label, id=mode, elem_id=elem_id) as tab:
                    self.mode_tab_list.append(tab)
                    getattr(self, f"_build_{mode}")()

    def _build_img2img(self) -> None:
        self.init_image = gr.Image(
            label="Image for img2img",
            type="pil",
            format="png",
            image_mode="RGB",
            sources=["upload", "clipboard"],
            elem_id="img2img_image",
            height=480,
        )
        with gr.Row():
            self.interrogate_clip = gr.Button("Interrogate CLIP", elem_id="interrogate", size="sm")

    def _build_sketch(self) -> None:
        self.sketch = self._editor("Sketch", "img2img_sketch", make_brush("paint"))

    def _build_inpaint(self) -> None:
        # the mask is painted half-transparent, so the picture shows through (any alpha > 0 is masked: editor_mask)
        self.inpaint = self._editor(
            "Image for inpainting with mask",
            "img2maskimg",
            make_brush("mask"),
            gr.LayerOptions(allow_additional_layers=False, layers=["Mask"]),
        )

    def _build_inpaint_sketch(self) -> None:
        self.inpaint_sketch = self._editor("Color sketch inpainting", "inpaint_sketch", make_brush("paint"))

    def _build_inpaint_upload(self) -> None:
        self.upload_base = gr.Image(
            label="Image",
            type="pil",
            format="png",
            image_mode="RGB",
            sources=["upload", "clipboard"],
            elem_id="img_inpaint_base",
            height=320,
        )
        self.upload_mask = gr.Image(
            label="Mask (white: repaint)",
            type="pil",
            format="png",
            image_mode=None,
            sources=["upload", "clipboard"],
            elem_id="img_inpaint_mask",
            height=320,
        )

    def _build_batch(self) -> None:
        gr.Markdown(
            "Process every image in a folder on the server. Results go to the output folder; with a mask "
            "folder, each image is inpainted with the mask of the same name."
        )
        self.batch_input = gr.Textbox(label="Input directory", elem_id="img2img_batch_input_dir")
        self.batch_output = gr.Textbox(label="Output directory", elem_id="img2img_batch_output_dir")
        self.batch_masks = gr.Textbox(
            label="Inpaint batch mask directory (optional)", elem_id="img2img_batch_inpaint_mask_dir"
        )

    @property
    def inputs(self) -> list:
        """Generate's inputs: the fields, then the sub-tab and what each sub-tab holds."""
        return [
            *self.field_components,
            self.mode,
            self.init_image,
            self.sketch,
            self.inpaint,
            self.inpaint_sketch,
            self.upload_base,
            self.upload_mask,
            self.batch_input,
            self.batch_output,
            self.batch_masks,
            self.resize_by,
            self.scale,
            *self.scripts.components,
        ]

    def _wire(self) -> None:
        self.wire_common(self.inputs)
        for mode, tab in zip(MODES, self.mode_tab_list):
            tab.select(
                partial(self.on_mode, mode), inputs=None, outputs=[self.mode, self.inpaint_controls], queue=False
            )
            if mode in ("sketch", "inpaint_sketch"):  # a blank canvas is ready to draw on: the brush is picked
                tab.select(None, js=PICK_BRUSH_JS % EDITOR_IDS[mode])
        for attr, kind in BRUSH_KINDS.items():  # a picture dropped in: brush and eraser sized from it
            editor = getattr(self, attr)
            editor.upload(
                partial(sized_update, kind),
                inputs=[editor],
                outputs=[editor],
                queue=False,
                show_progress="hidden",
                api_visibility="private",
            )
        self.to_tab.select(lambda: False, inputs=None, outputs=[self.resize_by], queue=False)
        self.interrogate_clip.click(
            self.on_interrogate, inputs=[self.init_image, self.prompt], outputs=[self.prompt], concurrency_limit=None
        )  # the job queue orders the work
        self.by_tab.select(lambda: True, inputs=None, outputs=[self.resize_by], queue=False)

    def on_interrogate(self, image: Image.Image | None, prompt: str) -> str:
        """A1111's "Interrogate CLIP": the prompt becomes the interrogator's caption of the img2img image; on an
        error (no image, no CLIP model in models/interrogate) the prompt is kept and the message shown."""
        from webui.ui.messages import error_message

        try:
            if image is None:
                raise InvalidRequest("put an image in img2img first")
            return self.app.interrogate(image, "clip")
        except Exception as e:  # shown, and the page keeps working
            gr.Warning(error_message(e))
            return prompt

    @staticmethod
    def on_mode(mode: str):
        return mode, gr.update(visible=mode in INPAINT_MODES)

    def select_mode(self, mode: str) -> dict:
        """Updates that switch to a sub-tab (for "Send to img2img / inpaint")."""
        return {
            self.mode: mode,
            self.mode_tabs: gr.Tabs(selected=mode),
            self.inpaint_controls: gr.update(visible=mode in INPAINT_MODES),
        }

    def run(self, *values):
        """Generator (Generate's handler): queue the job, then follow it until the images are shown."""
        yield from self.follow_job(lambda: self.submit_values(*values))

    def submit_values(self, *values):
        """Build the request from the components' values and submit it; runs inside follow_job, so a bad field or
        a script's combine() that raises is shown as that error, like any other refused request."""
        n, k = len(self.FIELDS), len(self.scripts.components)
        base = len(self.inputs) - k  # fields + the sub-tab inputs; the script components (if given) come last
        fields = self.request_fields(values[:n])
        if k and len(values) >= base + k:
            fields["script_name"], fields["script_args"], fields["alwayson_scripts"] = self.scripts.request_fields(
                *values[base : base + k]
            )
            values = values[:base]
        return self.submit(fields, *values[n:])

    def submit(
        self,
        fields: dict,
        mode,
        image,
        sketch,
        inpaint,
        inpaint_sketch,
        base,
        mask,
        batch_input,
        batch_output,
        batch_masks,
        resize_by=False,
        scale=1.0,
    ):
        if mode == "batch":
            return self.app.submit_img2img_batch(
                Img2ImgRequest(**fields),
                input_dir=(batch_input or "").strip(),
                output_dir=(batch_output or "").strip(),
                mask_dir=(batch_masks or "").strip() or None,
                scale=float(scale) if resize_by else None,
            )
        init, mask_im = init_and_mask(mode, image, sketch, inpaint, inpaint_sketch, base, mask)
        if resize_by:
            fields["width"], fields["height"] = scaled_size(init.size, scale)
        return self.app.submit_img2img(Img2ImgRequest(**fields), from_api=False, images=[init], mask=mask_im)
