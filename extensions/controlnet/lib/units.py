"""sd-webui-controlnet units from API clients and the UI: `alwayson_scripts: {"controlnet": {"args": [unit, ...]}}`.
Each unit is a dict with sd-webui-controlnet's field names; modes come as strings or integers. Bad input raises
ScriptError (a 422 from the API, a message in the UI) before the generation starts."""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from PIL import Image, UnidentifiedImageError

from webui.extensions.api import ScriptError, open_image

RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")
CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")
# sd-webui-controlnet's other spellings of the resize modes (its old enum values)
RESIZE_ALIASES = {
    "envelope (outer fit)": 2,
    "scale to fit (inner fit)": 1,
    "just resize": 0,
    "crop and resize": 1,
    "resize and fill": 2,
    "inner fit": 1,
    "outer fit": 2,
}
MAX_PIXELS = 16 * 1024 * 1024  # a control image larger than this (decoded) is refused


@dataclass
class ControlUnit:
    index: int
    module: str
    model: str  # the catalog title, `name [hash]`
    image: Image.Image | None  # None: use the img2img input
    weight: float = 1.0
    resize_mode: int = 1
    processor_res: int = 512
    threshold_a: float = -1
    threshold_b: float = -1
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    control_mode: int = 0
    pixel_perfect: bool = False

    @property
    def resize_mode_name(self) -> str:
        return RESIZE_MODES[self.resize_mode]

    @property
    def control_mode_name(self) -> str:
        return CONTROL_MODES[self.control_mode]


def mode(value: Any, names: tuple[str, ...], what: str, aliases: dict[str, int] | None = None) -> int:
    """A mode given as its index (0, "1") or its name (any case)."""
    if isinstance(value, bool):
        raise ScriptError(f"{what}: expected one of {list(names)} or 0-{len(names) - 1}, got {value!r}")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        i = int(value)
        if 0 <= i < len(names):
            return i
    elif isinstance(value, str):
        lowered = {n.lower(): i for i, n in enumerate(names)} | (aliases or {})
        if value.strip().lower() in lowered:
            return lowered[value.strip().lower()]
    raise ScriptError(f"{what}: expected one of {list(names)} or 0-{len(names) - 1}, got {value!r}")


def decode_image(value: Any, what: str) -> Image.Image | None:
    """A base64 image (optionally a data: URL), sd-webui-controlnet's {"image": b64, "mask": b64}, or a PIL image
    (what the UI and in-process callers hold); None when absent."""
    if isinstance(value, dict):
        value = value.get("image")
    if value is None or value == "":
        return None
    if isinstance(value, Image.Image):  # already decoded: only the size limit applies
        if value.width * value.height > MAX_PIXELS:
            raise ScriptError(f"{what}: {value.width}x{value.height} is over the limit of {MAX_PIXELS} pixels")
        return value.convert("RGB")
    if not isinstance(value, str):
        raise ScriptError(f"{what}: expected a base64-encoded image")
    if value.startswith("data:"):
        value = value.split(",", 1)[-1]
    try:
        raw = base64.b64decode(value, validate=True)
        image = open_image(io.BytesIO(raw))
        if image.width * image.height > MAX_PIXELS:
            raise ScriptError(f"{what}: {image.width}x{image.height} is over the limit of {MAX_PIXELS} pixels")
        image.load()
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise ScriptError(f"{what}: not a decodable image ({type(e).__name__})") from None
    return image.convert("RGB")


def _number(unit: dict, key: str, default: float, what: str, lo: float, hi: float, kind: type = float):
    value = unit.get(key, default)
    if value is None:
        return kind(default)
    try:
        number = float(value)
        if math.isfinite(number) and kind is int:
            number = int(number)
    except (TypeError, ValueError, OverflowError):
        raise ScriptError(f"{what}: {key} must be a number, got {value!r}") from None
    if not lo <= number <= hi:  # NaN and ±Infinity fail here too
        raise ScriptError(f"{what}: {key} {number} is outside {lo}..{hi}")
    return number


def _resolution(unit: dict, what: str, max_res: int) -> int:
    res = int(_number(unit, "processor_res", 512, what, -1, 1e9, int))
    if res == -1:  # sd-webui-controlnet clients send -1 for the default
        return 512
    if not 64 <= res <= max_res:
        raise ScriptError(
            f"{what}: processor_res {res} is outside 64..{max_res} (the limit is the "
            f"control_net_max_resolution setting)"
        )
    return res


