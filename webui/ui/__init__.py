"""The Gradio UI: a top bar with the checkpoint, one module per tab, and a footer. It calls services and holds no
generation logic; `webui.api.server` mounts the Blocks built here at "/"."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import gradio as gr

from webui import VERSION
from webui.ui.clamp_notes import clamp_notes_assets
from webui.ui.extensions_tab import build_extensions_tab
from webui.ui.extras_tab import ExtrasTab
from webui.ui.history_tab import HistoryTab
from webui.ui.img2img_tab import Img2ImgTab
from webui.ui.live_jobs import wire_live_jobs
from webui.ui.merger_tab import MergerTab
from webui.ui.model_watch import ModelWatch
from webui.ui.models_tab import build_models_tab
from webui.ui.pnginfo_tab import PngInfoTab
from webui.ui.prompt_tools import prompt_tools_assets
from webui.ui.quicksettings import Quicksettings
from webui.ui.sendto import SendTo
from webui.ui.settings_tab import SettingsTab
from webui.ui.train_tab import build_train_tab
from webui.ui.txt2img_tab import Txt2ImgTab

if TYPE_CHECKING:
    from webui.app import Application


def footer_html(application: Application) -> str:
    policy = application.policy
    parts = [
        f"Easel {VERSION}",
        f"device: {policy.label}" + (f" ({policy.note})" if policy.note else ""),
        '<a href="/docs">API</a>',
    ]
    if application.share_url:
        url = html.escape(application.share_url)
        parts.append(f'share: <a href="{url}">{url}</a>')
    return " · ".join(p if p.startswith("<a") or p.startswith("share") else html.escape(p) for p in parts)


def page_defaults(application: Application) -> list[Any]:
    """Steps and sampler of txt2img and img2img at page load, from the settings in force."""
    from webui.ui.common import canonical_sampler

    steps = int(application.options.get("txt2img_default_steps"))
    sampler = canonical_sampler(application.options.get("txt2img_default_sampler"))
    return [steps, sampler if sampler else gr.update()] * 2


def register_model_lists(application: Application, lists, txt2img, train, merger) -> None:
    """Every checkpoint dropdown outside the top bar, for the one 🔄 (#19 item 7)."""
    from webui.ui.merger_tab import checkpoint_titles as file_titles
    from webui.ui.quicksettings import checkpoint_titles
    from webui.ui.txt2img_tab import SAME_CHECKPOINT

    lists.add(txt2img.hr_checkpoint, lambda: [SAME_CHECKPOINT, *checkpoint_titles(application)])
    lists.add(train.inputs["checkpoint"], lambda: [i.title for i in application.catalog.list()])
    for dropdown in (merger.primary, merger.secondary, merger.tertiary):
        lists.add(dropdown, lambda: file_titles(application))


def build_ui(application: Application) -> gr.Blocks:
    with gr.Blocks(title="Easel", analytics_enabled=False) as demo:
        prompt_tools_assets()  # Ctrl+Up/Down in every prompt box (the page's CSS: page_css, given at mount)
        clamp_notes_assets()  # "Width 4096 was clamped to 2048" next to a size typed beyond its slider
        quick = Quicksettings(application)
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("txt2img", id="txt2img", elem_id="tab_txt2img"):
                txt2img = Txt2ImgTab(application)
            with gr.Tab("img2img", id="img2img", elem_id="tab_img2img"):
                img2img = Img2ImgTab(application)
            with gr.Tab("Extras", id="extras", elem_id="tab_extras"):
                extras = ExtrasTab(application)
            with gr.Tab("Train", id="train", elem_id="tab_train"):
                train = build_train_tab(application)
            with gr.Tab("PNG Info", id="pnginfo", elem_id="tab_pnginfo"):
                pnginfo = PngInfoTab(application)
            with gr.Tab("Checkpoint Merger", id="modelmerger", elem_id="tab_modelmerger"):
                merger = MergerTab(application)
            with gr.Tab("Models", id="models", elem_id="tab_models"):
                build_models_tab(application)
            with gr.Tab("History", id="history", elem_id="tab_history") as history:
                history_tab = HistoryTab(application, txt2img, tabs, history)
            with gr.Tab("Extensions", id="extensions", elem_id="tab_extensions"):
                build_extensions_tab(application)
            for name, title, build in application.extensions.tabs():  # tabs added by extensions (ext.add_tab)
                with gr.Tab(title, elem_id=f"tab_ext_{name}"):
                    application.extensions.call(application.extensions.records[name], f"tab {title!r}", build)
            with gr.Tab("Settings", id="settings", elem_id="tab_settings"):
                settings = SettingsTab(application, pinned=quick.keys)
        footer = gr.HTML(footer_html(application), elem_id="easel_footer")
        register_model_lists(application, quick.lists, txt2img, train, merger)
        quick.wire(txt2img, img2img)
        ModelWatch(application, quick).wire(demo)  # a new model file shows in the lists without 🔄; and 🔄 runs
        # the extensions' list refresh buttons (ControlNet models, X/Y/Z values) and Extra networks' Refresh too
        wire_live_jobs(demo, [txt2img, img2img])  # queue, reconnect after reload, Ctrl+Enter/Alt+Enter/Esc
        SendTo(application, tabs, quick, txt2img, img2img, extras, pnginfo, history_tab).wire()
        demo.load(
            lambda: (*quick.on_load(), footer_html(application)),
            inputs=None,
            outputs=[quick.checkpoint, quick.note, txt2img.width, txt2img.height, footer],
            queue=False,
        )
        demo.load(
            lambda: [img2img.native_size()] * 2, inputs=None, outputs=[img2img.width, img2img.height], queue=False
        )  # the model may have finished loading after the UI was built
        # settings apply live (#19 item 5): each page load reads the defaults, the top bar, the model lists and the
        # Settings tab from the settings in force, so an Apply (or the API) shows on the next load without a restart
        defaults = [c for tab in (txt2img, img2img) for c in (tab.steps, tab.sampler)]
        demo.load(
            lambda: [*page_defaults(application), *quick.load_values(), *settings.values()],
            inputs=None,
            outputs=[*defaults, *quick.load_outputs, *settings.components],
            queue=False,
        )
    return demo


__all__ = ["build_ui"]
