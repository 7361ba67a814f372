"""A ControlNet unit's fields as the API takes them (sd-webui-controlnet's unit dict): their order in a unit's
ArgGroup, a disabled unit, the UI's values → a unit dict, an infotext unit → the UI's values, and what the UI offers
(`UnitChoices`). No Gradio here."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

NONE_MODEL = "None"
DEFAULT_RESIZE = "Crop and Resize"  # sd-webui-controlnet's default resize mode (parse_unit's default 1)


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
    # a model title → the catalog's detail (family, layout, reason it can't be used), None when unknown
    model_detail: Callable[[str], dict | None] = lambda title: None
    checkpoint_family: Callable[[], str | None] = lambda: None  # the loaded checkpoint's (Family value)

    @property
    def available(self) -> list[str]:
        return [name for name, m in self.modules.items() if m.available]

    def slider_counts(self) -> dict[str, int]:
        return {name: len(m.sliders) for name, m in self.modules.items()}


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
