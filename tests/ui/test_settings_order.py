"""Settings → Apply zips the option definitions with the components: both must be in the same order, also when an
option's section is declared out of order (outdir_grids once shifted every later setting by one: a Settings apply
then sent False as outdir_samples)."""

from __future__ import annotations


def test_settings_components_line_up_with_their_options(make_app):
    import gradio as gr

    from webui.ui.settings_tab import SettingsTab

    app = make_app(start=False)
    with gr.Blocks():
        tab = SettingsTab(app)
    assert len(tab.defs) == len(tab.components)
    for d, c in zip(tab.defs, tab.components):
        assert c.elem_id == f"setting_{d.key}", (d.key, c.elem_id)
    assert tab.changes(tuple(c.value for c in tab.components)) == {}  # untouched values change nothing
