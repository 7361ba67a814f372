"""The X/Y/Z plot's axes: each a parameter, how its values are written (comma lists, quoted values, ranges such as
`1-10 (+2)` or `0.5-1.5 [5]`, or the names picked in its dropdown) and how a value changes the request of a cell."""

from __future__ import annotations

import csv
import io
import math
import random
import re
from dataclasses import dataclass
from typing import Any, Callable

from webui.extensions.api import ScriptError

NUM = r"[+-]?\s*\d+(?:\.\d*)?"
RANGE = re.compile(rf"^\s*({NUM})\s*-\s*({NUM})\s*(?:\(\s*({NUM})\s*\)|\[\s*(\d+)\s*\])?\s*$")
LORA = re.compile(r"<lora:([^:>]+)((?::[^>]*)?)>")


def split_values(text: Any) -> list[str]:
    rows = csv.reader(io.StringIO(str(text or "")), skipinitialspace=True)
    return [v.strip() for row in rows for v in row if v.strip()]


def count_numbers(items: list[str]) -> float:
    """How many values `expand_numbers` would make, without making them (inf for a range that never ends)."""
    total = 0.0
    for item in items:
        m = RANGE.match(item)
        if not m:
            total += 1
        elif m[4]:
            total += int(m[4]) or 1
        else:
            try:
                start, end = float(m[1].replace(" ", "")), float(m[2].replace(" ", ""))
                step = float(m[3].replace(" ", "")) if m[3] else 1.0
                n = abs((end - start) / step) + 1 if step else math.inf
            except (ValueError, OverflowError, ZeroDivisionError):
                n = math.inf
            total += n if math.isfinite(n) else math.inf
    return total


def expand_numbers(items: list[str], kind: type, limit: float = math.inf) -> list[Any]:
    """Numbers and ranges → the list of values (`1-10 [5]` truncates to ints for int axes, as A1111). More than
    `limit` values is a ScriptError before any list is built."""
    count = count_numbers(items)
    if count > limit:
        raise ScriptError(
            f"{', '.join(items)[:80]}: {'endless' if math.isinf(count) else int(count)} values, more "
            f"than the {int(limit)} cells a plot may have (setting xyz_max_cells)"
        )
    out: list[Any] = []
    for item in items:
        m = RANGE.match(item)
        try:
            if not m:
                out.append(kind(item))
                continue
            start, end = float(m[1].replace(" ", "")), float(m[2].replace(" ", ""))
            if m[4]:
                n = int(m[4])
                values = [start + (end - start) * i / (n - 1) for i in range(n)] if n > 1 else [start]
            else:
                step = float(m[3].replace(" ", "")) if m[3] else (1.0 if end >= start else -1.0)
                if step == 0 or (end - start) * step < 0:
                    raise ScriptError(f"range {item!r}: the step {step:g} never reaches {end:g}")
                values = [start + step * i for i in range(int((end - start) / step + 1e-9) + 1)]
        except ValueError:
            raise ScriptError(f"{item!r} is not a {kind.__name__} or a range") from None
        out += [int(v) if kind is int else round(v, 8) for v in values]
    return out


def _size(item: str) -> tuple[int, int]:
    w, _, h = item.lower().partition("x")
    try:
        return int(w), int(h or w)
    except ValueError:
        raise ScriptError(f"size {item!r}: write WIDTHxHEIGHT, e.g. 512x768") from None


def _field(name: str) -> Callable:
    return lambda req, v, values: {name: v}


def _option(key: str) -> Callable:
    return lambda req, v, values: {"override_settings": {**req.override_settings, key: v}}


def _prompt_sr(req: Any, v: str, values: list) -> dict:
    return {"prompt": req.prompt.replace(values[0], v), "negative_prompt": req.negative_prompt.replace(values[0], v)}


def _lora_weight(req: Any, v: str, values: list) -> dict:
    """`0.5` sets the weight of every <lora:…> tag in the prompt; `name:0.5` only that LoRA's."""
    name, _, weight = v.rpartition(":")
    try:
        float(weight)
    except ValueError:
        raise ScriptError(f"LoRA weight {v!r}: write a number, or name:number") from None
    hits = []

    def sub(m: re.Match) -> str:
        if name and m[1] != name:
            return m[0]
        hits.append(m[1])
        return f"<lora:{m[1]}:{weight}>"

    prompt = LORA.sub(sub, req.prompt)
    if not hits:
        raise ScriptError(f"LoRA weight {v!r}: the prompt has no <lora:{name or 'name'}:…> tag to change")
    return {"prompt": prompt}


@dataclass(frozen=True)
class Axis:
    label: str
    kind: Any  # int, float, str, "size", "lora"
    apply: Callable[[Any, Any, list], dict] | None  # (request, value, all values) → changed request fields
    named: bool = True  # cells labelled "Label: value" (else the value alone)
    choices: str | None = None  # the host list (`ext.choices` kind) its values come from: a dropdown in the UI


