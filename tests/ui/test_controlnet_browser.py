"""The ControlNet accordion in a real browser: a unit with an uploaded image, canny and a tiny ControlNet, its
preview, a generation whose infotext names the unit; and a visible error for a unit enabled without an image."""

from __future__ import annotations

import shutil

import pytest

from tests.controlnet.conftest import square, tiny_controlnet
from tests.ui.browser import SLOW, browser, choose, page, set_slider, viewport, wait_text  # noqa: F401

UNIT = "txt2img_controlnet_unit_0"


@pytest.fixture(scope="module")
def cn_model(tmp_path_factory):
    """A tiny SD 1.x ControlNet (diffusers folder) made from the tiny UNet."""
    from tests.factories import tiny_components

    folder = tmp_path_factory.mktemp("cn-browser") / "tiny-canny"
    tiny_controlnet(tiny_components(0)[0], 1).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def cn_xl(tmp_path_factory):
    """A tiny SDXL ControlNet (for another family than the tiny SD 1.x checkpoint the server loads)."""
    from tests.factories import tiny_sdxl_components

    folder = tmp_path_factory.mktemp("cn-browser-xl") / "tiny-xl"
    tiny_controlnet(tiny_sdxl_components(0)[0], 3).save_pretrained(folder)
    return folder


@pytest.fixture
def server(data_dir, cn_model, cn_xl, live_server):
    """A live server whose models/ControlNet/ holds tiny-canny and tiny-xl."""
    shutil.copytree(cn_model, data_dir / "models" / "ControlNet" / "tiny-canny")
    shutil.copytree(cn_xl, data_dir / "models" / "ControlNet" / "tiny-xl")
    return live_server()


def open_unit(page, srv) -> None:
    """txt2img → the ControlNet accordion, unit 0 enabled with canny and tiny-canny."""
    page.goto(srv.url)
    page.locator("#txt2img_script_controlnet").get_by_text("ControlNet", exact=True).first.click()
    page.wait_for_selector(f"#{UNIT}_enabled", state="visible")
    page.check(f"#{UNIT}_enabled input")
    choose(page, f"{UNIT}_module", "canny")
    choose(page, f"{UNIT}_model", "tiny-canny")
    wait_text(page, f"#{UNIT}_model input", "tiny-canny")
    page.fill("#txt2img_prompt textarea", "a white square")
    set_slider(page, "txt2img_steps", 2)


def test_unit_preview_and_generate_write_the_controlnet_infotext(server, page, tmp_path):
    control = tmp_path / "control.png"
    square().save(control)
    open_unit(page, server)
    assert page.locator(f"#{UNIT}_threshold_a").is_visible()  # canny's sliders show once it is picked
    wait_text(page, f"#{UNIT}_threshold_a", "Canny Low Threshold")
    page.set_input_files(f"#{UNIT}_image input[type=file]", str(control))
    page.wait_for_selector(f"#{UNIT}_image img")
    page.click(f"#{UNIT}_preview_button")
    page.wait_for_selector(f"#{UNIT}_preview img", timeout=SLOW)

    page.click("#txt2img_generate")
    page.wait_for_selector("#txt2img_gallery img", timeout=SLOW)
    wait_text(page, "#html_info_txt2img", 'ControlNet 0: "Module: canny, Model: tiny-canny [', timeout=SLOW)

    # ↙️ with an empty prompt box takes the last generation's infotext: the unit's settings come back
    page.uncheck(f"#{UNIT}_enabled input")
    choose(page, f"{UNIT}_module", "none")
    page.fill("#txt2img_prompt textarea", "")
    page.click("#txt2img_paste")
    wait_text(page, "#txt2img_prompt textarea", "a white square")
    wait_text(page, f"#{UNIT}_module input", "canny")
    assert page.is_checked(f"#{UNIT}_enabled input")


def test_unit_without_an_image_shows_a_visible_error(server, page):
    open_unit(page, server)
    page.click("#txt2img_generate")
    wait_text(page, "#html_info_txt2img", "ControlNet unit 0 is enabled without an image", timeout=SLOW)
    assert page.locator("#html_info_txt2img .easel-error").is_visible()
    assert page.locator("#txt2img_gallery img").count() == 0  # nothing was generated


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_model_line_names_the_family_and_warns_of_another_one(server, page, theme, tmp_path):
    """Under the Model dropdown: the picked ControlNet's family; one for SDXL beside the SD 1.x checkpoint is
    flagged when picked (not only once a generation is refused), and the warning goes with the right model."""
    page.goto(server.url + ("/?__theme=dark" if theme == "dark" else "/"))
    page.locator("#txt2img_script_controlnet").get_by_text("ControlNet", exact=True).first.click()
    page.wait_for_selector(f"#{UNIT}_model", state="visible")
    choose(page, f"{UNIT}_model", "tiny-xl")
    wait_text(page, f"#{UNIT}_model_info", "For SDXL · diffusers folder")
    warning = page.locator(f"#{UNIT}_model_info .easel-warn")
    assert "The loaded checkpoint is SD 1.x" in warning.inner_text() and warning.is_visible()
    page.locator(f"#{UNIT}_model").screenshot(path=str(tmp_path / f"model-info-{theme}.png"))
    page.locator(f"#{UNIT}_model_info").scroll_into_view_if_needed()
    box = page.locator(f"#{UNIT}_model_info").bounding_box()
    page.screenshot(
        path=f"/tmp/cn-model-info-{theme}.png", clip={**box, "y": box["y"] - 80, "height": box["height"] + 160}
    )
    choose(page, f"{UNIT}_model", "tiny-canny")
    wait_text(page, f"#{UNIT}_model_info", "For an unknown family")  # the 32-wide test UNet's
    assert page.locator(f"#{UNIT}_model_info .easel-warn").count() == 0
    choose(page, f"{UNIT}_model", "None")
    wait_text(page, f"#{UNIT}_model_info", "")
