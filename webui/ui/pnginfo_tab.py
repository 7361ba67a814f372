"""The PNG Info tab: read the generation parameters stored in an image (or pasted) and send them to other tabs."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import gradio as gr
from PIL import Image, UnidentifiedImageError

from webui.infotext import infotext_to_request_fields, parse_infotext, read_image_infotext
from webui.outputs import open_user_image
from webui.ui.common import as_int, error_html
from webui.ui.models_tab import attach_missing_models

if TYPE_CHECKING:
    from webui.app import Application

HIDDEN_KEYS = ("Prompt", "Negative prompt")


def read_infotext(path: str | None) -> tuple[str, list[list[str]], str]:
    """(raw infotext, [[field, value], …], message html) for an image file. The pixels are never decoded:
    the text chunks and EXIF are read from the file as it was uploaded."""
    if not path:
        return "", [], ""
    try:
        with open_user_image(path) as im:
            text = read_image_infotext(im) or ""
            others = {
                k: v for k, v in (im.info or {}).items() if k != "parameters" and isinstance(v, str) and v.strip()
            }
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        return "", [], error_html(f"Cannot read this file as an image: {e}")
    if not text:
        extra = "".join(f"<p><b>{html.escape(k)}</b>: {html.escape(v[:2000])}</p>" for k, v in others.items())
        return "", [], error_html("No generation parameters found in this image.") + extra
    return text, table_rows(text), ""


def table_rows(text: str | None) -> list[list[str]]:
    """[[field, value], …] for an infotext: the prompts first, then each parameter as written."""
    if not text or not text.strip():
        return []
    parsed = parse_infotext(text)
    rows = [[k, str(parsed.get(k, ""))] for k in HIDDEN_KEYS]
    return rows + [[k, str(v)] for k, v in parsed.items() if k not in HIDDEN_KEYS and not _derived(k, parsed)]


def _derived(key: str, parsed: dict) -> bool:
    """The parser adds "Size-1"/"Size-2" next to "Size: 512x768"; the table shows only the original."""
    return key[-2:] in ("-1", "-2") and key[:-2] in parsed


def request_fields(text: str | None) -> dict:
    """A1111 txt2img fields from an infotext (what "Send to txt2img" fills)."""
    if not text:
        return {}
    parsed = parse_infotext(text)
    fields = infotext_to_request_fields(parsed)
    if "Batch size" in parsed:
        fields["batch_size"] = as_int(parsed["Batch size"], 1)
    return fields


class PngInfoTab:
    """Drop an image (PNG `parameters`, JPEG/WEBP EXIF UserComment) or paste an infotext into Parameters. The Send-to
    buttons are wired by `webui.ui.sendto.SendTo` once every tab exists."""

    def __init__(self, application: Application):
        self.app = application
        with gr.Row(equal_height=False):
            with gr.Column():
                self.image = gr.Image(
                    label="Source",
                    type="filepath",
                    image_mode=None,
                    sources=["upload", "clipboard"],
                    elem_id="pnginfo_image",
                    height=420,
                )
            with gr.Column():
                self.message = gr.HTML("", elem_id="pnginfo_message")
                self.raw = gr.Textbox(
                    label="Parameters",
                    lines=6,
                    interactive=True,
                    elem_id="pnginfo_generation_info",
                    placeholder="Drop an image, or paste generation parameters here",
                )
                with gr.Row(elem_id="pnginfo_send_buttons"):
                    self.send = {
                        target: gr.Button(f"Send to {target}", elem_id=f"pnginfo_send_to_{target}")
                        for target in ("txt2img", "img2img", "inpaint", "extras")
                    }
                self.table = gr.Dataframe(
                    headers=["Field", "Value"],
                    value=[],
                    interactive=False,
                    wrap=True,
                    elem_id="pnginfo_table",
                    label="Parsed fields",
                )
                self.install = attach_missing_models(application, self.raw)  # models it names that aren't here
        self.image.change(self.on_image, inputs=[self.image], outputs=[self.raw, self.table, self.message])
        self.raw.input(table_rows, inputs=[self.raw], outputs=[self.table], queue=False)

    @staticmethod
    def on_image(path: str | None):
        text, rows, message = read_infotext(path)
        return text, rows, message
