"""A checkpoint switch from the top bar sets width and height to the new model's native size in every generation tab
that shows them, img2img too (#17 item 2: img2img used to keep the old size)."""

from __future__ import annotations

import gradio as gr

from webui.ui.img2img_tab import Img2ImgTab
from webui.ui.quicksettings import Quicksettings
from webui.ui.txt2img_tab import Txt2ImgTab


def test_a_checkpoint_switch_resizes_txt2img_and_img2img(app):
    with gr.Blocks():
        txt2img, img2img = Txt2ImgTab(app), Img2ImgTab(app)
        quick = Quicksettings(app)
        quick.wire(txt2img, img2img)
    assert quick.size_outputs == [txt2img.width, txt2img.height, img2img.width, img2img.height]
    other = next(i.title for i in app.catalog.list() if i.title != app.models.active.info.title)
    _dropdown, message, _note, *sizes = quick.on_switch(other)
    native = app.models.active.native_size
    assert message == "" and sizes == [native] * 4
    _dropdown, _message, _note, *unchanged = quick.on_switch(other)  # the same checkpoint again: nothing to set
    assert len(unchanged) == 4 and all(u == gr.update() for u in unchanged)
