"""`PageValue`: a value kept in the page, used where a tab would otherwise use `gr.State`.

Why not `gr.State`: one `gr.State` anywhere in the Blocks makes Gradio's page open a persistent
`/gradio_api/heartbeat/<session>` stream (so the server can drop the session's state when the tab closes). That
request never ends, so the page never reaches network idle: Playwright's `networkidle` times out, and so does any
tool that waits for a page to settle. A plain Gradio 6.31 app without `gr.State` settles in about a second.

A `PageValue` is an invisible `gr.JSON` holding `{"v": value}`: handlers get and return the plain value (str, int,
bool, None, lists and dicts of those), and the browser sends it back with each event like any other input. Nothing
is kept per session on the server, so there is nothing to clean up and no heartbeat. It holds JSON values only."""

from __future__ import annotations

from typing import Any

import gradio as gr


class PageValue(gr.JSON):
    is_template = True  # the frontend shows it with Gradio's own "json" component (never, since it is invisible)

    def __init__(self, value: Any = None, **kwargs: Any):
        kwargs.setdefault("visible", "hidden")  # in the page (so its value goes with events) but not shown
        super().__init__(value=value, **kwargs)

    def get_config(self, cls=None):
        # Gradio builds a component's config from the parameters of its class's __init__: with PageValue's own
        # (value, **kwargs) the page got no `visible` (nor elem_id) and showed every PageValue as a JSON block
        return super().get_config(cls or gr.JSON)

    def preprocess(self, payload: Any) -> Any:
        data = getattr(payload, "root", payload)
        return data.get("v") if isinstance(data, dict) else None

    def postprocess(self, value: Any) -> Any:
        return super().postprocess({"v": value})

    def api_info(self) -> dict[str, Any]:
        return {"type": "object", "properties": {"v": {}}, "description": "a value kept in the page"}
