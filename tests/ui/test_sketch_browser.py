"""img2img's editors (#19 item 16): Sketch works on a blank canvas without picking the brush first (a stroke drawn
right after opening the tab is the init image of a generation); the inpaint mask brush paints half-transparent and
brush sizes follow the image (sized on upload: Gradio's "auto" is a fixed 25 px)."""

from __future__ import annotations

import io
import time

from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.ui.browser import SLOW, browser, page, set_slider, viewport  # noqa: F401  (pytest fixtures)


def test_sketch_on_a_blank_canvas_generates_and_mask_brush_follows_the_image(live_server, page, tmp_path):  # noqa: F811
    srv = live_server()
    page.goto(srv.url)
    page.click("#tab_img2img-button")
    page.click("#img2img_img2img_sketch_tab-button")
    canvas = page.locator("#img2img_sketch canvas").first
    canvas.wait_for(state="visible")
    page.wait_for_function("() => document.getElementById('img2img_sketch').dataset.easelBrushPicked === '1'")
    page.wait_for_selector('#img2img_sketch button[aria-label="Brush"].highlight')  # the editor took the pick
    b = canvas.bounding_box()
    cx, cy = b["x"] + b["width"] / 2, b["y"] + b["height"] / 2
    for _ in range(3):  # a stroke drawn before the loaded page's canvas listens is lost: Undo stays disabled then
        page.mouse.move(cx - 60, cy - 40)
        page.mouse.down()
        for i in range(12):
            page.mouse.move(cx - 60 + i * 10, cy - 40 + i * 6)
        page.mouse.up()
        try:
            page.wait_for_selector('#img2img_sketch button[aria-label="Undo"]:not([disabled])', timeout=10_000)
            break
        except PlaywrightTimeout:
            continue
    assert page.locator('#img2img_sketch button[aria-label="Undo"]').first.is_enabled()  # the stroke is in
    set_slider(page, "img2img_steps", 2)
    set_slider(page, "img2img_width", 64)
    set_slider(page, "img2img_height", 64)
    page.fill("#img2img_prompt textarea", "a sketch")
    page.click("#img2img_generate")
    try:
        page.wait_for_selector("#img2img_gallery img", timeout=SLOW)
    except (
        PlaywrightTimeout
    ):  # say what the page showed instead (an error, a queue position) rather than only "timeout"
        raise AssertionError(f"no image; the page shows: {page.inner_text('#html_info_img2img')[:500]!r}") from None
    assert "a sketch" in page.inner_text("#html_info_img2img")

    # inpaint: Gradio 6.31 draws a brush of default_size "auto" 25 px for any picture; Easel sizes brush and eraser
    # on upload (about 1/25 of the short side), and the mask stroke is half-transparent: grey over black, not white
    # one picture here (3 px, not Gradio's 25: the upload's size reached the page's brush); the size for other
    # pictures (64 → 3, 512×768 → 20, 1024 → 41) is the unit test's below: a 300 px picture here cost 15-40 s more
    for name, side in (("small", 64),):
        Image.new("RGB", (side, side), (0, 0, 0)).save(tmp_path / f"{name}.png")
        page.click("#tab_img2img-button")
        page.click("#img2img_inpaint_tab-button")
        with page.expect_response(
            lambda r: "/run/predict" in r.url and "background" in (r.request.post_data or ""), timeout=60_000
        ):  # the editor's upload event: the sized brush comes back
            page.set_input_files("#img2maskimg input[type=file]", str(tmp_path / f"{name}.png"))
        page.locator('#img2maskimg button[aria-label="Brush"]').first.click()
        expected, shown, deadline = str(round(side / 25)), None, time.monotonic() + 60  # 3 (not 25)
        while shown != expected and time.monotonic() < deadline:  # the upload event's answer may still be on its way
            page.locator('#img2maskimg button[aria-label="Brush Size"]').first.click()  # the size popup opens
            shown = page.locator("#img2maskimg input[type=range]").first.input_value()
            page.locator('#img2maskimg button[aria-label="Brush Size"]').first.click()  # and closes
            page.wait_for_timeout(500)
        assert shown == expected, (name, shown)
    canvas = page.locator("#img2maskimg canvas").first
    b = canvas.bounding_box()
    cx, cy = b["x"] + b["width"] / 2, b["y"] + b["height"] / 2
    page.mouse.move(cx - 40, cy)
    page.mouse.down()
    for i in range(9):
        page.mouse.move(cx - 40 + i * 10, cy)
    page.mouse.up()
    page.wait_for_timeout(300)
    shot = Image.open(io.BytesIO(page.screenshot(clip={"x": cx - 2, "y": cy - 2, "width": 4, "height": 4})))
    grey = shot.convert("L").getpixel((2, 2))
    assert 60 < grey < 200, grey  # painted (not black), and not opaque white


def test_mask_brush_is_half_transparent_and_sized_on_upload(app):
    import gradio as gr

    from webui.ui.editor_brush import brush_size, sized_update
    from webui.ui.img2img_tab import Img2ImgTab

    with gr.Blocks():
        tab = Img2ImgTab(app)
    assert all(isinstance(c, tuple) and c[1] == 0.5 for c in tab.inpaint.brush.colors)
    sizes = (brush_size(64, 64), brush_size(512, 768), brush_size(1024, 4096), brush_size(8000, 8000))
    assert sizes == (3, 20, 41, 100)
    assert brush_size(1, 1) == 2
    update = sized_update("mask", {"background": Image.new("RGB", (1024, 1024)), "layers": []})
    assert update["brush"].default_size == 41 and update["eraser"].default_size == 41
    assert update["brush"].colors == tab.inpaint.brush.colors
    assert sized_update("paint", {"background": None}) == {"__type__": "update"}  # an empty editor: nothing
