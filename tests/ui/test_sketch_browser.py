"""img2img's editors (#19 item 16): Sketch works on a blank canvas without picking the brush first (a stroke drawn
right after opening the tab is the init image of a generation); the inpaint mask brush paints half-transparent and
brush sizes follow the image ("auto")."""

from __future__ import annotations

from tests.ui.browser import SLOW, browser, page, set_slider, viewport  # noqa: F401  (pytest fixtures)


def test_sketch_on_a_blank_canvas_generates(live_server, page):  # noqa: F811
    srv = live_server()
    page.goto(srv.url)
    page.click("#tab_img2img-button")
    page.click("#img2img_img2img_sketch_tab-button")
    canvas = page.locator("#img2img_sketch canvas").first
    canvas.wait_for(state="visible")
    page.wait_for_function("() => document.getElementById('img2img_sketch').dataset.easelBrushPicked === '1'")
    page.wait_for_timeout(300)
    b = canvas.bounding_box()
    cx, cy = b["x"] + b["width"] / 2, b["y"] + b["height"] / 2
    page.mouse.move(cx - 60, cy - 40)
    page.mouse.down()
    for i in range(12):
        page.mouse.move(cx - 60 + i * 10, cy - 40 + i * 6)
    page.mouse.up()
    set_slider(page, "img2img_steps", 2)
    set_slider(page, "img2img_width", 64)
    set_slider(page, "img2img_height", 64)
    page.fill("#img2img_prompt textarea", "a sketch")
    page.click("#img2img_generate")
    page.wait_for_selector("#img2img_gallery img", timeout=SLOW)
    assert "a sketch" in page.inner_text("#html_info_img2img")


def test_mask_brush_is_half_transparent_and_sized_by_the_image(app):
    import gradio as gr

    from webui.ui.img2img_tab import Img2ImgTab

    with gr.Blocks():
        tab = Img2ImgTab(app)
    brush = tab.inpaint.brush
    assert brush.default_size == "auto" and all(isinstance(c, tuple) and c[1] == 0.5 for c in brush.colors)
    assert tab.sketch.brush.default_size == "auto" and tab.inpaint.eraser.default_size == "auto"
