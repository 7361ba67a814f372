"""Restore faces in the UI as A1111 1.6+ has it: the `face_restoration` setting ("Restore faces"), shown in the
top bar when `quicksettings_list` names it ("Options in main UI"); a txt2img from the tab then restores the faces
and writes `Face restoration: GFPGAN`, and unticking it turns that off again."""

from __future__ import annotations

import gradio as gr

from tests.faces.conftest import link_into


def test_restore_faces_checkbox_in_the_top_bar_drives_the_tabs(make_app, data_dir, gfpgan_file, detectors):
    from webui.ui.quicksettings import Quicksettings
    from webui.ui.txt2img_tab import Txt2ImgTab

    link_into(gfpgan_file, data_dir / "models" / "GFPGAN")
    link_into(detectors / "face_fixed.onnx", data_dir / "models" / "adetailer")
    app = make_app("--nowebui")
    app.set_options({"quicksettings_list": ["sd_model_checkpoint", "face_restoration"]})
    with gr.Blocks():
        bar = Quicksettings(app)
        tab = Txt2ImgTab(app)
    box = bar.pinned["face_restoration"]
    assert isinstance(box, gr.Checkbox) and box.label == "Restore faces" and box.value is False

    def generate() -> str:
        values = [c.value for c in tab.generate_inputs]  # the page's fields as built
        req = tab.request(*values).model_copy(update={"steps": 2, "width": 64, "height": 64, "seed": 3})
        assert req.restore_faces is None  # the tab leaves it to the setting, as A1111 1.6+
        return app.jobs.wait(app.submit_txt2img(req, from_api=False)).infotexts[0]

    bar.on_pinned("face_restoration", True)
    assert app.options.get("face_restoration") is True
    assert "Face restoration: GFPGAN" in generate()
    bar.on_pinned("face_restoration", False)
    assert "Face restoration" not in generate()
