"""Build the one FastAPI server: API routers, error mapping, and the Gradio UI mounted at /."""

from __future__ import annotations

from fastapi import FastAPI

from webui import VERSION
from webui.api.errors import install_error_handlers
from webui.api.sdapi import build_sdapi_router


def build_fastapi(application) -> FastAPI:
    api = FastAPI(title="Easel", version=VERSION, description="A1111-compatible Stable Diffusion API")
    install_error_handlers(api)
    api.include_router(build_sdapi_router(application))
    if not application.ns.nowebui:
        import gradio as gr

        from webui.ui import build_ui

        blocks = build_ui(application)
        api = gr.mount_gradio_app(api, blocks, path="/")
    return api
