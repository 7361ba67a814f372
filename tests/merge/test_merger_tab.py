"""The Checkpoint Merger tab's handlers called directly (no browser): they build the API's request, run the real
merge job and report progress, the saved file, or the refusal."""

from __future__ import annotations

import gradio as gr

from tests.merge.conftest import read_all
from webui.ui.merger_tab import MergerTab, request_body


def _tab(app) -> MergerTab:
    with gr.Blocks():
        with gr.Tab("Checkpoint Merger", elem_id="tab_modelmerger"):
            return MergerTab(app)


def test_tab_merges_and_lists_the_result(app):
    tab = _tab(app)
    a, b = (i.title for i in app.catalog.list()[:2])
    assert tab.primary.choices and tab.method.value == "Weighted sum" and tab.multiplier.value == 0.3
    updates = list(tab.on_merge(a, b, None, "Weighted sum", 0.5, "from-ui", True, "A, B or C", "None", ""))
    final = updates[-1]
    assert "Checkpoint saved to" in final[0] and "from-ui.safetensors" in final[0], final[0]
    assert any("from-ui.safetensors" in str(c) for c in final[1]["choices"])  # dropdowns list it at once
    tensors, meta = read_all(app.paths.ckpt_dir / "from-ui.safetensors")
    assert '"save_as_half": true' in meta["sd_merge_recipe"]
    assert all(t.dtype != __import__("torch").float32 for t in tensors.values())


def test_tab_shows_refusals(app):
    tab = _tab(app)
    a = app.catalog.list()[0].title
    out = list(tab.on_merge(a, None, None, "Weighted sum", 0.3, "", False, "A, B or C", "None", ""))
    assert len(out) == 1 and "requires a secondary model" in out[0][0]
    out = list(tab.on_merge(a, a, None, "Weighted sum", 0.3, "../x", False, "A, B or C", "None", ""))
    assert "not a plain file name" in out[0][0]


def test_request_body_maps_the_form_to_the_api():
    body = request_body("A [1]", "", None, "Add difference", 0.25, " n ", 1, "Don't", "None", "^x")
    assert body == {
        "primary": "A [1]",
        "secondary": None,
        "tertiary": None,
        "method": "add_difference",
        "multiplier": 0.25,
        "name": "n",
        "save_as_half": True,
        "config_source": 3,
        "bake_in_vae": None,
        "discard_weights": "^x",
    }


def test_the_ui_has_the_tab(app):
    from webui.ui import build_ui

    demo = build_ui(app)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {
        "tab_modelmerger",
        "modelmerger_primary_model_name",
        "modelmerger_merge",
        "modelmerger_bake_in_vae",
        "modelmerger_discard_weights",
        "modelmerger_save_as_half",
        "modelmerger_interp_method",
    } <= ids
