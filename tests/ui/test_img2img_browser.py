"""img2img in a real browser: Inpaint upload (an image and a mask file), Generate, and the result in the gallery,
with the pixels outside the mask unchanged."""

from __future__ import annotations

import io
import urllib.request

import numpy as np
import pytest
from PIL import Image

from tests.ui.browser import SLOW, browser, page  # noqa: F401  (pytest fixtures)
from webui.generation.images import prepare_mask


@pytest.fixture
def viewport() -> dict[str, int]:
    return {"width": 1280, "height": 1100}


def test_inpaint_upload_generates_and_keeps_unmasked_pixels(live_server, page, tmp_path):
    rng = np.random.default_rng(7)
    base = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (20, 20, 44, 44))
    base.save(tmp_path / "base.png")
    mask.save(tmp_path / "mask.png")

    srv = live_server()
    page.goto(srv.url)
    page.click("#tab_img2img-button")
    page.click("#img2img_inpaint_upload_tab-button")
    page.set_input_files("#img_inpaint_base input[type=file]", str(tmp_path / "base.png"))
    page.set_input_files("#img_inpaint_mask input[type=file]", str(tmp_path / "mask.png"))
    page.wait_for_selector("#img_inpaint_base img")
    page.wait_for_selector("#img_inpaint_mask img")
    assert page.locator("#img2img_mask_blur").is_visible()  # the inpaint controls show in inpaint modes
    page.fill("#img2img_prompt textarea", "a yellow square")
    steps = page.locator("#img2img_steps input[type=number]")
    steps.fill("4")
    steps.press("Enter")
    page.click("#img2img_generate")
    img = page.wait_for_selector("#img2img_gallery img", timeout=SLOW)
    with urllib.request.urlopen(img.get_attribute("src"), timeout=10) as r:
        result = Image.open(io.BytesIO(r.read()))
    assert result.format == "PNG" and result.size == (64, 64)
    assert "Mask blur: 4" in result.info.get("parameters", "")
    _, blurred = prepare_mask(mask, (64, 64), invert=False, blur=4)
    outside = np.asarray(blurred) == 0
    diff = np.abs(np.asarray(result.convert("RGB"), dtype=int) - np.asarray(base, dtype=int))
    assert outside.sum() > 1000 and diff[outside].max() <= 2
    assert diff[24:40, 24:40].mean() > 5  # the masked area was repainted
    assert "a yellow square" in page.inner_text("#html_info_img2img")
