"""Long jobs in a real Chromium (#19 items 1-4): a second Generate queues ("Queued: position N", Cancel queued)
and runs, Interrupt/Skip show only while a job is there, a reloaded page finds its jobs and shows progress and
results (txt2img and inpaint), Generate forever, Ctrl+Enter / Alt+Enter / Esc, and an X/Y/Z plot's progress counts
cells."""

from __future__ import annotations

import threading
import time

import numpy as np
from PIL import Image

from tests.extensions.conftest import write_extension
from tests.ui.browser import SLOW, browser, choose, page, set_slider, viewport, wait_text  # noqa: F401


def hold_worker(app) -> threading.Event:
    """A job that occupies the worker until the returned event is set: the page's jobs wait behind it."""
    release = threading.Event()
    app.jobs.submit("test-hold", {}, lambda job: release.wait(120), record=False)
    return release


def button_says(page, elem_id: str, text: str) -> None:
    page.wait_for_function(
        "([id, text]) => document.getElementById(id).innerText.includes(text)", arg=[elem_id, text], timeout=SLOW
    )


def owned(app, kind="txt2img"):
    """The UI's waiting and running jobs of `kind`."""
    return [j for j in app.jobs.running() + app.jobs.queued() if j.kind == kind]


def test_queue_cancel_and_reconnect_after_reload(live_server, page):
    srv = live_server()
    page.goto(srv.url, wait_until="networkidle")
    assert not page.locator("#txt2img_interrupt").is_visible()  # nothing runs: no Interrupt/Skip
    assert not page.locator("#txt2img_skip").is_visible()
    page.fill("#txt2img_prompt textarea", "a red circle")
    set_slider(page, "txt2img_steps", 3)
    release = hold_worker(srv.app)
    page.click("#txt2img_generate")
    wait_text(page, "#txt2img_progress", "Queued: position 1")
    page.locator("#txt2img_interrupt").wait_for(state="visible")
    assert page.locator("#txt2img_skip").is_visible()
    button_says(page, "txt2img_generate", "queue")  # the button says a click now queues
    page.click("#txt2img_generate")  # a second click while one waits: queued behind it, not ignored
    wait_text(page, "#txt2img_queue_status", "Queued: position 2")
    assert len(owned(srv.app)) == 2
    page.click("#txt2img_cancel_queued")  # takes the last one back
    page.wait_for_function("() => !document.querySelector('#txt2img_queue_status').innerText.includes('position')")
    assert len(owned(srv.app)) == 1
    page.click("#txt2img_generate")  # queue another one again, to see both after the reload
    wait_text(page, "#txt2img_queue_status", "Queued: position 2")

    page.reload(wait_until="networkidle")  # the page finds this browser's jobs again
    wait_text(page, "#txt2img_progress", "Queued: position 1")
    wait_text(page, "#txt2img_queue_status", "Queued: position 2")
    page.locator("#txt2img_interrupt").wait_for(state="visible")
    completed = srv.app.jobs.completed
    release.set()
    page.wait_for_selector("#txt2img_gallery img", timeout=SLOW)  # the result shows on the reloaded page
    wait_text(page, "#html_info_txt2img", "a red circle")
    page.locator("#txt2img_interrupt").wait_for(state="hidden", timeout=SLOW)  # both ran, then Interrupt hides
    button_says(page, "txt2img_generate", "Generate")
    assert not owned(srv.app) and srv.app.jobs.completed >= completed + 2  # the queued second one ran too

    other = page.context.browser.new_context().new_page()  # another browser (its own storage) sees none of it
    try:
        other.goto(srv.url, wait_until="networkidle")
        release2 = hold_worker(srv.app)
        page.click("#txt2img_generate")
        wait_text(page, "#txt2img_progress", "Queued: position 1")
        time.sleep(1.5)
        assert "Queued" not in other.inner_text("#txt2img_progress")
        release2.set()
    finally:
        other.context.close()


