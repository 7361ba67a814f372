"""X/Y/Z plot (A1111's script, on Easel's public extension API only).

Up to three axes, each a parameter and its values: a comma list (`5, 10, 20`; quote values that hold commas) or
ranges `1-5`, `1-10 (+2)`, `10-1 (-3)`, `0.5-1.5 [5]` (five values, evenly spaced). An axis with a known set of
values (checkpoints, samplers, schedule types, VAEs: the host's live lists, `ext.choices`) is picked from a
multiselect dropdown instead (`x_values_dropdown`, as A1111), unless `csv_mode` ("Use text inputs instead of
dropdowns"). One ordinary generation runs per cell; the result is a labelled grid, then every cell image with its own
infotext.
"""

from __future__ import annotations

import csv
import importlib
import io
import math
import random
import re
from dataclasses import dataclass
from typing import Any, Callable

from webui.extensions.api import Script, ScriptError


NUM = r"[+-]?\s*\d+(?:\.\d*)?"
RANGE = re.compile(rf"^\s*({NUM})\s*-\s*({NUM})\s*(?:\(\s*({NUM})\s*\)|\[\s*(\d+)\s*\])?\s*$")
LORA = re.compile(r"<lora:([^:>]+)((?::[^>]*)?)>")


def _lib(name: str) -> Any:
    """This extension's helper modules in lib/ (scripts/ holds only entry points), imported on first use: the host
    loads the extension as a package, so `..lib.<name>` is this extension's own, loaded once."""
    return importlib.import_module(f"..lib.{name}", __package__)


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


