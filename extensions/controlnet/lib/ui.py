"""ControlNet's accordion in txt2img and img2img: N units as tabs, their controls and events. Each unit is one
`ArgGroup` whose `combine` gives the sd-webui-controlnet unit dict an API client would send (unit_fields.py), so the
UI's input goes through the same `parse_unit` checks (and the same clear errors) as the API's; the Preview button's
map and messages are in preview.py. The names of both are re-exported here (scripts/controlnet.py uses `lib("ui")`)."""

from __future__ import annotations

import html
from functools import partial
from typing import Any

import gradio as gr

from webui.extensions.api import ArgGroup

from .model_info import model_info_html
from .preview import PreviewError, empty_map_notice, error_html, make_preview, notice_html, on_preview
from .unit_fields import (
    DEFAULT_RESIZE,
    NONE_MODEL,
    UnitChoices,
    combine_unit,
    default_unit,
    paste_values,
    png_b64,
    unit_keys,
)

__all__ = [
    "DEFAULT_RESIZE",
    "NONE_MODEL",
    "PreviewError",
    "UnitChoices",
    "build_units",
    "combine_unit",
    "default_unit",
    "empty_map_notice",
    "error_html",
    "make_preview",
    "model_info_html",
    "model_update",
    "needed_model_html",
    "notice_html",
    "on_preview",
    "paste_values",
    "png_b64",
    "unavailable_note",
    "unit_keys",
]


def model_update(title: str, titles: list[str]) -> dict:
    return gr.update(choices=[NONE_MODEL, *titles], value=title)


# --- layout ----------------------------------------------------------------------------------------------------


def slider_updates(modules: dict[str, Any], module: str | None, *, with_values: bool) -> tuple[Any, Any]:
    """Threshold A/B for a module: its sliders' labels and ranges (hidden when it has none). Values are set only
    when the user picks a module (`with_values`), so a pasted infotext's thresholds are kept."""
    pre = modules.get(str(module or ""))
    sliders = list(pre.sliders) if pre is not None else []
    out = []
    for i in range(2):
        if i < len(sliders):
            s = sliders[i]
            extra = {"value": s.value} if with_values else {}
            out.append(gr.update(visible=True, label=s.name, minimum=s.min, maximum=s.max, step=s.step, **extra))
        else:
            out.append(gr.update(visible=False))
    return out[0], out[1]


def unavailable_note(modules: dict[str, Any]) -> str:
    """The preprocessors that can't run, with why, behind a disclosure (closed: it is a long list)."""
    missing = [m for m in modules.values() if not m.available]
    if not missing:
        return ""
    items = "".join(f"<li><code>{html.escape(m.name)}</code>: {html.escape(str(m.reason))}</li>" for m in missing)
    return (
        f'<details class="easel-disclosure"><summary>{len(missing)} preprocessor(s) unavailable</summary>'
        f"<ul>{items}</ul></details>"
    )


# preprocessor name prefix → (the word ControlNet model files of that kind carry, sd-webui-controlnet's usual
# ControlNet 1.1 file for SD 1.5): the kind of model a unit needs, said under its Model dropdown
MODEL_KINDS: tuple[tuple[str, str, str], ...] = (
    ("canny", "canny", "control_v11p_sd15_canny"),
    ("depth", "depth", "control_v11f1p_sd15_depth"),
    ("openpose", "openpose", "control_v11p_sd15_openpose"),
    ("lineart_anime", "lineart_anime", "control_v11p_sd15s2_lineart_anime"),
    ("lineart", "lineart", "control_v11p_sd15_lineart"),
    ("softedge", "softedge", "control_v11p_sd15_softedge"),
    ("mlsd", "mlsd", "control_v11p_sd15_mlsd"),
    ("normal", "normal", "control_v11p_sd15_normalbae"),
    ("seg", "seg", "control_v11p_sd15_seg"),
    ("scribble", "scribble", "control_v11p_sd15_scribble"),
    ("shuffle", "shuffle", "control_v11e_sd15_shuffle"),
    ("tile", "tile", "control_v11f1e_sd15_tile"),
    ("inpaint", "inpaint", "control_v11p_sd15_inpaint"),
)


