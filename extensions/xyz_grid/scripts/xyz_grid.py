"""X/Y/Z plot (A1111's script, on Easel's public extension API only).

Up to three axes, each a parameter and its values: a comma list (`5, 10, 20`; quote values that hold commas) or
ranges `1-5`, `1-10 (+2)`, `10-1 (-3)`, `0.5-1.5 [5]` (five values, evenly spaced). An axis with a known set of
values (checkpoints, samplers, schedule types, VAEs: the host's live lists, `ext.choices`) is picked from a
multiselect dropdown instead (`x_values_dropdown`, as A1111), unless `csv_mode` ("Use text inputs instead of
dropdowns"). One ordinary generation runs per cell; the result is a labelled grid, then every cell image with its own
infotext.

The axes and their values are in lib/axes.py, the grid image in lib/grid_image.py, the controls in lib/ui.py.
"""

from __future__ import annotations

import importlib
import math
import random
from typing import Any, Callable

from webui.extensions.api import Script, ScriptError

from ..lib.axes import (
    AXES,
    Axis,
    _lora_weight,
    _prompt_sr,
    axis_values,
    cell_label,
    count_numbers,
    expand_numbers,
    find_axis,
    picked_values,
    split_values,
    variant,
)
from ..lib.grid_image import draw_grid

__all__ = [
    "AXES",
    "Axis",
    "XYZPlot",
    "_lora_weight",
    "_prompt_sr",
    "axis_values",
    "cell_label",
    "count_numbers",
    "draw_grid",
    "expand_numbers",
    "find_axis",
    "picked_values",
    "setup",
    "split_values",
    "variant",
]


def _lib(name: str) -> Any:
    """This extension's helper modules in lib/ (scripts/ holds only entry points), imported on first use: the host
    loads the extension as a package, so `..lib.<name>` is this extension's own, loaded once."""
    return importlib.import_module(f"..lib.{name}", __package__)


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