# --- the grid image --------------------------------------------------------------------------------------------


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _wrap(draw: Any, text: str, font: Any, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return [*lines, line] if text else []


def draw_grid(
    cells: list[list[list[Any]]], labels: tuple[list[str], list[str], list[str]], legend: bool, margin: int
) -> tuple[Any, list[Any], dict[str, int]]:
    """cells[z][y][x] (None: not generated) → (the grid, one grid per z, layout {left, top, width, height})."""
    from PIL import Image, ImageDraw

    xs, ys, zs = (lbls if legend else [""] * len(lbls) for lbls in labels)
    present = [im for plane in cells for row in plane for im in row if im is not None]
    w, h = max(im.width for im in present), max(im.height for im in present)
    font = _font(max(10, min(w, h) // 8))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = probe.textbbox((0, 0), "Ag", font=font)[3] + 2
    pad = max(2, line_h // 3)
    col_lines = [_wrap(probe, t, font, max(w - 2 * pad, 16)) for t in xs]
    row_lines = [_wrap(probe, t, font, max(w, 128)) for t in ys]
    z_lines = [_wrap(probe, t, font, len(xs) * w) for t in zs]
    top = max(map(len, col_lines)) * line_h + 2 * pad if any(xs) else 0
    left = max((probe.textlength(ln, font=font) for lines in row_lines for ln in lines), default=0)
    left = int(left) + 2 * pad if any(ys) else 0
    z_top = max(map(len, z_lines)) * line_h + 2 * pad if any(zs) else 0
    sub_size = (left + len(xs) * (w + margin) - margin, z_top + top + len(ys) * (h + margin) - margin)

    def text_block(draw: Any, lines: list[str], x: int, y: int, width: int, height: int) -> None:
        y0 = y + (height - len(lines) * line_h) // 2
        for i, line in enumerate(lines):
            draw.text(
                (x + (width - draw.textlength(line, font=font)) / 2, y0 + i * line_h), line, fill="black", font=font
            )

    subs = []
    for zi, plane in enumerate(cells):
        sub = Image.new("RGB", sub_size, "white")
        draw = ImageDraw.Draw(sub)
        text_block(draw, z_lines[zi], 0, 0, sub_size[0], z_top)
        for xi in range(len(xs)):
            text_block(draw, col_lines[xi], left + xi * (w + margin), z_top, w, top)
        for yi, row in enumerate(plane):
            y = z_top + top + yi * (h + margin)
            text_block(draw, row_lines[yi], 0, y, left, h)
            for xi, im in enumerate(row):
                if im is not None:
                    sub.paste(im.convert("RGB"), (left + xi * (w + margin), y))
        subs.append(sub)
    gap = max(margin, 2 * pad) if len(subs) > 1 else 0
    grid = Image.new("RGB", (len(subs) * (sub_size[0] + gap) - gap, sub_size[1]), "white")
    for i, sub in enumerate(subs):
        grid.paste(sub, (i * (sub_size[0] + gap), 0))
    return grid, subs, {"left": left, "top": z_top + top, "width": w, "height": h, "z_gap": gap}


# --- the script ------------------------------------------------------------------------------------------------


class XYZPlot(Script):
    title = "X/Y/Z plot"
    visibility = "both"
    always_on = False
    args = (
        "x_type",
        "x_values",
        "y_type",
        "y_values",
        "z_type",
        "z_values",
        "draw_legend",
        "keep_random_seeds",
        "include_sub_grids",
        "margin_size",
        "x_values_dropdown",
        "y_values_dropdown",
        "z_values_dropdown",
        "csv_mode",
    )

    def __init__(self, settings: Any = None, lists: Callable[[str], list[str]] | None = None):
        self.settings = settings  # the extension's view of the options: the limits below
        self.lists = lists  # ext.choices: the live checkpoint, VAE, sampler and schedule type lists

    def axis_choices(self, label: Any) -> list[str] | None:
        """The names the axis' dropdown offers now; None for an axis without a list (free text)."""
        axis = next((a for a in AXES if a.label == label), None)
        if axis is None or axis.choices is None:
            return None
        return list(self.lists(axis.choices)) if self.lists is not None else []

    def ui(self, is_img2img: bool) -> dict[str, Any]:
        return _lib("ui").build_ui(self, "img2img" if is_img2img else "txt2img", [a.label for a in AXES])

    def _limit(self, key: str, default: int) -> int:
        try:
            return int(self.settings.get(key)) if self.settings is not None else default
        except (KeyError, TypeError, ValueError):
            return default

    def _axes(
        self, request: Any, types: tuple, texts: tuple, keep_random_seeds: bool, picked: tuple = (None, None, None)
    ) -> tuple[Any, list, list]:
        """(base request, axes, values per axis), with the number of cells checked before any list is built."""
        limit = self._limit("xyz_max_cells", 256)
        fixed = (
            {}
            if keep_random_seeds
            else {
                "seed": request.seed if request.seed != -1 else random.randrange(4294967294),
                "subseed": request.subseed if request.subseed != -1 else random.randrange(4294967294),
            }
        )
        base = variant(request, {**fixed, "script_name": None, "script_args": []}, "X/Y/Z plot")
        axes = [find_axis(t) for t in types]
        values = [axis_values(a, v, base, keep_random_seeds, limit, p) for a, v, p in zip(axes, texts, picked)]
        cells = math.prod(len(v) for v in values)
        if cells > limit:
            raise ScriptError(
                f"X/Y/Z plot: {' × '.join(str(len(v)) for v in values)} = {cells} cells, more than "
                f"{limit} (setting xyz_max_cells)"
            )
        return base, axes, values

    def _cells(self, base: Any, axes: list, values: list):
        """(z, y, x indices, request) of every cell, in the order they run."""
        xv, yv, zv = values
        for zi, z in enumerate(zv):
            for yi, y in enumerate(yv):
                for xi, x in enumerate(xv):
                    req = base
                    for axis, value, vals in zip(axes, (x, y, z), values):
                        if axis.apply is not None:
                            req = variant(req, axis.apply(req, value, vals), f"{axis.label} {value}")
                    yield zi, yi, xi, req

    def _check_grid(self, sizes: list[tuple[int, int]]) -> None:
        """A1111's check: the grid (every cell at the largest cell's size) within img_max_size_mp."""
        limit = self._limit("img_max_size_mp", 200)
        mp = len(sizes) * max(w for w, _ in sizes) * max(h for _, h in sizes) / 1e6
        if mp > limit:
            raise ScriptError(
                f"X/Y/Z plot: the resulting grid would be too large ({mp:.0f} megapixels; the limit is "
                f"{limit}, setting img_max_size_mp)"
            )

    def planned_requests(
        self,
        request: Any,
        *,
        x_type: Any = "Seed",
        x_values: Any = "",
        y_type: Any = "Nothing",
        y_values: Any = "",
        z_type: Any = "Nothing",
        z_values: Any = "",
        keep_random_seeds: bool = False,
        x_values_dropdown: Any = None,
        y_values_dropdown: Any = None,
        z_values_dropdown: Any = None,
        csv_mode: bool = False,
        **_: Any,
    ) -> list[Any]:
        """Every cell's request (Easel checks their cost before queueing), after the cell count and grid checks."""
        picked = (None, None, None) if csv_mode else (x_values_dropdown, y_values_dropdown, z_values_dropdown)
        base, axes, values = self._axes(
            request, (x_type, y_type, z_type), (x_values, y_values, z_values), keep_random_seeds, picked
        )
        cells = [req for *_, req in self._cells(base, axes, values)]
        self._check_grid([_final_size(req) for req in cells])
        return cells

    def run(
        self,
        runner: Any,
        request: Any,
        *,
        x_type: Any = "Seed",
        x_values: Any = "",
        y_type: Any = "Nothing",
        y_values: Any = "",
        z_type: Any = "Nothing",
        z_values: Any = "",
        draw_legend: bool = True,
        keep_random_seeds: bool = False,
        include_sub_grids: bool = False,
        margin_size: Any = 0,
        x_values_dropdown: Any = None,
        y_values_dropdown: Any = None,
        z_values_dropdown: Any = None,
        csv_mode: bool = False,
        **_: Any,
    ) -> Any:
        picked = (None, None, None) if csv_mode else (x_values_dropdown, y_values_dropdown, z_values_dropdown)
        base, axes, values = self._axes(
            request, (x_type, y_type, z_type), (x_values, y_values, z_values), keep_random_seeds, picked
        )
        xv, yv, zv = values
        cells: list[list[list[Any]]] = [[[None] * len(xv) for _ in yv] for _ in zv]
        results, stopped = [], False
        for zi, yi, xi, req in self._cells(base, axes, values):
            if stopped:
                break
            res = runner.generate(req)
            first = int(res.info.get("index_of_first_image", 0) or 0) if len(res.images) > 1 else 0
            if res.images[first:]:
                cells[zi][yi][xi] = res.images[first]
                results.append((res, first))
            stopped = bool(res.interrupted) or not res.images[first:]
        if not results:
            raise ScriptError("X/Y/Z plot: no cell was generated (interrupted?)")
        x_labels, y_labels, z_labels = ([cell_label(a, v) for v in vals] for a, vals in zip(axes, values))
        labels = (x_labels, y_labels, z_labels)
        self._check_grid([im.size for plane in cells for row in plane for im in row if im is not None])
        grid, subs, layout = draw_grid(cells, labels, bool(draw_legend), int(float(margin_size or 0)))
        subs = subs if include_sub_grids and len(subs) > 1 else []
        images = [im for res, first in results for im in res.images[first:]]
        texts = [t for res, first in results for t in res.infotexts[first:]]
        paths = [p for res, _ in results for p in res.paths]
        save = getattr(runner, "save_grid", None)
        saved = save(grid, request=base, infotext=texts[0]) if callable(save) else None
        info = {
            **results[0][0].info,
            "index_of_first_image": 1 + len(subs),
            "infotexts": [texts[0]] * (1 + len(subs)) + texts,
            "all_seeds": [s for res, _ in results for s in res.info.get("all_seeds", [])],
            "all_prompts": [p for res, _ in results for p in res.info.get("all_prompts", [])],
            "xyz_plot": {
                "x_type": axes[0].label,
                "y_type": axes[1].label,
                "z_type": axes[2].label,
                "x_labels": labels[0],
                "y_labels": labels[1],
                "z_labels": labels[2],
                **layout,
            },
        }
        return results[0][0].model_copy(
            update={
                "images": [grid, *subs, *images],
                "infotexts": [texts[0]] * (1 + len(subs)) + texts,
                "info": info,
                "paths": ([saved] if saved else []) + paths,
                "interrupted": stopped,
                "warnings": [w for res, _ in results for w in res.warnings],
            }
        )


def _final_size(req: Any) -> tuple[int, int]:
    """A cell image's size as far as the request tells (an empty size counts as 1024, the largest native size)."""
    w, h = req.width or 1024, req.height or 1024
    if getattr(req, "enable_hr", False) and not hasattr(req, "init_images"):
        if req.hr_resize_x or req.hr_resize_y:
            return req.hr_resize_x or round(req.hr_resize_y * w / h), req.hr_resize_y or round(req.hr_resize_x * h / w)
        return int(w * req.hr_scale), int(h * req.hr_scale)
    return w, h


def setup(ext: Any) -> None:
    ext.add_script(XYZPlot(ext.settings, lists=ext.choices))
