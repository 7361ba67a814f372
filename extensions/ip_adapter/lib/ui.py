"""The IP-Adapter accordion: one tab per unit, each one ArgGroup giving the API's unit dict."""

from __future__ import annotations

from typing import Any

import gradio as gr

from webui.extensions.api import ArgGroup

KEYS = ("enabled", "image", "model", "weight", "mask", "guidance_start", "guidance_end")
# the infotext's `IP-Adapter <i>: "model: …, weight: …, mask: …, start: …, end: …"` keys → the unit's
INFOTEXT_KEYS = {"model": "model", "weight": "weight", "mask": "mask", "start": "guidance_start", "end": "guidance_end"}


def parse_infotext(value: str) -> dict[str, Any]:
    """The inverse of the script's infotext_params: one unit's quoted `key: value, …` → its fields (numbers as
    numbers). Split on `, <known key>: ` only: a model name may itself hold ", "."""
    import re

    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    pattern = re.compile(r"(?:^|, )(" + "|".join(INFOTEXT_KEYS) + r"): ", re.IGNORECASE)
    marks = list(pattern.finditer(text))
    out: dict[str, Any] = {}
    for i, m in enumerate(marks):
        raw = text[m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(text)].strip()
        key = INFOTEXT_KEYS[m.group(1).lower()]
        if key == "model":
            out[key] = raw
        elif key != "mask":
            try:
                out[key] = float(raw)
            except ValueError:
                continue
    return out


def paste_values(unit: dict[str, Any] | None, models: list[str]) -> list[Any]:
    """The unit's component values (KEYS order) for a pasted infotext: images and masks are left as they are (an
    infotext holds none); a model restored by file name or stem when installed, else left; a unit the infotext
    doesn't name is disabled."""
    if unit is None:
        return [False, None, None, None, None, None, None]
    wanted = str(unit.get("model") or "").split(" [")[0].strip()
    model = next((m for m in models if wanted in (m, m.rsplit(".", 1)[0])), None)
    return [True, None, model, unit.get("weight"), None, unit.get("guidance_start", 0.0), unit.get("guidance_end", 1.0)]


def png_b64(image: Any) -> str | None:
    import base64
    import io

    from PIL import Image

    if not isinstance(image, Image.Image):
        return None
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def combine(*values: Any) -> dict[str, Any]:
    """The unit dict the API takes; images as base64 PNG (the request is JSON-serialised for the history), sent only
    for an enabled unit."""
    unit = dict(zip(KEYS, values))
    enabled = bool(unit.get("enabled")) and unit.get("model") not in (None, "None")
    return {
        "enabled": enabled,
        "model": unit.get("model") or "None",
        "weight": float(unit["weight"]) if unit.get("weight") is not None else 1.0,
        "image": png_b64(unit.get("image")) if enabled else None,
        "mask": png_b64(unit.get("mask")) if enabled else None,
        "guidance_start": float(unit.get("guidance_start") or 0.0),
        "guidance_end": float(unit["guidance_end"]) if unit.get("guidance_end") is not None else 1.0,
    }


def build(names: tuple[str, ...], models: list[str], is_img2img: bool, note: str = "") -> dict[str, ArgGroup]:
    """`note`: what can't run and why (e.g. FaceID without its face models), shown above the units."""
    kind = "img2img" if is_img2img else "txt2img"
    out: dict[str, ArgGroup] = {}
    if note:
        gr.Markdown(note, elem_id=f"{kind}_ip_adapter_note")
    if not models:
        gr.Markdown(
            "No IP-Adapter models: put .safetensors adapters in models/ipadapter and a CLIP image encoder "
            "folder in models/clip_vision.",
            elem_id=f"{kind}_ip_adapter_none",
        )
    with gr.Tabs(elem_id=f"{kind}_ip_adapter_units"):
        for i, name in enumerate(names):
            prefix = f"{kind}_ip_adapter_unit_{i}"
            with gr.Tab(f"IP-Adapter {i}", elem_id=f"{prefix}_tab"):
                enabled = gr.Checkbox(False, label="Enable", elem_id=f"{prefix}_enabled")
                with gr.Row():
                    image = gr.Image(
                        label="Image prompt",
                        type="pil",
                        format="png",
                        image_mode="RGB",
                        sources=["upload", "clipboard"],
                        elem_id=f"{prefix}_image",
                        height=224,
                    )
                    mask = gr.Image(
                        label="Mask (white: where it applies; empty: everywhere)",
                        type="pil",
                        format="png",
                        image_mode="L",
                        sources=["upload", "clipboard"],
                        elem_id=f"{prefix}_mask",
                        height=224,
                    )
                with gr.Row():
                    model = gr.Dropdown(["None", *models], value="None", label="Model", elem_id=f"{prefix}_model")
                    weight = gr.Slider(0, 2, value=1.0, step=0.05, label="Weight", elem_id=f"{prefix}_weight")
                with gr.Row():
                    start = gr.Slider(
                        0, 1, value=0.0, step=0.01, label="Starting Control Step", elem_id=f"{prefix}_guidance_start"
                    )
                    end = gr.Slider(
                        0, 1, value=1.0, step=0.01, label="Ending Control Step", elem_id=f"{prefix}_guidance_end"
                    )
            out[name] = ArgGroup(
                components=[enabled, image, model, weight, mask, start, end],
                combine=combine,
                describe={
                    "enabled": False,
                    "image": None,
                    "model": "None",
                    "weight": 1.0,
                    "mask": None,
                    "guidance_start": 0.0,
                    "guidance_end": 1.0,
                },
            )
    return out
