"""The Settings tab: every option, grouped by section, with a typed component each; "Apply settings" validates
and persists through the Application (config.json). A sidebar picks a section and a search box finds a setting by
its label or name (both in the page, no server call); options marked `reload_ui` say "(requires Reload UI)", and
"Reload UI" rebuilds the page from the settings in force (webui/api/ui_reload.py). Every other setting is read when
it is used, and the page's defaults (steps, sampler, the top bar) are read again at each page load."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.models import samplers
from webui.settings import OptionDef
from webui.ui.common import error_html, error_message, ok_html

if TYPE_CHECKING:
    from webui.app import Application

QUICKSETTINGS = ("sd_model_checkpoint",)  # shown in the top bar instead (and whatever quicksettings_list pins)
RELOAD_NOTE = " (requires Reload UI)"
# In the page, no server call: the sidebar shows one section (or all), the search box the settings whose label or
# name contains the text (over all sections), hiding sections left empty.
SECTION_JS = """(section) => {
  document.querySelectorAll('[id^=settings_section_]').forEach(g => {
    const id = 'settings_section_' + (section || '').toLowerCase().replaceAll(' ', '_');
    g.style.display = (section === 'All' || g.id === id) ? '' : 'none'; });
  const q = document.querySelector('#settings_search textarea, #settings_search input'); if (q) q.value = '';
  document.querySelectorAll('[id^=settings_section_] [id^=setting_]').forEach(e => e.style.display = '');
  return section; }"""
SEARCH_JS = """(query) => {
  const q = (query || '').trim().toLowerCase();
  document.querySelectorAll('[id^=settings_section_]').forEach(g => {
    let shown = 0;
    g.querySelectorAll('[id^=setting_]').forEach(e => {
      const hit = !q || e.id.slice(8).toLowerCase().includes(q) || e.innerText.toLowerCase().includes(q);
      e.style.display = hit ? '' : 'none'; shown += hit ? 1 : 0; });
    g.style.display = shown ? '' : 'none'; });
  return query; }"""
RELOAD_JS = "() => { setTimeout(() => window.location.reload(), 300); }"


def option_choices(application: Application, d: OptionDef) -> list[str] | None:
    if d.key == "sd_vae":
        return ["Automatic", "None", *[v.name for v in application.models.vaes]]
    if d.key == "forge_additional_modules":  # Forge's "VAE / Text Encoder": files in models/VAE, text_encoder, clip
        from webui.models.parts import module_files

        return module_files(application.models.vae_dir.parent)
    if d.key == "txt2img_default_sampler":
        return samplers.sampler_names()
    if d.key == "quicksettings_list":
        return sorted(application.options.defs)
    if callable(d.choices):
        return list(d.choices())
    return list(d.choices) if d.choices else None


def option_component(application: Application, d: OptionDef, value: Any, **layout: Any) -> gr.components.Component:
    """The component for one option: checkbox, dropdown, slider (bounded number), number or textbox."""
    label = d.label + (RELOAD_NOTE if d.reload_ui else "")
    common = {"label": label, "elem_id": f"setting_{d.key}", **layout}
    locked = application.options.policy.lock_reason(d.key, d)
    if locked:  # the same rule Apply enforces (webui/option_policy.py), shown before the user types
        common.update(interactive=False, info=locked)
    if d.kind is bool:
        return gr.Checkbox(value=bool(value), **common)
    choices = option_choices(application, d)
    if d.kind is list:
        if choices is not None:
            return gr.Dropdown(choices, value=list(value or []), multiselect=True, allow_custom_value=True, **common)
        return gr.Textbox(value=shown(d, value, choices), **{"info": "comma-separated", **common})
    if choices is not None:
        return gr.Dropdown(choices, value=value, allow_custom_value=value not in choices, **common)
    if d.kind in (int, float):
        step = d.step or (1 if d.kind is int else 0.01)
        if d.minimum is not None and d.maximum is not None and (d.maximum - d.minimum) / step <= 10000:
            return gr.Slider(d.minimum, d.maximum, value=value, step=step, **common)
        bounds = [
            f"min {d.minimum:g}" if d.minimum is not None else "",
            f"max {d.maximum:g}" if d.maximum is not None else "",
        ]
        info = ", ".join(b for b in bounds if b) or None
        return gr.Number(value=value, precision=0 if d.kind is int else None, **{"info": info, **common})
    if d.kind is not str:  # a structured option (an extension's): edited as JSON
        return gr.Textbox(value=shown(d, value, choices), **{"info": "JSON", **common})
    return gr.Textbox(value=shown(d, value, choices), **common)


def shown(d: OptionDef, value: Any, choices: list[str] | None) -> Any:
    """The value as its component holds it: text for list options without choices and for structured ones."""
    if d.kind is list and choices is None:
        return ", ".join(map(str, value or []))
    if d.kind not in (str, int, float, bool, list):
        return json.dumps(value)
    if d.kind is str and value is None:
        return ""
    return value


def normalize(d: OptionDef, value: Any) -> Any:
    """The option's own type from the component's value: Gradio hands numbers back as floats, and list or
    structured options are edited as text."""
    if d.kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if d.kind is list and isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if d.kind not in (str, int, float, bool, list) and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value  # the service names the option and the expected type
    return value


class SettingsTab:
    def __init__(self, application: Application, pinned: tuple[str, ...] | list[str] = ()):
        self.app = application
        opts = application.options
        # the top bar's settings are not repeated here (A1111 does the same: one component, one elem_id each)
        self.defs = [d for d in opts.defs.values() if d.key not in QUICKSETTINGS and d.key not in pinned]
        with gr.Row():
            self.apply = gr.Button(
                "Apply settings", variant="primary", elem_id="settings_submit", scale=0, min_width=200
            )
            self.reload = gr.Button("Reload settings", elem_id="settings_reload", scale=0, min_width=160)
            self.reload_ui = gr.Button("Reload UI", elem_id="settings_restart_gradio", scale=0, min_width=140)
        self.result = gr.HTML("", elem_id="settings_result")
        self.components: list[gr.components.Component] = []
        sections: dict[str, list[OptionDef]] = {}
        for d in self.defs:
            sections.setdefault(d.section, []).append(d)
        # components are made section by section, so the defs must be in that order too (Apply zips them)
        self.defs = [d for defs in sections.values() for d in defs]
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=200, elem_id="settings_sidebar"):
                self.search = gr.Textbox(
                    label="Search settings", placeholder="label or name", elem_id="settings_search"
                )
                self.section = gr.Radio(["All", *sections], value="All", label="Sections", elem_id="settings_sections")
            with gr.Column(scale=5):
                for section, defs in sections.items():
                    with gr.Group(
                        elem_id=f"settings_section_{section.lower().replace(' ', '_')}",
                        elem_classes=["easel-settings-section"],
                    ):
                        gr.Markdown(f"### {section}")
                        for d in defs:
                            self.components.append(option_component(application, d, opts.get(d.key)))
        self.sections = list(sections)
        self.apply.click(self.on_apply, inputs=self.components, outputs=[self.result, *self.components])
        # No reload on tab select: a late answer would overwrite what the user has just typed.
        self.reload.click(self.values, inputs=None, outputs=self.components)
        self.reload_ui.click(self.on_reload_ui, inputs=None, outputs=[self.result]).then(fn=None, js=RELOAD_JS)
        self.section.change(fn=None, inputs=[self.section], outputs=None, js=SECTION_JS)
        self.search.change(fn=None, inputs=[self.search], outputs=None, js=SEARCH_JS)

    async def on_reload_ui(self) -> str:
        reloader = self.app.ui_reloader
        if reloader is None:
            return error_html("Reload UI works when Easel serves the page (not in this embedding).")
        try:
            await reloader.request()
        except Exception as e:
            logging.getLogger("easel.ui").exception("Reload UI failed")
            return error_html(f"Reload UI failed: {error_message(e)}")
        return ok_html("Reloading the UI with the settings in force…")

    def values(self) -> list[Any]:
        return [shown(d, self.app.options.get(d.key), option_choices(self.app, d)) for d in self.defs]

    def changes(self, values: tuple[Any, ...]) -> dict[str, Any]:
        current = self.app.options.all()
        out = {}
        for d, value in zip(self.defs, values):
            value = normalize(d, value)
            if value != current.get(d.key):
                out[d.key] = value
        return out

    def on_apply(self, *values):
        keep = [gr.update() for _ in self.components]
        changes = self.changes(values)
        if not changes:
            return ok_html("Nothing changed."), *keep
        try:
            self.app.set_options(changes)
        except Exception as e:  # a validation error: nothing is applied, and the message is shown
            msg = error_message(e)
            gr.Warning(msg)
            return error_html(msg), *keep
        return ok_html(f"{len(changes)} setting(s) changed: {', '.join(changes)}."), *self.values()
