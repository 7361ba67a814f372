"""The page settles (#19 item 19): Chromium reaches network idle on Easel's page as on a plain Gradio app."""

from __future__ import annotations

import json
import time
import urllib.request

from tests.ui.browser import browser, page, viewport  # noqa: F401


def test_page_reaches_network_idle(live_server, page):
    srv = live_server()
    started = time.monotonic()
    page.goto(srv.url, wait_until="networkidle", timeout=30_000)  # raises if a request stays open
    assert time.monotonic() - started < 30
    page.wait_for_selector("#txt2img_generate")
    # the cause, checked directly: no session heartbeat stream (gr.State would ask for one)
    with urllib.request.urlopen(srv.url + "/config", timeout=10) as r:
        assert json.loads(r.read())["connect_heartbeat"] is False
