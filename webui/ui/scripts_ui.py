"""The scripts block of the txt2img/img2img tabs: one accordion per always-on script, then A1111's "Script"
dropdown with the selected script's arguments. `request_fields(*values)` turns the components' values into the
request's script_name / script_args / alwayson_scripts, every argument by name. An argument may be an `ArgGroup`
(several components combined into one value, e.g. a ControlNet unit). `paste_updates(params)` lets the always-on
scripts restore their arguments from a parsed infotext (PNG Info, Send-to, ↙️)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.extensions.api import ArgGroup

if TYPE_CHECKING:
    from webui.app import Application

log = logging.getLogger("easel.ui")
NONE = "None"


@dataclass
class _Arg:
    """One script argument: its components (one, or an ArgGroup's) and how their values become the argument."""

    name: str
    components: list[Any]
    combine: Any = None  # None: the single component's value is the argument


@dataclass
class _Slot:
    title: str
    always_on: bool
    rec: Any = None
    script: Any = None
    args: list[_Arg] = field(default_factory=list)  # in the order of their components

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.args]


def _elem(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")


class ScriptsUI:
    """Build inside the tab's settings column. Wire `[*tab_inputs, *scripts.components]` as the Generate inputs
    and give the trailing values to `request_fields`."""

    def __init__(self, application: Application, kind: str):
        self.app, self.kind = application, kind
        self.is_img2img = kind == "img2img"
        host = application.extensions
        self.slots: list[_Slot] = []
        self.inputs: list[gr.components.Component] = []
        self.groups: list[gr.Group] = []
        chosen = host.scripts(kind) if host is not None else []
        for rec, script in [(r, s) for r, s in chosen if s.always_on]:
            with gr.Accordion(script.title, open=False, elem_id=f"{kind}_script_{_elem(script.title)}") as acc:
                self._add(rec, script)
            if not self.slots[-1].names:
                acc.visible = False  # a script with no controls (API-only for now) gets no empty accordion
        dropdown = [(r, s) for r, s in chosen if not s.always_on]
        self.titles = [s.title for _, s in dropdown]
        self.script = gr.Dropdown([NONE, *self.titles], value=NONE, label="Script", elem_id=f"{kind}_script")
        for rec, script in dropdown:
            with gr.Group(visible=False, elem_id=f"{kind}_script_{_elem(script.title)}") as group:
                self._add(rec, script)
            self.groups.append(group)
        self.script.change(self.on_select, inputs=[self.script], outputs=self.groups, queue=False)

    def _add(self, rec, script) -> None:
        components = self.app.extensions.call(rec, f"{script.title}.ui", script.ui, self.is_img2img) or {}
        slot = _Slot(title=script.title, always_on=script.always_on, rec=rec, script=script)
        for name, value in components.items():
            if script.args and name not in script.args:
                log.warning("script %s: ui() component %r is not in its args; it is not sent", script.title, name)
                continue
            arg = (
                _Arg(name, list(value.components), value.combine)
                if isinstance(value, ArgGroup)
                else _Arg(name, [value])
            )
            slot.args.append(arg)
            self.inputs.extend(arg.components)
        self.slots.append(slot)

    @property
    def components(self) -> list[gr.components.Component]:
        """What to append to the Generate button's inputs: the dropdown, then every script argument."""
        return [self.script, *self.inputs]

    def on_select(self, title: str | None):
        return [gr.update(visible=title == t) for t in self.titles]

    def request_fields(self, title: str | None, *values: Any) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
        """(script_name, script_args, alwayson_scripts) from the values of `components`, every argument by name.
        Always-on scripts are always sent (as in A1111's UI); the dropdown script only when one is chosen."""
        if len(values) != len(self.inputs):
            raise ValueError(f"expected {len(self.inputs)} script values, got {len(values)}")
        it = iter(values)
        chosen = title if title and title != NONE else None
        script_args: dict[str, Any] = {}
        alwayson: dict[str, Any] = {}
        for slot in self.slots:
            args = {arg.name: self._value(slot, arg, [next(it) for _ in arg.components]) for arg in slot.args}
            if slot.always_on and slot.names:
                alwayson[slot.title] = {"args": args}
            elif slot.title == chosen:
                script_args = args
        return chosen, script_args, alwayson

    def _value(self, slot: _Slot, arg: _Arg, values: list[Any]) -> Any:
        """The argument from its components' values: an ArgGroup's `combine` runs as extension code (a
        ScriptError becomes the job's visible InvalidRequest; a crash disables the extension, sending None)."""
        if arg.combine is None:
            return values[0]
        return self.app.extensions.call(slot.rec, f"{slot.title}.{arg.name} combine", arg.combine, *values)

    def paste_updates(self, params: dict[str, Any] | None) -> list[Any]:
        """One update per `inputs` entry from a parsed infotext: each always-on script's `paste(params,
        is_img2img)` says which arguments to restore (an ArgGroup's as a list, one value per component); None,
        and anything a script does not name, leaves the component as it is."""
        out: list[Any] = []
        for slot in self.slots:
            restored: dict[str, Any] = {}
            if slot.always_on and params:
                restored = (
                    self.app.extensions.call(
                        slot.rec, f"{slot.title}.paste", slot.script.paste, params, self.is_img2img
                    )
                    or {}
                )
            for arg in slot.args:
                out.extend(_updates(arg, restored.get(arg.name)))
        return out


def _updates(arg: _Arg, value: Any) -> list[Any]:
    """gr.update values for one argument's components from what `paste` returned for it."""
    n = len(arg.components)
    if value is None:
        return [gr.update() for _ in range(n)]
    values = list(value) if arg.combine is not None and isinstance(value, (list, tuple)) else [value]
    if len(values) != n:
        log.warning("paste for %r: expected %d value(s), got %d; left as it is", arg.name, n, len(values))
        return [gr.update() for _ in range(n)]
    return [_update(v) for v in values]


def _update(value: Any) -> Any:
    """A value to set; None keeps the component's value; a gr.update(...) dict (new choices, say) passes as is."""
    if value is None:
        return gr.update()
    if isinstance(value, dict) and value.get("__type__") == "update":
        return value
    return gr.update(value=value)


def build_scripts_ui(application: Application, kind: str) -> ScriptsUI:
    """The scripts block for `kind` ("txt2img" or "img2img"), built in the current Blocks context."""
    return ScriptsUI(application, kind)
