"""The PNG Info tab: read the generation parameters stored in an image and send them to txt2img."""

from __future__ import annotations

import html

import gradio as gr
from PIL import Image, UnidentifiedImageError

from webui.infotext import infotext_to_request_fields, parse_infotext, read_image_infotext
from webui.ui.common import as_int, error_html

HIDDEN_KEYS = ("Prompt", "Negative prompt")


def read_infotext(path: str | None) -> tuple[str, list[list[str]], str]:
    """(raw infotext, [[field, value], …], message html) for an image file. The pixels are never decoded:
    the text chunks and EXIF are read from the file as it was uploaded."""
    if not path:
        return "", [], ""
    try:
        with Image.open(path) as im:
            text = read_image_infotext(im) or ""
            others = {k: v for k, v in (im.info or {}).items()
                      if k != "parameters" and isinstance(v, str) and v.strip()}
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        return "", [], error_html(f"Cannot read this file as an image: {e}")
    if not text:
        extra = "".join(f"<p><b>{html.escape(k)}</b>: {html.escape(v[:2000])}</p>" for k, v in others.items())
        return "", [], error_html("No generation parameters found in this image.") + extra
    parsed = parse_infotext(text)
    rows = [[k, str(parsed.get(k, ""))] for k in HIDDEN_KEYS]
    rows += [[k, str(v)] for k, v in parsed.items() if k not in HIDDEN_KEYS and not _derived(k, parsed)]
    return text, rows, ""


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
    def __init__(self, application, txt2img, tabs: gr.Tabs):
        self.app = application
        with gr.Row(equal_height=False):
            with gr.Column():
                self.image = gr.Image(label="Source", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                      elem_id="pnginfo_image", height=420)
            with gr.Column():
                self.message = gr.HTML("", elem_id="pnginfo_message")
                self.raw = gr.Textbox(label="Parameters", lines=6, interactive=False,
                                      elem_id="pnginfo_generation_info")
                self.table = gr.Dataframe(headers=["Field", "Value"], value=[], interactive=False, wrap=True,
                                          elem_id="pnginfo_table", label="Parsed fields")
                self.send = gr.Button("Send to txt2img", elem_id="pnginfo_send_to_txt2img")
        self.image.change(self.on_image, inputs=[self.image], outputs=[self.raw, self.table, self.message])
        self.send.click(lambda text: [*txt2img.fill(request_fields(text)), gr.Tabs(selected="txt2img")],
                        inputs=[self.raw], outputs=[*txt2img.field_components, tabs])

    @staticmethod
    def on_image(path: str | None):
        text, rows, message = read_infotext(path)
        return text, rows, message
