"""FLUX.1 Fill in the UI: switching to a Fill checkpoint sets "Distilled CFG Scale" to the 30 BFL recommends for it
when the field still holds dev's default 3.5, and back to 3.5 on switching to dev when it still holds 30; a value
the user chose is kept, and a Send-to/paste switch keeps the value the infotext named (handlers called directly)."""

from __future__ import annotations

import gradio as gr
import pytest

from tests.families.conftest import merge_models

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def data_dir(tmp_path, flux_models):
    from tests.factories_fill import write_fill_file

    merge_models(tmp_path / "models", flux_models)  # dev + schnell, clip_l, t5xxl, ae
    write_fill_file(tmp_path / "models")
    return tmp_path


def _title(app, prefix: str) -> str:
    return next(i.title for i in app.catalog.list() if i.name.startswith(prefix))


def _distilled_dep(demo: gr.Blocks, quick) -> list:
    """The wired events that update the Distilled CFG sliders: (inputs' ids) per event."""
    ids = {c._id for c in quick.distilled}
    return [{c._id for c in dep.inputs} for dep in demo.fns.values() if {c._id for c in dep.outputs} == ids]


def test_fill_switch_sets_distilled_cfg_30_and_dev_sets_it_back(make_app):
    from webui.ui.img2img_tab import Img2ImgTab
    from webui.ui.quicksettings import Quicksettings
    from webui.ui.txt2img_tab import Txt2ImgTab

    app = make_app("--nowebui")
    dev, fill = _title(app, "flux1-dev-tiny"), _title(app, "flux1-fill-dev-tiny")
    app.switch_checkpoint(dev)
    with gr.Blocks() as demo:
        quick = Quicksettings(app)
        t2i, i2i = Txt2ImgTab(app), Img2ImgTab(app)
        quick.wire(t2i, i2i)
    assert t2i.distilled_cfg_scale.value == 3.5 and t2i.distilled_cfg_scale.visible
    # the top bar's switch reads the sliders' values (a pasted switch does not: it keeps the infotext's)
    assert {c._id for c in quick.distilled} in _distilled_dep(demo, quick)

    _dropdown, message, *_ = quick.on_switch(fill)
    assert message == "" and app.models.active.info.title == fill
    # at dev's default: Fill's 30; a value the user set: kept
    assert quick.distilled_updates(3.5, 7.0) == [gr.update(visible=True, value=30.0), gr.update(visible=True)]
    assert quick.distilled_updates(30.0, 3.5) == [gr.update(visible=True), gr.update(visible=True, value=30.0)]
    assert quick.distilled_updates() == [gr.update(visible=True)] * 2  # page load / pasted: visibility only
    with gr.Blocks():
        assert Txt2ImgTab(app).distilled_cfg_scale.value == 30.0  # a page built while Fill is active

    _dropdown, message, *_ = quick.on_switch(dev)
    assert message == "" and app.models.active.info.title == dev
    assert quick.distilled_updates(30.0, 12.0) == [gr.update(visible=True, value=3.5), gr.update(visible=True)]
    assert quick.distilled_updates(3.5, 3.5) == [gr.update(visible=True)] * 2
