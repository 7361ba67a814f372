"""Settings → "Reload UI" (A1111's button of the same name): the Gradio page is built again from the settings in
force (what the layout itself depends on, e.g. `quicksettings_list`) and replaces the mounted one, without restarting
the server, the model or the job queue.

Gradio offers no way to swap a mounted Blocks, so this is hand-written on its public pieces: the new Blocks is
configured by the same `mount_ui` (on a staging FastAPI app, so auth, CSS and settings match), its queue is started
as `gr.mount_gradio_app`'s lifespan starts it (the Blocks' startup events), and the server's "/" Mount is pointed at
it. The previous Blocks stays alive (not closed) so a page still following a job
through it keeps its stream; the next page load gets the new one."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any

import anyio
from fastapi import FastAPI
from starlette.routing import Mount

log = logging.getLogger("easel.ui")


def _root_mount(api: FastAPI) -> Mount:
    for route in api.routes:
        if isinstance(route, Mount) and route.path == "":
            return route
    raise RuntimeError("no UI is mounted at /")


class UiReloader:
    def __init__(self, api: FastAPI, application: Any):
        self.api = api
        self.application = application
        self.lock = anyio.Lock()
        self.reloads = 0

    @staticmethod
    async def _start(blocks: Any) -> None:
        """What Gradio's mount runs at startup: the queue and the Blocks' startup events. (Its app lifespan only
        drops gr.State sessions and cached files on a timer; Easel's page has no gr.State and no delete_cache.)"""
        blocks.run_startup_events()
        await blocks.run_extra_startup_events()

    async def request(self) -> None:
        """Build, start and mount a new UI (one at a time). Runs on the server's event loop (an async handler)."""
        from webui.api.server import mount_ui
        from webui.ui import build_ui

        async with self.lock:
            # a fresh contextvars Context: this runs inside a Gradio event handler, whose context variables (an event
            # listener in progress) would make Gradio treat the new components as a dynamic render of the old page
            blocks = await anyio.to_thread.run_sync(contextvars.Context().run, build_ui, self.application)
            staging = FastAPI()
            mount_ui(staging, self.application, blocks)
            gradio_app = _root_mount(staging).app
            # started in a fresh context too: the queue's tasks copy the context they are created in, and this
            # handler's says "inside an event listener", which breaks every later component update of the new page
            await asyncio.get_running_loop().create_task(self._start(blocks), context=contextvars.Context())
            mount = _root_mount(self.api)
            mount._base_app = mount.app = gradio_app
            self.api.state.blocks = blocks
            self.reloads += 1
            log.info("UI reloaded (%d)", self.reloads)