def needed_model_html(module: str | None, model: str | None, titles: list[str]) -> str:
    """Which ControlNet model file the unit's preprocessor goes with, and whether this install has one."""
    name = str(module or "none")
    kind = next(((word, example) for prefix, word, example in MODEL_KINDS if name.startswith(prefix)), None)
    e = html.escape
    if kind is None:
        needs = "a ControlNet model of the kind the control image is (e.g. a canny edge map: a canny model)"
        found: list[str] = []
    else:
        word, example = kind
        needs = f"a <b>{e(word)}</b> ControlNet model, e.g. <code>{e(example)}.safetensors</code>"
        found = [t for t in titles if word in t.lower()]
    where = "in <code>models/ControlNet/</code>"
    if model and model != NONE_MODEL:
        chosen = f" · chosen: <code>{e(model)}</code>"
        if kind is not None and kind[0] not in model.lower():
            chosen += f" (its name doesn't say {e(kind[0])})"
    elif found:
        chosen = " · here: " + ", ".join(f"<code>{e(t)}</code>" for t in found[:3])
    else:
        chosen = " · none here yet"
    return f'<div class="easel-unit-needs">Needs {needs} {where}{chosen}</div>'


def build_units(choices: UnitChoices, names: tuple[str, ...], is_img2img: bool) -> dict[str, ArgGroup]:
    """The accordion's content (built inside it): one tab and one ArgGroup per unit argument name."""
    kind = "img2img" if is_img2img else "txt2img"
    keys = unit_keys(is_img2img)
    combine = partial(combine_unit, keys, choices.slider_counts())
    out: dict[str, ArgGroup] = {}
    with gr.Tabs(elem_id=f"{kind}_controlnet_units"):
        for i, name in enumerate(names):
            with gr.Tab(
                f"ControlNet Unit {i}", id=f"{kind}_controlnet_unit_{i}", elem_id=f"{kind}_controlnet_unit_{i}_tab"
            ):
                components = build_unit(choices, f"{kind}_controlnet_unit_{i}", is_img2img)
            out[name] = ArgGroup(components=[components[k] for k in keys], combine=combine, describe=default_unit())
    return out


