"""The top bar (A1111's quicksettings): the checkpoint dropdown with its refresh button, and the demo-model note."""

from __future__ import annotations

import html

import gradio as gr

from webui.ui.common import error_html, error_message

DEMO_NOTE = ("This is Easel's small demo model (64×64 shapes). "
             "Put real checkpoints in models/Stable-diffusion/.")


def checkpoint_titles(application) -> list[str]:
    titles = [info.title for info in application.catalog.list()]
    active = active_title(application)
    if active and active not in titles:
        titles.append(active)
    return titles


def active_title(application) -> str | None:
    model = application.models.active
    return model.info.title if model is not None else None


def demo_note(application) -> str:
    model = application.models.active
    if model is None or not getattr(model.info, "is_demo", False):
        return ""
    return f'<div class="easel-note">{html.escape(DEMO_NOTE, quote=False)}</div>'


class Quicksettings:
    def __init__(self, application):
        self.app = application
        with gr.Row(elem_id="quicksettings", equal_height=True):
            self.checkpoint = gr.Dropdown(checkpoint_titles(application), value=active_title(application),
                                          label="Stable Diffusion checkpoint", elem_id="setting_sd_model_checkpoint",
                                          scale=0, min_width=420, allow_custom_value=False)
            self.refresh = gr.Button("🔄", elem_id="refresh_sd_model_checkpoint", scale=0, min_width=48)
            self.message = gr.HTML("", elem_id="quicksettings_message")
        self.note = gr.HTML(demo_note(application), elem_id="easel_demo_note")

    def wire(self, txt2img, img2img=None) -> None:
        """Events that reach into the generation tabs: a new checkpoint sets width and height to its native size in
        every tab that shows them (txt2img, and img2img when given)."""
        self.size_outputs = [txt2img.width, txt2img.height, *([img2img.width, img2img.height] if img2img else [])]
        # .select, not .input: Gradio 6.31's dropdown fires "input" twice for one choice (two loads of a broken file)
        self.checkpoint.select(self.on_switch, inputs=[self.checkpoint],
                              outputs=[self.checkpoint, self.message, self.note, *self.size_outputs],
                              show_progress_on=[self.checkpoint])
        self.refresh.click(self.on_refresh, inputs=None, outputs=[self.checkpoint, self.message])

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
            return gr.update(value=active_title(self.app)), error_html(msg), demo_note(self.app), \
                *self.sizes(gr.update())
        size = int(model.native_size)
        return gr.update(value=model.info.title), "", demo_note(self.app), *self.sizes(size)

    def on_refresh(self):
        try:
            self.app.models.refresh()
        except Exception as e:
            return gr.update(), error_html(error_message(e))
        return gr.update(choices=checkpoint_titles(self.app), value=active_title(self.app)), ""

    def on_load(self):
        """Page load: the model may have finished loading after the UI was built."""
        model = self.app.models.active
        size = int(model.native_size) if model is not None else gr.update()
        return (gr.update(choices=checkpoint_titles(self.app), value=active_title(self.app)), demo_note(self.app),
                size, size)