def parse_unit(
    raw: Any, index: int, *, kind: str, modules: dict, find_model: Callable[[str], Any], max_res: int
) -> ControlUnit | None:
    """One unit → a ControlUnit, or None when it is disabled. `find_model(name)` returns the catalog entry (or
    raises KeyError with the list) and checks the family (raising ScriptError)."""
    what = f"ControlNet unit {index}"
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ScriptError(
            f"{what}: expected an object with sd-webui-controlnet's unit fields, got {type(raw).__name__}"
        )
    if not bool(raw.get("enabled", True)):
        return None
    module = str(raw.get("module") or "none").strip().lower()
    if module not in modules:
        raise ScriptError(f"{what}: unknown module {module!r}; known: {', '.join(modules)}")
    if not modules[module].available:
        raise ScriptError(f"{what}: module {module!r} is unavailable: {modules[module].reason}")
    model_name = str(raw.get("model") or "").strip()
    if model_name.lower() in ("", "none"):
        raise ScriptError(f"{what} is enabled without a model")
    try:
        entry = find_model(model_name)
    except KeyError as e:
        raise ScriptError(f"{what}: {e.args[0]}") from None
    image = decode_image(raw.get("image", raw.get("input_image")), what)
    if image is None and kind != "img2img":
        raise ScriptError(f"{what} is enabled without an image")
    start = _number(raw, "guidance_start", 0.0, what, 0.0, 1.0)
    end = _number(raw, "guidance_end", 1.0, what, 0.0, 1.0)
    if start > end:
        raise ScriptError(f"{what}: guidance_start {start} is after guidance_end {end}")
    return ControlUnit(
        index=index,
        module=module,
        model=entry.title,
        image=image,
        weight=_number(raw, "weight", 1.0, what, 0.0, 2.0),
        resize_mode=mode(raw.get("resize_mode", 1), RESIZE_MODES, f"{what} resize_mode", RESIZE_ALIASES),
        processor_res=_resolution(raw, what, max_res),
        threshold_a=_number(raw, "threshold_a", -1, what, -1, 1e4),
        threshold_b=_number(raw, "threshold_b", -1, what, -1, 1e4),
        guidance_start=start,
        guidance_end=end,
        control_mode=mode(raw.get("control_mode", 0), CONTROL_MODES, f"{what} control_mode"),
        pixel_perfect=bool(raw.get("pixel_perfect", False)),
    )


IP_ADAPTER_MODULE = "ip-adapter"  # sd-webui-controlnet's IP-Adapter modules (ip-adapter_clip_sd15, …)


def is_ip_adapter(raw: Any) -> bool:
    """A unit with an IP-Adapter module: the built-in ip_adapter extension runs it (extensions/ip_adapter), not
    a ControlNet model."""
    return isinstance(raw, dict) and str(raw.get("module") or "").strip().lower().startswith(IP_ADAPTER_MODULE)


def parse_units(raw_units: list[Any], **kw: Any) -> list[ControlUnit]:
    units = [parse_unit(raw, i, **kw) for i, raw in enumerate(raw_units) if not is_ip_adapter(raw)]
    return [u for u in units if u is not None]


def infotext(unit: ControlUnit) -> str:
    """sd-webui-controlnet's infotext value for `ControlNet <i>` (unquoted: the infotext writer quotes it)."""
    fields = {
        "Module": unit.module,
        "Model": unit.model,
        "Weight": unit.weight,
        "Resize Mode": unit.resize_mode_name,
        "Processor Res": unit.processor_res,
        "Threshold A": unit.threshold_a,
        "Threshold B": unit.threshold_b,
        "Guidance Start": unit.guidance_start,
        "Guidance End": unit.guidance_end,
        "Pixel Perfect": unit.pixel_perfect,
        "Control Mode": unit.control_mode_name,
    }
    return ", ".join(f"{k}: {v}" for k, v in fields.items())


def parse_infotext(value: str) -> dict[str, Any]:
    """The inverse of `infotext`: sd-webui-controlnet's quoted `Key: value, …` → an API unit dict (without the
    image). Unknown keys are ignored; the model is kept as written (`name [hash]`), numbers as numbers."""
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    keys = {
        "module": "module",
        "model": "model",
        "weight": "weight",
        "resize mode": "resize_mode",
        "processor res": "processor_res",
        "threshold a": "threshold_a",
        "threshold b": "threshold_b",
        "guidance start": "guidance_start",
        "guidance end": "guidance_end",
        "pixel perfect": "pixel_perfect",
        "control mode": "control_mode",
    }
    out: dict[str, Any] = {"enabled": True}
    # split on ", <known key>: " boundaries only: a model name may itself hold ", "
    pattern = re.compile(r"(?:^|, )(" + "|".join(re.escape(k) for k in keys) + r"): ", re.IGNORECASE)
    marks = list(pattern.finditer(text))
    for i, m in enumerate(marks):
        raw = text[m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(text)].strip()
        field = keys[m.group(1).lower()]
        if field in ("weight", "threshold_a", "threshold_b", "guidance_start", "guidance_end"):
            try:
                out[field] = float(raw)
            except ValueError:
                continue
        elif field == "processor_res":
            try:
                out[field] = int(float(raw))
            except ValueError:
                continue
        elif field == "pixel_perfect":
            out[field] = raw.lower() == "true"
        elif field == "resize_mode":
            try:
                out[field] = RESIZE_MODES[mode(raw, RESIZE_MODES, "resize mode", RESIZE_ALIASES)]
            except ScriptError:
                continue
        elif field == "control_mode":
            try:
                out[field] = CONTROL_MODES[mode(raw, CONTROL_MODES, "control mode")]
            except ScriptError:
                continue
        else:
            out[field] = raw
    return out