def build_unit(choices: UnitChoices, prefix: str, is_img2img: bool) -> dict[str, Any]:
    """One unit's controls and events; returns {unit field: component}."""
    c: dict[str, Any] = {}
    c["enabled"] = gr.Checkbox(False, label="Enable", elem_id=f"{prefix}_enabled")
    with gr.Row():
        c["image"] = gr.Image(
            label="Control image",
            type="pil",
            format="png",
            image_mode="RGB",
            sources=["upload", "clipboard"],
            elem_id=f"{prefix}_image",
            height=256,
        )
        preview = gr.Image(
            label="Preprocessor preview",
            type="pil",
            format="png",
            interactive=False,
            elem_id=f"{prefix}_preview",
            height=256,
        )
    if is_img2img:
        c["use_input"] = gr.Checkbox(
            False, label="Use the img2img input (no control image)", elem_id=f"{prefix}_use_input"
        )
    with gr.Row():
        c["module"] = gr.Dropdown(choices.available, value="none", label="Preprocessor", elem_id=f"{prefix}_module")
        c["model"] = gr.Dropdown(
            [NONE_MODEL, *choices.model_titles()], value=NONE_MODEL, label="Model", elem_id=f"{prefix}_model"
        )
        refresh = gr.Button("🔄", elem_id=f"{prefix}_refresh_models", scale=0, min_width=40)
    info = gr.HTML("", elem_id=f"{prefix}_model_info")  # the picked model's family, and why it can't be used
    needs = gr.HTML(needed_model_html("none", NONE_MODEL, choices.model_titles()), elem_id=f"{prefix}_needs")
    note = unavailable_note(choices.modules)
    if note:
        gr.HTML(note, elem_id=f"{prefix}_unavailable")
    with gr.Row():
        c["weight"] = gr.Slider(0, 2, value=1.0, step=0.05, label="Control Weight", elem_id=f"{prefix}_weight")
        c["guidance_start"] = gr.Slider(
            0, 1, value=0.0, step=0.01, label="Starting Control Step", elem_id=f"{prefix}_guidance_start"
        )
        c["guidance_end"] = gr.Slider(
            0, 1, value=1.0, step=0.01, label="Ending Control Step", elem_id=f"{prefix}_guidance_end"
        )
    c["control_mode"] = gr.Radio(
        list(choices.control_modes),
        value=choices.control_modes[0],
        label="Control Mode",
        elem_id=f"{prefix}_control_mode",
    )
    c["resize_mode"] = gr.Radio(
        list(choices.resize_modes), value=DEFAULT_RESIZE, label="Resize Mode", elem_id=f"{prefix}_resize_mode"
    )
    with gr.Row():
        c["pixel_perfect"] = gr.Checkbox(False, label="Pixel Perfect", elem_id=f"{prefix}_pixel_perfect")
        c["processor_res"] = gr.Slider(
            64, choices.max_res, value=512, step=8, label="Preprocessor Resolution", elem_id=f"{prefix}_processor_res"
        )
    with gr.Row():
        c["threshold_a"] = gr.Slider(
            1, 255, value=100, step=1, label="Threshold A", visible=False, elem_id=f"{prefix}_threshold_a"
        )
        c["threshold_b"] = gr.Slider(
            1, 255, value=200, step=1, label="Threshold B", visible=False, elem_id=f"{prefix}_threshold_b"
        )
    preview_button = gr.Button("Preview", elem_id=f"{prefix}_preview_button", size="sm")
    message = gr.HTML("", elem_id=f"{prefix}_message")
    wire_unit(choices, c, refresh, preview_button, preview, message)
    c["model"].change(
        partial(model_info, choices), inputs=[c["model"]], outputs=[info], queue=False, show_progress="hidden"
    )
    for trigger in (c["module"], c["model"]):
        trigger.change(
            lambda module, model: needed_model_html(module, model, choices.model_titles()),
            inputs=[c["module"], c["model"]],
            outputs=[needs],
            queue=False,
            show_progress="hidden",
        )
    return c


def model_info(choices: UnitChoices, title: str | None) -> str:
    """The line under the Model dropdown for the picked model (model_info.py), against the loaded checkpoint."""
    detail = choices.model_detail(title) if title and title != NONE_MODEL else None
    return model_info_html(title, detail, choices.checkpoint_family())


def wire_unit(choices: UnitChoices, c: dict[str, Any], refresh, preview_button, preview, message) -> None:
    thresholds = [c["threshold_a"], c["threshold_b"]]
    c["module"].change(
        partial(slider_updates, choices.modules, with_values=False),
        inputs=[c["module"]],
        outputs=thresholds,
        queue=False,
    )
    c["module"].input(
        partial(slider_updates, choices.modules, with_values=True),
        inputs=[c["module"]],
        outputs=thresholds,
        queue=False,
    )
    c["pixel_perfect"].change(
        lambda on: gr.update(visible=not on), inputs=[c["pixel_perfect"]], outputs=[c["processor_res"]], queue=False
    )
    refresh.click(
        lambda current: gr.update(choices=[NONE_MODEL, *choices.model_titles()], value=current),
        inputs=[c["model"]],
        outputs=[c["model"]],
        queue=False,
    )
    preview_button.click(
        partial(on_preview, choices),
        inputs=[c["image"], c["module"], c["processor_res"], c["threshold_a"], c["threshold_b"], c["pixel_perfect"]],
        outputs=[preview, message],
    )
