"""#19 item 17 in the UI: "Interrupted" is a notice, not a red error (the tab's own finished() on real interrupted
jobs), and a Width typed beyond its slider says it was clamped (Chromium)."""

from __future__ import annotations

from tests.ui.browser import browser, page, viewport, wait_text  # noqa: F401
from webui.generation.requests import Txt2ImgRequest
from webui.ui.common import GenerationTab


class _Tab(GenerationTab):
    """finished() only needs its outputs as keys."""

    def __init__(self, app):
        super().__init__(app)
        for name in ("job_id", "preview", "progress", "info", "gallery", "results"):
            setattr(self, name, name)


def test_interrupted_is_a_notice_and_a_failure_an_error(app):
    tab = _Tab(app)
    job = app.submit_txt2img(Txt2ImgRequest(prompt="x", steps=40, seed=1, n_iter=3), from_api=False)
    while job.status == "queued" or app.jobs.current is None or app.jobs.current.control.sampling_step < 1:
        if job.done.wait(0.01):
            break
    app.jobs.cancel(job.id)
    app.jobs.wait(job, timeout=120)
    assert job.status == "interrupted"
    info = tab.finished(job)["info"]
    assert "easel-notice" in info and "Interrupted" in info and "easel-error" not in info

    class Failed:
        status, value, error = "failed", None, RuntimeError("boom")

    assert "easel-error" in tab.finished(Failed())["info"]


def test_typed_width_beyond_the_slider_says_it_was_clamped(live_server, page):
    srv = live_server()
    page.goto(srv.url, wait_until="networkidle")  # the page-load events (native size) are done
    box = page.locator("#txt2img_width input[type=number]")
    box.fill("4096")
    box.press("Enter")
    wait_text(page, "#txt2img_width .easel-clamp-note", "Width 4096 was clamped to 2048")
    wait_text(page, "#txt2img_width input[type=number]", "2048")
    wait_text(page, "#txt2img_width input[type=range]", "2048")  # the component's value, what a Generate sends
    box.press_sequentially("0")  # typing again takes the note away
    page.wait_for_function("() => !document.querySelector('#txt2img_width .easel-clamp-note')")
    box.fill("512")
    box.press("Enter")
    wait_text(page, "#txt2img_width input[type=number]", "512")
    assert page.locator("#txt2img_width .easel-clamp-note").count() == 0