AXES = (
    Axis("Nothing", str, None),
    Axis("Seed", int, _field("seed")),
    Axis("Steps", int, _field("steps")),
    Axis("CFG Scale", float, _field("cfg_scale")),
    Axis("Distilled CFG Scale", float, _field("distilled_cfg_scale")),  # FLUX.1 dev/Fill (Forge's name)
    Axis("SLG scale", float, _field("slg_scale")),  # SD 3/3.5 skip-layer guidance, with the request's layers/window
    Axis("Shift", float, _option("flow_shift")),  # SD 3/FLUX flow-matching shift (0: the model's own)
    Axis("Sampler", str, _field("sampler_name"), choices="samplers"),
    Axis("Schedule type", str, _field("scheduler"), choices="schedulers"),
    Axis("Checkpoint name", str, _option("sd_model_checkpoint"), named=False, choices="checkpoints"),
    Axis("Prompt S/R", str, _prompt_sr, named=False),
    Axis("LoRA weight", "lora", _lora_weight),
    Axis("Denoising", float, _field("denoising_strength")),
    Axis("Size", "size", lambda r, v, vs: {"width": v[0], "height": v[1]}),
    Axis("Clip skip", int, _option("CLIP_stop_at_last_layers")),
    Axis("VAE", str, _option("sd_vae"), named=False, choices="vae"),
)
MAX_VALUE_LEN = 1000  # one dropdown value (a checkpoint title, say); longer is not a name any list holds


def find_axis(value: Any) -> Axis:
    if value in (None, "", "None"):
        return AXES[0]
    if isinstance(value, (int, float)):  # A1111 clients send an index into A1111's own list: refuse, don't guess
        raise ScriptError(
            f"axis types go by name, not by number ({value!r}): one of {', '.join(a.label for a in AXES)}"
        )
    for axis in AXES:
        if axis.label.lower() == str(value).strip().lower():
            return axis
    raise ScriptError(f"unknown axis type {value!r}; types: {', '.join(a.label for a in AXES)}")


def picked_values(axis: Axis, picked: Any, limit: float) -> list[str] | None:
    """The values chosen in the axis' dropdown (a list of names), or None when none were (the text is used)."""
    if picked is None or picked == "" or picked == []:
        return None
    if not isinstance(picked, (list, tuple)) or not all(isinstance(v, str) for v in picked):
        raise ScriptError(f"{axis.label}: the dropdown values must be a list of names, not {type(picked).__name__}")
    if len(picked) > limit:
        raise ScriptError(
            f"{axis.label}: {len(picked)} values, more than the {int(limit)} cells a plot may have "
            f"(setting xyz_max_cells)"
        )
    values = [v.strip() for v in picked if v.strip()]
    if any(len(v) > MAX_VALUE_LEN for v in values):
        raise ScriptError(f"{axis.label}: a value longer than {MAX_VALUE_LEN} characters")
    return values or None


def axis_values(
    axis: Axis, text: Any, request: Any, keep_random_seeds: bool, limit: float = math.inf, picked: Any = None
) -> list[Any]:
    """The axis' values: those picked in its dropdown when it has one and they are given, else the text's."""
    if axis.apply is None:
        return [None]
    chosen = picked_values(axis, picked, limit) if axis.choices else None
    if chosen is not None:
        return chosen
    items = split_values(text)
    if not items:
        raise ScriptError(f"{axis.label}: no values given")
    if len(items) > limit:
        raise ScriptError(
            f"{axis.label}: {len(items)} values, more than the {int(limit)} cells a plot may have "
            f"(setting xyz_max_cells)"
        )
    if axis.kind in (int, float):
        values = expand_numbers(items, axis.kind, limit)
    elif axis.kind == "size":
        values = [_size(i) for i in items]
    elif axis.kind == "lora" and not any(":" in i for i in items):
        values = [f"{v:g}" for v in expand_numbers(items, float, limit)]
    else:
        values = items
    if axis.label == "Seed" and not keep_random_seeds:
        values = [random.randrange(4294967294) if v == -1 else v for v in values]
    if axis.label == "Prompt S/R" and values[0] not in request.prompt and values[0] not in request.negative_prompt:
        raise ScriptError(f"Prompt S/R: {values[0]!r} is not in the prompt or the negative prompt")
    return values


def cell_label(axis: Axis, value: Any) -> str:
    if axis.apply is None:
        return ""
    text = f"{value[0]}x{value[1]}" if axis.kind == "size" else f"{value:g}" if isinstance(value, float) else str(value)
    return f"{axis.label}: {text}" if axis.named else text


def variant(request: Any, fields: dict[str, Any], where: str) -> Any:
    """A validated copy of the request with `fields` changed; a bad value is a ScriptError naming it."""
    try:
        return type(request).model_validate({**request.model_dump(), **fields})
    except ValueError as e:  # pydantic's ValidationError is a ValueError
        errors = e.errors() if hasattr(e, "errors") else [{"loc": (), "msg": str(e)}]
        raise ScriptError(
            f"{where}: " + "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in errors)
        ) from None
