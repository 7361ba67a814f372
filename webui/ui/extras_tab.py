"""The Extras tab (A1111's postprocessing): upscale a single image, a batch of uploads, or a folder, by a scale or
to a size, with upscaler 1 and a blended upscaler 2. The work is `Application.extras`, which saves to
outputs/extras-images; "Batch from Directory" also writes the results into the chosen output folder."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr
from PIL import Image, UnidentifiedImageError

from webui.errors import InvalidRequest
from webui.generation.extras import ExtrasRequest
from webui.generation.upscalers import list_upscalers
from webui.infotext import pnginfo_for, read_image_infotext
from webui.outputs import open_user_image
from webui.ui.common import error_html, error_message, infotext_html
from webui.ui.gallery_buttons import GalleryButtons
from webui.ui.page_value import PageValue

if TYPE_CHECKING:
    from webui.app import Application

MODES = ("single", "batch", "directory")


def upscaler_choices(models_dir) -> list[tuple[str, str]]:
    """(label, value) pairs; a model file that can't be used is listed with its reason (choosing it is an error)."""
    return [(f"{u.name} (unavailable: {u.error})" if u.error else u.name, u.name) for u in list_upscalers(models_dir)]


def open_image(path: str | Path) -> Image.Image:
    """An uploaded or folder image as RGB, keeping its text chunks (so its infotext travels with the result)."""
    try:
        with open_user_image(path) as im:
            im.load()
            out = im.convert("RGB")
            out.info = dict(im.info)
            return out
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise InvalidRequest(f"{Path(path).name}: not a readable image ({e})") from None


def collect_images(mode: str, image, files, input_dir: str | None) -> list[tuple[Image.Image, str]]:
    """(image, name) pairs for the selected sub-tab."""
    if mode == "single":
        if image is None:
            raise InvalidRequest("Extras needs an image: upload one in Single Image")
        return [(image, "image")]
    if mode == "batch":
        paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in (files or [])]
        if not paths:
            raise InvalidRequest("Batch Process needs images: upload one or more")
        return [(open_image(p), Path(p).stem) for p in paths]
    from webui.generation.batch import list_images

    folder = Path((input_dir or "").strip()).expanduser()
    if not input_dir or not folder.is_dir():
        raise InvalidRequest(f"input folder not found: {input_dir or '(empty)'}")
    files_in = list_images(folder)
    if not files_in:
        raise InvalidRequest(f"no images in the input folder {input_dir}")
    return [(open_image(p), p.stem) for p in files_in]


def selected_of(evt: gr.SelectData) -> dict:
    return {"selected": evt.index if isinstance(evt.index, int) else 0}


def tagged(out: Image.Image, source: Image.Image, text: str) -> Image.Image:
    """The result carrying the input's infotext and the postprocessing text, for the gallery's PNG."""
    original = read_image_infotext(source)
    out.info = {**({"parameters": original} if original else {}), **({"postprocessing": text} if text else {})}
    return out


def save_to_folder(
    images: list[Image.Image], sources: list[tuple[Image.Image, str]], texts: list[str], output_dir: str
) -> list[str]:
    """Write each result as <name>.png with the input's infotext and the postprocessing chunk."""
    from webui.fsutil import atomic_path

    folder = Path(output_dir).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for out, (src, name), text in zip(images, sources, texts):
        target = folder / f"{name}.png"
        with atomic_path(target) as tmp:
            out.save(
                tmp,
                format="PNG",
                pnginfo=pnginfo_for(read_image_infotext(src), {"postprocessing": text} if text else None),
            )
        written.append(str(target))
    return written


