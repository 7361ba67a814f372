"""The X/Y/Z plot's controls (A1111's layout): per axis its type, the free-text values and, for an axis with a known
set of values, a multiselect of them (`x_values_dropdown`) with 📒 to pick them all; "Use text inputs instead of
dropdowns" (`csv_mode`) types them instead. 🔄 (elem_id ending in `_refresh_models`, so the top bar's 🔄 runs it too)
reads the lists again."""

from __future__ import annotations

import csv
import io
from typing import Any

import gradio as gr

AXES = ("x", "y", "z")
DEFAULT_TYPES = {"x": "Seed", "y": "Nothing", "z": "Nothing"}


def to_csv(values: list[str]) -> str:
    """Names as one comma list, quoted where a name holds a comma (split_values reads it back)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(values)
    return buf.getvalue()


def from_csv(text: Any) -> list[str]:
    rows = csv.reader(io.StringIO(str(text or "")), skipinitialspace=True)
    return [v.strip() for row in rows for v in row if v.strip()]


def select_axis(plot: Any, label: Any, text: Any, picked: Any, csv_mode: Any) -> tuple[Any, Any, Any]:
    """(📒, values box, values dropdown) updates for an axis type: the values move to whichever shows."""
    choices = plot.axis_choices(label)
    picked = [v for v in (picked or []) if isinstance(v, str)]
    if choices is None:
        return gr.update(visible=False), gr.update(visible=True), gr.update(visible=False)
    if csv_mode:
        kept = [v for v in picked if v in choices]
        text_update = gr.update(visible=True, value=to_csv(kept)) if kept else gr.update(visible=True)
        return gr.update(visible=True), text_update, gr.update(visible=False, choices=choices, value=[])
    kept = [v for v in (picked or from_csv(text)) if v in choices]
    return (
        gr.update(visible=True),
        gr.update(visible=False, value=""),
        gr.update(visible=True, choices=choices, value=kept),
    )


def build_ui(plot: Any, prefix: str, names: list[str]) -> dict[str, Any]:
    """The components, {argument name: component}, built in the current Blocks context, with their events."""
    out: dict[str, Any] = {}
    fills: dict[str, gr.Button] = {}

    def eid(name: str) -> str:
        return f"script_{prefix}_xyz_plot_{name}"

    for axis in AXES:
        label = DEFAULT_TYPES[axis]
        choices = plot.axis_choices(label)
        with gr.Row(equal_height=True):
            out[f"{axis}_type"] = gr.Dropdown(
                names, value=label, label=f"{axis.upper()} type", scale=1, elem_id=eid(f"{axis}_type")
            )
            out[f"{axis}_values"] = gr.Textbox(
                label=f"{axis.upper()} values",
                lines=1,
                scale=3,
                visible=choices is None,
                elem_id=eid(f"{axis}_values"),
                placeholder="e.g. 1-5, or 5, 10, 20, or 0.5-1.5 [5]",
            )
            out[f"{axis}_values_dropdown"] = gr.Dropdown(
                choices or [],
                value=[],
                multiselect=True,
                label=f"{axis.upper()} values",
                scale=3,
                visible=choices is not None,
                elem_id=eid(f"{axis}_values_dropdown"),
            )
            fills[axis] = gr.Button(
                "📒",
                scale=0,
                min_width=40,
                visible=choices is not None,
                elem_id=eid(f"fill_{axis}_tool_button"),
                elem_classes=["easel-tool"],
            )
    with gr.Row():
        out["draw_legend"] = gr.Checkbox(True, label="Draw legend")
        out["keep_random_seeds"] = gr.Checkbox(False, label="Keep -1 for seeds")
        out["include_sub_grids"] = gr.Checkbox(False, label="Include Sub Grids")
        out["csv_mode"] = gr.Checkbox(False, label="Use text inputs instead of dropdowns", elem_id=eid("csv_mode"))
        refresh = gr.Button(
            "🔄", scale=0, min_width=40, elem_id=f"{prefix}_xyz_refresh_models", elem_classes=["easel-tool"]
        )
    out["margin_size"] = gr.Slider(0, 500, value=0, step=2, label="Grid margins (px)")
    wire(plot, out, fills, refresh)
    return out


def wire(plot: Any, out: dict[str, Any], fills: dict[str, gr.Button], refresh: gr.Button) -> None:
    csv_mode = out["csv_mode"]
    every: list[Any] = []  # (type, box, dropdown) of each axis, in order
    for axis in AXES:
        kind, box, dropdown = out[f"{axis}_type"], out[f"{axis}_values"], out[f"{axis}_values_dropdown"]
        every += [kind, box, dropdown]
        kind.change(
            lambda label, text, picked, csv_on: select_axis(plot, label, text, picked, csv_on),
            inputs=[kind, box, dropdown, csv_mode],
            outputs=[fills[axis], box, dropdown],
            queue=False,
        )
        fills[axis].click(
            lambda label, csv_on: fill(plot, label, csv_on),
            inputs=[kind, csv_mode],
            outputs=[box, dropdown],
            queue=False,
        )

    def on_csv(csv_on: Any, *values: Any) -> list[Any]:
        updates: list[Any] = []
        for i in range(len(AXES)):
            label, text, picked = values[3 * i : 3 * i + 3]
            fill_update, box_update, dropdown_update = select_axis(plot, label, text, picked, csv_on)
            updates += [box_update, dropdown_update]
        return updates

    boxes = [c for axis in AXES for c in (out[f"{axis}_values"], out[f"{axis}_values_dropdown"])]
    csv_mode.change(on_csv, inputs=[csv_mode, *every], outputs=boxes, queue=False)
    dropdowns = [out[f"{axis}_values_dropdown"] for axis in AXES]
    refresh.click(
        lambda *values: refreshed(plot, *values),
        inputs=[*(out[f"{a}_type"] for a in AXES), *dropdowns],
        outputs=dropdowns,
        queue=False,
    )


def fill(plot: Any, label: Any, csv_mode: Any) -> tuple[Any, Any]:
    """📒: every value the axis' list holds, in the box or the dropdown (whichever shows)."""
    choices = plot.axis_choices(label)
    if choices is None:
        return gr.update(), gr.update()
    if csv_mode:
        return gr.update(value=to_csv(choices)), gr.update()
    return gr.update(), gr.update(choices=choices, value=list(choices))


def refreshed(plot: Any, *values: Any) -> list[Any]:
    """🔄: each axis' dropdown with the lists as they are now; picked values still listed stay picked."""
    labels, picked = values[: len(AXES)], values[len(AXES) :]
    updates = []
    for label, chosen in zip(labels, picked):
        choices = plot.axis_choices(label)
        if choices is None:
            updates.append(gr.update())
        else:
            updates.append(gr.update(choices=choices, value=[v for v in (chosen or []) if v in choices]))
    return updates
