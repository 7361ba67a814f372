"""Brushes of img2img's editors, sized by the image (#19 item 16). Gradio 6.31's ImageEditor turns a brush's
`default_size="auto"` into a fixed 25 px whatever the image (its frontend: `typeof default_size == "number" ? … :
25`), which paints over a third of a 64 px picture and is a speck on a 4K photo. So each editor's upload (and a
Send-to inpaint) gives the editor a brush and an eraser sized from the picture: about 1/25 of its short side, within
the editor's 1–100 px slider. The mask brush paints half-transparent white, so the picture shows through."""

from __future__ import annotations

from typing import Any

import gradio as gr
from PIL import Image

PALETTE = ["#000000", "#ffffff", "#cc3232", "#32cc70", "#3270cc", "#e6c832", "#ad32cc", "#8b5a2b"]
MASK_COLORS = [("#ffffff", 0.5), ("#000000", 0.5)]  # any alpha > 0 counts as masked (img2img_tab.editor_mask)
BLANK_SIZE = 20  # a blank 512×512 canvas: 512 / 25
MIN_SIZE, MAX_SIZE = 2, 100  # the editor's size slider goes from 1 to 100


def brush_size(width: int, height: int) -> int:
    return max(MIN_SIZE, min(MAX_SIZE, round(min(width, height) / 25)))


def make_brush(kind: str, size: int = BLANK_SIZE) -> gr.Brush:
    """`kind` "mask" (inpaint: half-transparent white) or "paint" (sketches: the palette)."""
    if kind == "mask":
        return gr.Brush(
            default_size=size, colors=list(MASK_COLORS), default_color=MASK_COLORS[0], color_mode="defaults"
        )
    return gr.Brush(default_size=size, colors=list(PALETTE), color_mode="defaults")


def image_size(value: Any) -> tuple[int, int] | None:
    """The picture's size from an editor value ({"background", "layers", "composite"}) or an image."""
    image = value.get("background") if isinstance(value, dict) else value
    return image.size if isinstance(image, Image.Image) else None


def sized_update(kind: str, picture: Any, **fields: Any) -> Any:
    """An update giving the editor a brush and an eraser sized for `picture` (an editor value or an image), plus
    `fields` (e.g. the editor's new value, for a Send-to); the brush stays as it is for an empty editor."""
    size = image_size(picture)
    if size is None:
        return gr.update(**fields)
    n = brush_size(*size)
    return gr.update(brush=make_brush(kind, n), eraser=gr.Eraser(default_size=n), **fields)