class ExtrasTab:
    def __init__(self, application: Application):
        self.app = application
        models_dir = application.paths.models_dir
        with gr.Row(equal_height=False):
            with gr.Column(elem_id="extras_settings"):
                with gr.Tabs(elem_id="mode_extras") as self.tabs:
                    with gr.Tab("Single Image", id="single", elem_id="extras_single_tab") as single:
                        self.image = gr.Image(
                            label="Source",
                            type="pil",
                            format="png",
                            image_mode="RGB",
                            sources=["upload", "clipboard"],
                            elem_id="extras_image",
                            height=360,
                        )
                    with gr.Tab("Batch Process", id="batch", elem_id="extras_batch_process_tab") as batch:
                        self.files = gr.File(
                            label="Batch Process",
                            file_count="multiple",
                            file_types=["image"],
                            elem_id="extras_image_batch",
                        )
                    with gr.Tab("Batch from Directory", id="directory", elem_id="extras_batch_directory_tab") as d:
                        self.input_dir = gr.Textbox(label="Input directory", elem_id="extras_batch_input_dir")
                        self.output_dir = gr.Textbox(
                            label="Output directory (empty: outputs/extras-images only)",
                            elem_id="extras_batch_output_dir",
                        )
                        self.show_results = gr.Checkbox(
                            True, label="Show result images", elem_id="extras_show_extras_results"
                        )
                self.submit = gr.Button("Generate", variant="primary", elem_id="extras_generate")
                with gr.Tabs(elem_id="extras_resize_mode"):
                    with gr.Tab("Scale by", id="by", elem_id="extras_scale_by_tab") as by:
                        self.scale = gr.Slider(
                            1, 8, value=2, step=0.05, label="Resize", elem_id="extras_upscaling_resize"
                        )
                    with gr.Tab("Scale to", id="to", elem_id="extras_scale_to_tab") as to:
                        with gr.Row():
                            self.width = gr.Slider(
                                64, 8192, value=512, step=8, label="Width", elem_id="extras_upscaling_resize_w"
                            )
                            self.height = gr.Slider(
                                64, 8192, value=512, step=8, label="Height", elem_id="extras_upscaling_resize_h"
                            )
                        self.crop = gr.Checkbox(True, label="Crop to fit", elem_id="extras_upscaling_crop")
                choices = upscaler_choices(models_dir)
                default = "Lanczos" if any(v == "Lanczos" for _, v in choices) else "None"
                with gr.Row():
                    self.upscaler_1 = gr.Dropdown(
                        choices, value=default, label="Upscaler 1", elem_id="extras_upscaler_1"
                    )
                    self.upscaler_2 = gr.Dropdown(
                        choices, value="None", label="Upscaler 2", elem_id="extras_upscaler_2"
                    )
                self.visibility = gr.Slider(
                    0, 1, value=0, step=0.001, label="Upscaler 2 visibility", elem_id="extras_upscaler_2_visibility"
                )
                with gr.Accordion(
                    "Restore faces (faces found by the face detector in models/adetailer)",
                    open=False,
                    elem_id="extras_face_restoration",
                ):
                    self.gfpgan = gr.Slider(
                        0, 1, value=0, step=0.001, label="GFPGAN visibility", elem_id="extras_gfpgan_visibility"
                    )
                    with gr.Row():
                        self.codeformer = gr.Slider(
                            0,
                            1,
                            value=0,
                            step=0.001,
                            label="CodeFormer visibility",
                            elem_id="extras_codeformer_visibility",
                        )
                        self.codeformer_weight = gr.Slider(
                            0,
                            1,
                            value=0,
                            step=0.001,
                            label="CodeFormer weight (0 = maximum effect, 1 = minimum effect)",
                            elem_id="extras_codeformer_weight",
                        )
            with gr.Column(elem_id="extras_results"):
                self.gallery = gr.Gallery(
                    label="Output",
                    format="png",
                    columns=4,
                    object_fit="contain",
                    interactive=False,
                    elem_id="extras_gallery",
                    height=512,
                )
                # Save, Zip, 📂 and Send to img2img / inpaint, as under the generation tabs' galleries
                self.buttons = GalleryButtons(self.app, "extras", "extras", ("img2img", "inpaint"))
                self.send = self.buttons.send
                self.info = gr.HTML("", elem_id="html_info_extras")
        self.results = PageValue({"selected": 0})  # the gallery's selected image, for Save and Send to
        self.gallery.select(selected_of, inputs=None, outputs=[self.results], queue=False)
        self.gallery.change(lambda: {"selected": 0}, inputs=None, outputs=[self.results], queue=False)
        self.buttons.wire(self.gallery, self.results)
        self.mode = PageValue("single")
        self.scale_to = PageValue(False)
        for mode, tab in zip(MODES, (single, batch, d)):
            tab.select(lambda m=mode: m, inputs=None, outputs=[self.mode], queue=False)
        by.select(lambda: False, inputs=None, outputs=[self.scale_to], queue=False)
        to.select(lambda: True, inputs=None, outputs=[self.scale_to], queue=False)
        self.submit.click(
            self.run, inputs=self.inputs, outputs=[self.gallery, self.info], concurrency_limit=None
        )  # the job queue orders the work

    @property
    def inputs(self) -> list:
        return [
            self.mode,
            self.image,
            self.files,
            self.input_dir,
            self.output_dir,
            self.show_results,
            self.scale_to,
            self.scale,
            self.width,
            self.height,
            self.crop,
            self.upscaler_1,
            self.upscaler_2,
            self.visibility,
            self.gfpgan,
            self.codeformer,
            self.codeformer_weight,
        ]

    def request(
        self,
        scale_to,
        scale,
        width,
        height,
        crop,
        upscaler_1,
        upscaler_2,
        visibility,
        gfpgan=0,
        codeformer=0,
        codeformer_weight=0,
    ) -> ExtrasRequest:
        return ExtrasRequest(
            resize_mode=1 if scale_to else 0,
            upscaling_resize=scale,
            upscaling_resize_w=int(width),
            upscaling_resize_h=int(height),
            upscaling_crop=bool(crop),
            upscaler_1=upscaler_1 or "None",
            upscaler_2=upscaler_2 or "None",
            extras_upscaler_2_visibility=visibility,
            gfpgan_visibility=gfpgan or 0,
            codeformer_visibility=codeformer or 0,
            codeformer_weight=codeformer_weight or 0,
        )

    def run(self, mode, image, files, input_dir, output_dir, show_results, *settings):
        try:
            req = self.request(*settings)
            if mode == "directory":  # when exposed, only folders inside the data/models dir (pathguard)
                from webui.pathguard import user_path

                input_dir = str(user_path(self.app, input_dir, what="input folder")) if input_dir else input_dir
                output_dir = (
                    str(user_path(self.app, output_dir.strip(), what="output folder"))
                    if (output_dir or "").strip()
                    else output_dir
                )
            sources = collect_images(mode, image, files, input_dir)
            images, texts, paths = self.app.extras(req, sources)
            if mode == "directory" and (output_dir or "").strip():
                paths = save_to_folder(images, sources, texts, output_dir.strip())
        except Exception as e:  # validation, unusable upscaler, pixel limit: visible, and the UI keeps working
            msg = error_message(e)
            gr.Warning(msg)
            return gr.update(), error_html(msg)
        shown = [tagged(out, src, text) for out, (src, _), text in zip(images, sources, texts)]
        shown = shown if (mode != "directory" or show_results) else []
        lines = [f"{len(images)} image(s) processed."] + [t for t in texts[:1] if t]
        saved = "".join(f"<li>{html.escape(p)}</li>" for p in paths[:20])
        return shown, infotext_html("\n".join(lines)) + (f"<ul>{saved}</ul>" if saved else "")
