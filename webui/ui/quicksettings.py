"""The top bar (A1111's quicksettings): the checkpoint dropdown with its refresh button, the settings pinned by the
`quicksettings_list` option (VAE, Clip skip, any option), and the demo-model note.

🔄 is the one refresh for every model list on the page (#19 item 7): it rescans the model folders and updates the
top bar and every list registered with `lists.add` (Train's base checkpoint, the Hires and Merger checkpoints), and it
also runs every other list-refresh button on the page (an extension's, e.g. ControlNet's model list: see
`adopt_refresh_buttons`)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, Callable

import gradio as gr

from webui.generation.native import native_size
from webui.ui.common import error_html, error_message, ok_html

if TYPE_CHECKING:
    from webui.app import Application

DEMO_NOTE = "This is Easel's small demo model (64×64 shapes). Put real checkpoints in models/Stable-diffusion/."
CHECKPOINT = "sd_model_checkpoint"  # always first in the bar, with its own dropdown and 🔄
MODULES = "forge_additional_modules"  # Forge's top-bar "VAE / Text Encoder" selector
# elem_id endings of other list-refresh buttons the top 🔄 also runs (extensions' lists, the Extra networks cards)
REFRESH_SUFFIXES = ("_refresh_models", "_extra_networks_refresh")


def checkpoint_titles(application: Application) -> list[str]:
    titles = [info.title for info in application.catalog.list()]
    active = active_title(application)
    if active and active not in titles:
        titles.append(active)
    return titles


def active_title(application: Application) -> str | None:
    model = application.models.active
    return model.info.title if model is not None else None


def demo_note(application: Application) -> str:
    model = application.models.active
    if model is None or not model.info.is_demo:
        return ""
    return f'<div class="easel-note">{html.escape(DEMO_NOTE, quote=False)}</div>'


def modules_wanted(application: Application) -> bool:
    """Whether the active checkpoint takes separate VAE / text encoder files: an SD 3/3.5 or FLUX.1 single file
    (transformer-only, or all-in-one whose parts a chosen file replaces); a diffusers folder brings its own."""
    from webui.models.manager import SEPARATE_PARTS

    model = application.models.active
    return model is not None and model.probe.family in SEPARATE_PARTS and not model.info.is_folder


def pinned_keys(application: Application) -> list[str]:
    """The options `quicksettings_list` pins besides the checkpoint, in its order; unknown names are left out."""
    keys = application.options.get("quicksettings_list") or []
    out: list[str] = []
    for key in keys:
        if key != CHECKPOINT and key in application.options.defs and key not in out:
            out.append(key)
    return out


class ModelLists:
    """Dropdowns that list model files: each with the function that gives its choices now."""

    def __init__(self):
        self.entries: list[tuple[gr.Dropdown, Callable[[], list]]] = []

    def add(self, component: gr.Dropdown, choices: Callable[[], list]) -> None:
        self.entries.append((component, choices))

    @property
    def components(self) -> list[gr.Dropdown]:
        return [c for c, _ in self.entries]

    def updates(self) -> list[Any]:
        """Fresh choices for each; the selected value stays (Gradio keeps it if still listed)."""
        return [gr.update(choices=choices()) for _, choices in self.entries]


class Quicksettings:
    def __init__(self, application: Application):
        from webui.ui.settings_tab import option_component

        self.app = application
        # the generation tabs' components a switch updates (set by wire(); none before it, e.g. in handler tests)
        self.distilled: list[gr.Slider] = []
        self.slg: list[Any] = []  # txt2img's "Skip layer guidance" panel
        self.sampling: list[gr.Dropdown] = []
        self.lists = ModelLists()
        self.keys = pinned_keys(application)
        self.pinned: dict[str, gr.components.Component] = {}
        with gr.Row(elem_id="quicksettings", equal_height=True):
            self.checkpoint = gr.Dropdown(
                checkpoint_titles(application),
                value=active_title(application),
                label="Stable Diffusion checkpoint",
                elem_id="setting_sd_model_checkpoint",
                scale=0,
                min_width=420,
                allow_custom_value=False,
            )
            self.refresh = gr.Button("🔄", elem_id="refresh_sd_model_checkpoint", scale=0, min_width=48)
            for key in self.keys:
                d = application.options.defs[key]
                self.pinned[key] = option_component(
                    application, d, application.options.get(key), scale=0, min_width=240
                )
            self.modules = self.pinned.get(MODULES) or option_component(
                application,
                application.options.defs[MODULES],
                application.options.get(MODULES),
                scale=0,
                min_width=240,
                visible=modules_wanted(application),
            )
            self.message = gr.HTML("", elem_id="quicksettings_message")
        self.note = gr.HTML(demo_note(application), elem_id="easel_demo_note")

    def wire(self, txt2img, img2img=None) -> None:
        """Events that reach into the generation tabs: a new checkpoint sets width and height to its native size in
        every tab that shows them (txt2img, and img2img when given)."""
        self.size_outputs = [txt2img.width, txt2img.height, *([img2img.width, img2img.height] if img2img else [])]
        self.distilled = [tab.distilled_cfg_scale for tab in (txt2img, img2img) if tab is not None]
        self.slg = [p for p in (getattr(txt2img, "slg_panel", None),) if p is not None]
        self.sampling = [c for tab in (txt2img, img2img) if tab is not None for c in (tab.sampler, tab.scheduler)]
        # .select, not .input: Gradio 6.31's dropdown fires "input" twice for one choice (two loads of a broken file)
        self.switch_event = self.checkpoint.select(
            self.on_switch,
            inputs=[self.checkpoint],
            outputs=[self.checkpoint, self.message, self.note, *self.size_outputs],
            show_progress_on=[self.checkpoint],
        )
        self.refresh_event = self.refresh.click(
            self.on_refresh,
            inputs=None,
            outputs=[self.checkpoint, self.message, *self.pinned_lists(), *self.lists.components],
        )
        for key, component in self.pinned.items():
            if key != MODULES:
                component.input(
                    lambda value, key=key: self.on_pinned(key, value),
                    inputs=[component],
                    outputs=[self.message, component],
                )
        self.modules.input(self.on_modules, inputs=[self.modules], outputs=[self.message, self.modules])
        # after a switch or a rescan: shown for an SD3/FLUX checkpoint, with the files there are now
        self.after_switch(self.switch_event)
        self.refresh_event.then(self.modules_update, inputs=None, outputs=[self.modules], queue=False)

    def after_switch(self, event: Any, pasted: bool = False) -> None:
        """What follows any checkpoint switch (the top bar's, and Send-to/paste's from an infotext): the "VAE / Text
        Encoder" selector, each tab's "Distilled CFG Scale" and, for SD 3/FLUX, a sampler these families run.
        `pasted`: the fields were just filled from an infotext, so Distilled CFG keeps the value it names."""
        event.then(self.modules_update, inputs=None, outputs=[self.modules], queue=False)
        # dicts, as one output would take a returned list as its own value
        event.then(
            lambda *values: dict(zip(self.distilled, self.distilled_updates(*values))),
            inputs=[] if pasted else self.distilled,
            outputs=self.distilled,
            queue=False,
        )
        event.then(lambda: dict(zip(self.slg, self.slg_updates())), inputs=None, outputs=self.slg, queue=False)
        event.then(self.flow_sampling, inputs=self.sampling, outputs=self.sampling, queue=False)

    def pinned_lists(self) -> list[gr.components.Component]:
        return [c for key, c in self.pinned.items() if key == "sd_vae"]

    def adopt_refresh_buttons(self, demo: gr.Blocks, *events: Any) -> None:
        """After every tab is built: the top 🔄 (and each of `events`, e.g. the model folders' watch) also runs the
        click handlers of the page's other list-refresh buttons (elem_id ending in REFRESH_SUFFIXES, e.g. each
        ControlNet unit's model list), with their own inputs and outputs. Gradio keeps a Blocks' events in
        `demo.fns` (BlockFunction: fn, inputs, outputs, targets); read here once, at build time."""
        ids = {
            block._id
            for block in demo.blocks.values()
            if isinstance(block, gr.Button) and (block.elem_id or "").endswith(REFRESH_SUFFIXES)
        }
        for dep in list(demo.fns.values()):
            if dep.fn is not None and any(t[0] in ids and t[1] == "click" for t in dep.targets):
                for event in (self.refresh_event, *events):
                    event.then(dep.fn, inputs=dep.inputs, outputs=dep.outputs, queue=False)

    def sizes(self, value: object) -> list:
        """`value` for every width/height the switch sets (size_outputs)."""
        return [value] * len(self.size_outputs)

    def on_switch(self, title: str | None):
        previous = active_title(self.app)
        if not title or title == previous:
            return gr.update(value=previous), "", demo_note(self.app), *self.sizes(gr.update())
        try:
            model = self.app.switch_checkpoint(title)
        except Exception as e:  # a typed load error: the previous model stays active, and the user sees why
            msg = error_message(e)
            gr.Warning(msg)
            return (
                gr.update(value=active_title(self.app)),
                error_html(msg),
                demo_note(self.app),
                *self.sizes(gr.update()),
            )
        size = native_size(model)
        return gr.update(value=model.info.title), "", demo_note(self.app), *self.sizes(size)

    def on_refresh(self):
        keep = [gr.update() for _ in range(len(self.pinned_lists()) + len(self.lists.entries))]
        try:
            self.app.models.refresh()
            self.app.loras.refresh()
        except Exception as e:
            return gr.update(), error_html(error_message(e)), *keep
        vaes = [gr.update(choices=self.choices("sd_vae"))] if "sd_vae" in self.pinned else []
        return (
            gr.update(choices=checkpoint_titles(self.app), value=active_title(self.app)),
            "",
            *vaes,
            *self.lists.updates(),
        )

    def choices(self, key: str) -> list[str] | None:
        from webui.ui.settings_tab import option_choices

        return option_choices(self.app, self.app.options.defs[key])

    def on_pinned(self, key: str, value: Any):
        """A pinned setting changed in the top bar: applied at once, through the same check as Settings → Apply."""
        from webui.ui.settings_tab import normalize, shown

        d = self.app.options.defs[key]
        try:
            self.app.set_options({key: normalize(d, value)})
        except Exception as e:  # refused (type, range, locked): the bar shows the value in force again
            msg = error_message(e)
            gr.Warning(msg)
            return error_html(msg), shown(d, self.app.options.get(key), self.choices(key))
        return ok_html(f"{d.label}: {value}"), gr.update()

    def modules_update(self) -> dict[str, Any]:
        """The "VAE / Text Encoder" selector as it should be now: its files, the choice in force, and shown while
        an SD3/FLUX checkpoint is active (or when pinned by quicksettings_list)."""
        return gr.update(
            choices=self.choices(MODULES),
            value=list(self.app.options.get(MODULES) or []),
            visible=MODULES in self.pinned or modules_wanted(self.app),
        )

    def distilled_updates(self, *values: Any) -> list[dict[str, Any]]:
        """ "Distilled CFG Scale" in each generation tab: shown only while a FLUX checkpoint is active. Given the
        fields' `values` (after a switch), one still at FLUX dev's default becomes the 30 BFL recommends for Fill
        when a Fill checkpoint is active, and one still at 30 goes back to 3.5 on dev/schnell; a value the user
        chose is kept."""
        from webui.ui.generation_fields import (
            DEV_DISTILLED_CFG,
            FILL_DISTILLED_CFG,
            distilled_cfg_default,
            distilled_cfg_shown,
        )

        shown = distilled_cfg_shown(self.app)
        suits = distilled_cfg_default(self.app)
        other = DEV_DISTILLED_CFG if suits == FILL_DISTILLED_CFG else FILL_DISTILLED_CFG
        out = []
        for i in range(len(self.distilled)):
            value = values[i] if i < len(values) else None
            held = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
            if shown and held is not None and float(held) == other:
                out.append(gr.update(visible=True, value=suits))
            else:
                out.append(gr.update(visible=shown))
        return out

    def slg_updates(self) -> list[dict[str, Any]]:
        """txt2img's "Skip layer guidance" panel: shown only while an SD 3/3.5 checkpoint is active."""
        from webui.ui.generation_fields import slg_shown

        return [gr.update(visible=slg_shown(self.app)) for _ in self.slg]

    def flow_sampling(self, *values: Any) -> list[Any]:
        """After a switch to an SD 3/FLUX checkpoint: each tab's (sampler, schedule type) pair becomes "Euler" /
        "Automatic" (Simple for these families) when the sampler is one they can't run (the page's default "Euler a"
        would fail the next Generate), as Forge's presets do; anything else is left as it is."""
        from webui.generation.flow_sampling import SAMPLERS
        from webui.models.manager import SEPARATE_PARTS

        model = self.app.models.active
        flow = model is not None and model.probe.family in SEPARATE_PARTS
        out: list[Any] = []
        for sampler, _schedule in zip(values[::2], values[1::2]):
            if flow and sampler not in SAMPLERS:
                out += [gr.update(value=SAMPLERS[0]), gr.update(value="Automatic", choices=["Automatic"])]
            else:
                out += [gr.update(), gr.update()]
        return out

    def on_modules(self, value: Any):
        """A "VAE / Text Encoder" choice: kept as forge_additional_modules and, as in Forge, the active SD3/FLUX
        checkpoint is loaded again with those files at once, so a file that does not fit is reported here."""
        from webui.ui.settings_tab import normalize

        d = self.app.options.defs[MODULES]
        try:
            self.app.set_options({MODULES: normalize(d, value)})
            if modules_wanted(self.app):
                model = self.app.models.active
                assert model is not None
                self.app.switch_checkpoint(model.info.title)
        except Exception as e:  # refused or does not fit: the previous model stays active and the user sees why
            msg = error_message(e)
            gr.Warning(msg)
            return error_html(msg), self.modules_update()
        names = ", ".join(map(str, value or [])) or "Automatic"
        return ok_html(f"{d.label}: {names}"), gr.update()

    @property
    def load_outputs(self) -> list[gr.components.Component]:
        """What a page load refreshes here (after the checkpoint and the note): the pinned settings, the lists."""
        return [
            *self.pinned.values(),
            *self.lists.components,
            *([] if MODULES in self.pinned else [self.modules]),
            *getattr(self, "distilled", []),
            *self.slg,
        ]

    def on_load(self):
        """Page load: the model may have finished loading after the UI was built."""
        model = self.app.models.active
        size = native_size(model) if model is not None else gr.update()
        return (
            gr.update(choices=checkpoint_titles(self.app), value=active_title(self.app)),
            demo_note(self.app),
            size,
            size,
        )

    def load_values(self) -> list[Any]:
        """Page load: the pinned settings' values in force now (Apply, the API or another tab may have changed
        them since the UI was built), and the model lists as they are now."""
        from webui.ui.settings_tab import shown

        values = []
        for key in self.pinned:
            d = self.app.options.defs[key]
            choices = self.choices(key)
            value = shown(d, self.app.options.get(key), choices)
            values.append(gr.update(value=value, choices=choices) if choices is not None else value)
        return [
            *values,
            *self.lists.updates(),
            *([] if MODULES in self.pinned else [self.modules_update()]),
            *self.distilled_updates(),
            *self.slg_updates(),
        ]
