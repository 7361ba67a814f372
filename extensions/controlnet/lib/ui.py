"""ControlNet's accordion in txt2img and img2img (all of this extension's Gradio code is here). N units as tabs;
each unit is one `ArgGroup` whose `combine` gives the sd-webui-controlnet unit dict an API client would send, so
the UI's input goes through the same `parse_unit` checks (and the same clear errors) as the API's."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr
from PIL import Image

from webui.extensions.api import ArgGroup

NONE_MODEL = "None"
DEFAULT_RESIZE = "Crop and Resize"  # sd-webui-controlnet's default resize mode (parse_unit's default 1)
# the look of .easel-error / .easel-notice is the page's (webui/ui/page_css.py): theme colours, light and dark


@dataclass(frozen=True)
class UnitChoices:
    """What the UI offers, from the extension's state: the preprocessors (available or not, with the reason), the
    catalog's model titles (a call, so 🔄 rescans), the mode names and the resolution limit."""

    modules: dict[str, Any]  # name → preprocessors.Preprocessor
    model_titles: Callable[[], list[str]]
    resize_modes: tuple[str, ...]
    control_modes: tuple[str, ...]
    max_res: int
    run: Callable[..., Image.Image]  # preprocessors.run

    @property
    def available(self) -> list[str]:
        return [name for name, m in self.modules.items() if m.available]

    def slider_counts(self) -> dict[str, int]:
        return {name: len(m.sliders) for name, m in self.modules.items()}


class PreviewError(Exception):
    """Why a preview can't be made (shown to the user; nothing else happens)."""


def unit_keys(is_img2img: bool) -> tuple[str, ...]:
    """The unit fields, in the order of a unit's ArgGroup components (img2img has "use the img2img input")."""
    return (
        "enabled",
        "image",
        *(("use_input",) if is_img2img else ()),
        "module",
        "model",
        "weight",
        "guidance_start",
        "guidance_end",
        "control_mode",
        "resize_mode",
        "pixel_perfect",
        "processor_res",
        "threshold_a",
        "threshold_b",
    )


def default_unit() -> dict[str, Any]:
    """A disabled unit as the API takes it (script-info's description of each unit argument)."""
    return {
        "enabled": False,
        "image": None,
        "module": "none",
        "model": NONE_MODEL,
        "weight": 1.0,
        "guidance_start": 0.0,
        "guidance_end": 1.0,
        "control_mode": "Balanced",
        "resize_mode": DEFAULT_RESIZE,
        "pixel_perfect": False,
        "processor_res": 512,
        "threshold_a": -1,
        "threshold_b": -1,
    }


def png_b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def combine_unit(keys: tuple[str, ...], slider_counts: dict[str, int], *values: Any) -> dict[str, Any]:
    """A unit's component values → sd-webui-controlnet's unit dict. The image goes as base64 PNG (the request
    is JSON-serialised for the history), only for an enabled unit; thresholds the module has no slider for are
    -1 ("default"), as sd-webui-controlnet sends them. Nothing is checked here: `parse_unit` does that."""
    unit = dict(zip(keys, values))
    enabled = bool(unit.get("enabled"))
    use_input = bool(unit.pop("use_input", False))
    image = unit.pop("image", None)
    unit["enabled"] = enabled
    unit["image"] = png_b64(image) if enabled and not use_input and isinstance(image, Image.Image) else None
    unit["model"] = unit.get("model") or NONE_MODEL
    unit["module"] = unit.get("module") or "none"
    sliders = slider_counts.get(unit["module"], 0)
    for i, key in enumerate(("threshold_a", "threshold_b")):
        unit[key] = float(unit[key]) if i < sliders and unit.get(key) is not None else -1
    if unit.get("processor_res") is not None:
        unit["processor_res"] = int(unit["processor_res"])
    return unit


def paste_values(unit: dict[str, Any] | None, is_img2img: bool, *, modules: list[str], model: dict | None) -> list[Any]:
    """One value per ArgGroup component from an infotext unit (`units.parse_infotext`); None leaves a component as
    it is. The control image is never in an infotext; a unit the infotext leaves out is disabled. `model` is the
    dropdown update for the restored model (None: not found here, left as it is)."""
    keys = unit_keys(is_img2img)
    if unit is None:
        return [False if key == "enabled" else None for key in keys]
    out = []
    for key in keys:
        value = unit.get(key)
        if key in ("image", "use_input"):
            value = None
        elif key == "module":
            value = value if value in modules else None
        elif key == "model":
            value = model
        elif key in ("threshold_a", "threshold_b") and value is not None and value < 0:
            value = None  # "the module's default": the slider keeps its value
        out.append(value)
    return out


def model_update(title: str, titles: list[str]) -> dict:
    return gr.update(choices=[NONE_MODEL, *titles], value=title)


# --- the preview ---------------------------------------------------------------------------------------------


def make_preview(
    choices: UnitChoices,
    image: Image.Image | None,
    module: str | None,
    resolution: Any,
    threshold_a: Any,
    threshold_b: Any,
    pixel_perfect: bool,
) -> Image.Image:
    """The preprocessed map for the unit's image. Pixel perfect has no generation size here: the image's own
    short side is the resolution (no rescale)."""
    if image is None:
        raise PreviewError(
            'Upload a control image to preview its map (with "Use the img2img input", the map is '
            "made from the img2img image when generating)."
        )
    pre = choices.modules.get(str(module or "none"))
    if pre is None:
        raise PreviewError(f"Unknown preprocessor {module!r}.")
    if not pre.available:
        raise PreviewError(f"Preprocessor {pre.name!r} is unavailable: {pre.reason}")
    res = min(image.size) if pixel_perfect else int(resolution or 512)
    if not pixel_perfect and not 64 <= res <= choices.max_res:
        raise PreviewError(f"Preprocessor resolution {res} is outside 64..{choices.max_res}.")
    try:
        return choices.run(
            pre,
            image.convert("RGB"),
            resolution=res,
            threshold_a=None if threshold_a is None else float(threshold_a),
            threshold_b=None if threshold_b is None else float(threshold_b),
        )
    except (ValueError, OSError) as e:
        raise PreviewError(f"Preprocessor {pre.name!r} failed: {e}") from None


def error_html(message: str) -> str:
    return f'<div class="easel-error">{html.escape(message)}</div>'


def notice_html(message: str) -> str:
    return f'<div class="easel-notice">{html.escape(message)}</div>'


def empty_map_notice(image: Image.Image, module: str | None) -> str:
    """Say why a map is all black (e.g. MLSD on a picture without straight lines, canny on a flat one): it is the
    detector's honest answer, but it looks like a failure, and such a map steers generation by nothing."""
    if str(module or "none") == "none" or image.convert("L").getextrema()[1] > 0:
        return ""
    return notice_html(
        f"{module} found nothing to draw in this image (the map is all black), so this unit would "
        f"not steer the picture. Lower Threshold A/B, raise the resolution or pick another "
        f"preprocessor."
    )


def on_preview(choices: UnitChoices, *values: Any):
    """Preview's handler: (map, message); an error is shown under the unit and as a toast, an empty map gets a
    notice under the unit."""
    try:
        detected = make_preview(choices, *values)
    except PreviewError as e:
        gr.Warning(str(e))
        return None, error_html(str(e))
    return detected, empty_map_notice(detected, values[1])


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
    for trigger in (c["module"], c["model"]):
        trigger.change(
            lambda module, model: needed_model_html(module, model, choices.model_titles()),
            inputs=[c["module"], c["model"]],
            outputs=[needs],
            queue=False,
            show_progress="hidden",
        )
    return c


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
