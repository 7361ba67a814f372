"""The Gradio UI: a top bar with the checkpoint, one module per tab, and a footer. It calls services and holds no
generation logic; `webui.api.server` mounts the Blocks built here at "/"."""

from __future__ import annotations

import html

import gradio as gr

from webui import VERSION
from webui.ui.extensions_tab import build_extensions_tab
from webui.ui.extras_tab import ExtrasTab
from webui.ui.history_tab import HistoryTab
from webui.ui.img2img_tab import Img2ImgTab
from webui.ui.live_jobs import wire_live_jobs
from webui.ui.merger_tab import MergerTab
from webui.ui.models_tab import build_models_tab
from webui.ui.pnginfo_tab import PngInfoTab
from webui.ui.prompt_tools import prompt_tools_assets
from webui.ui.quicksettings import Quicksettings
from webui.ui.sendto import SendTo
from webui.ui.settings_tab import SettingsTab
from webui.ui.train_tab import build_train_tab
from webui.ui.txt2img_tab import Txt2ImgTab


def footer_html(application) -> str:
    policy = application.policy
    parts = [f"Easel {VERSION}", f"device: {policy.label}" + (f" ({policy.note})" if policy.note else ""),
             '<a href="/docs">API</a>']
    if getattr(application, "share_url", None):
        url = html.escape(application.share_url)
        parts.append(f'share: <a href="{url}">{url}</a>')
    return " · ".join(p if p.startswith("<a") or p.startswith("share") else html.escape(p) for p in parts)


def build_ui(application) -> gr.Blocks:
    with gr.Blocks(title="Easel", analytics_enabled=False) as demo:
        prompt_tools_assets()  # Ctrl+Up/Down in every prompt box (the page's CSS: page_css, given at mount)
        quick = Quicksettings(application)
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("txt2img", id="txt2img", elem_id="tab_txt2img"):
                txt2img = Txt2ImgTab(application)
            with gr.Tab("img2img", id="img2img", elem_id="tab_img2img"):
                img2img = Img2ImgTab(application)
            with gr.Tab("Extras", id="extras", elem_id="tab_extras"):
                extras = ExtrasTab(application)
            with gr.Tab("Train", id="train", elem_id="tab_train"):
                build_train_tab(application)
            with gr.Tab("PNG Info", id="pnginfo", elem_id="tab_pnginfo"):
                pnginfo = PngInfoTab(application)
            with gr.Tab("Checkpoint Merger", id="modelmerger", elem_id="tab_modelmerger"):
                MergerTab(application)
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
                SettingsTab(application)
        footer = gr.HTML(footer_html(application), elem_id="easel_footer")
        quick.wire(txt2img, img2img)
        wire_live_jobs(demo, [txt2img, img2img])  # queue, reconnect after reload, Ctrl+Enter/Alt+Enter/Esc
        SendTo(application, tabs, quick, txt2img, img2img, extras, pnginfo, history_tab).wire()
        demo.load(lambda: (*quick.on_load(), footer_html(application)), inputs=None,
                  outputs=[quick.checkpoint, quick.note, txt2img.width, txt2img.height, footer], queue=False)
        demo.load(lambda: [img2img.native_size()] * 2, inputs=None, outputs=[img2img.width, img2img.height],
                  queue=False)  # the model may have finished loading after the UI was built
    return demo


__all__ = ["build_ui"]