def test_keyboard_shortcuts_and_generate_forever(live_server, page):
    srv = live_server()
    page.goto(srv.url, wait_until="networkidle")
    page.fill("#txt2img_prompt textarea", "a blue square")
    set_slider(page, "txt2img_steps", 2)
    release = hold_worker(srv.app)
    page.focus("#txt2img_prompt textarea")
    page.keyboard.press("Control+Enter")  # generate
    wait_text(page, "#txt2img_progress", "Queued: position 1")
    page.evaluate(
        "() => { window.skips = 0; document.querySelector('#txt2img_skip')"
        ".addEventListener('click', () => window.skips++); }"
    )
    page.keyboard.press("Alt+Enter")  # skip
    page.wait_for_function("() => window.skips === 1")
    page.keyboard.press("Escape")  # interrupt: the waiting job is taken back
    wait_text(page, "#html_info_txt2img", "Cancelled")
    page.locator("#txt2img_interrupt").wait_for(state="hidden")
    assert not owned(srv.app)
    release.set()

    page.click("#tab_img2img-button")  # Ctrl+Enter in img2img too
    page.fill("#img2img_prompt textarea", "x")
    page.focus("#img2img_prompt textarea")
    page.keyboard.press("Control+Enter")
    wait_text(page, "#html_info_img2img", "image")  # no image given: img2img says so

    page.click("#tab_txt2img-button")
    done = srv.app.jobs.completed
    page.check("#txt2img_generate_forever input")
    page.click("#txt2img_generate")
    deadline = time.time() + SLOW / 1000
    while srv.app.jobs.completed < done + 2 and time.time() < deadline:  # it starts a second job by itself
        time.sleep(0.2)
    assert srv.app.jobs.completed >= done + 2
    page.uncheck("#txt2img_generate_forever input")
    time.sleep(2)  # a click already on its way may queue one more
    page.locator("#txt2img_interrupt").wait_for(state="hidden", timeout=SLOW)
    settled = srv.app.jobs.completed
    time.sleep(2)
    assert srv.app.jobs.completed == settled and not owned(srv.app)  # unticked: it stops


def test_inpaint_job_reconnects_after_reload(live_server, page, tmp_path):
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "base.png")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    mask.save(tmp_path / "mask.png")
    srv = live_server()
    page.goto(srv.url, wait_until="networkidle")
    page.click("#tab_img2img-button")
    assert not page.locator("#img2img_interrupt").is_visible()
    page.click("#img2img_inpaint_upload_tab-button")
    page.set_input_files("#img_inpaint_base input[type=file]", str(tmp_path / "base.png"))
    page.set_input_files("#img_inpaint_mask input[type=file]", str(tmp_path / "mask.png"))
    page.wait_for_selector("#img_inpaint_mask img")
    page.fill("#img2img_prompt textarea", "a green square")
    set_slider(page, "img2img_steps", 2)
    release = hold_worker(srv.app)
    page.click("#img2img_generate")
    wait_text(page, "#img2img_progress", "Queued: position 1")
    page.locator("#img2img_interrupt").wait_for(state="visible")
    assert len(owned(srv.app, "img2img")) == 1

    page.reload(wait_until="networkidle")
    page.click("#tab_img2img-button")
    wait_text(page, "#img2img_progress", "Queued: position 1")  # the reloaded page follows the inpaint job
    page.locator("#img2img_interrupt").wait_for(state="visible")
    assert not page.locator("#txt2img_interrupt").is_visible()  # txt2img has nothing running
    release.set()
    page.wait_for_selector("#img2img_gallery img", timeout=SLOW)
    wait_text(page, "#html_info_img2img", "Mask blur")
    page.locator("#img2img_interrupt").wait_for(state="hidden", timeout=SLOW)


SLOW_STEPS = """
    import time

    def setup(ext):
        ext.on("step_end", lambda info: time.sleep(0.25))
"""


def test_xyz_progress_shows_cells(live_server, page, data_dir):
    # each cell lasts ~1.5 s, so the page's progress polls see it even under load (0.5 s cells were missed once)
    write_extension(data_dir / "extensions", "slowsteps", SLOW_STEPS)
    srv = live_server()
    page.goto(srv.url, wait_until="networkidle")
    page.fill("#txt2img_prompt textarea", "a red circle")
    set_slider(page, "txt2img_steps", 6)
    choose(page, "txt2img_script", "X/Y/Z plot")
    page.locator("#txt2img_script_x_y_z_plot").get_by_label("X values").fill("1, 2, 3")
    page.click("#txt2img_generate")
    page.wait_for_function(
        "() => /Cell [23]\\/3 · Step \\d\\/6/.test(document.querySelector('#txt2img_progress').innerText)", timeout=SLOW
    )
    page.wait_for_selector("#txt2img_gallery img", timeout=SLOW)
    wait_text(page, "#html_info_txt2img", "a red circle")
