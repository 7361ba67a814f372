"""FLUX.1 in Chromium: the tiny FLUX dev model chosen in the top bar, a txt2img from the page, and "Distilled CFG
Scale" shown only while a FLUX checkpoint is active (and a LoRA made for SD 1.x greyed out in the Extra networks
panel then); SD 3.5's "Skip layer guidance" panel only while an SD 3.5 checkpoint is."""

from __future__ import annotations

import pytest

from tests.families.conftest import merge_models
from tests.ui.browser import SLOW, browser, choose, page, set_slider, viewport, wait_text  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def data_dir(tmp_path, tiny_models, flux_models, sd3_models):
    import shutil

    from tests.lora.factory import write_kohya

    merge_models(tmp_path / "models", tiny_models, flux_models)
    sd3 = "Stable-diffusion/sd35-diffusers"  # self-contained: SD 3's split parts would clash with FLUX's
    shutil.copytree(sd3_models / sd3, tmp_path / "models" / sd3)
    write_kohya(
        tmp_path / "models" / "Lora" / "sd1_style.safetensors", seed=1, metadata={"ss_base_model_version": "sd_v1"}
    )
    return tmp_path


def test_flux_from_the_top_bar_with_distilled_cfg(live_server, page):
    srv = live_server("--ckpt", "tiny-a")
    page.goto(srv.url)
    distilled = page.locator("#txt2img_distilled_cfg_scale")
    page.wait_for_selector("#txt2img_cfg_scale")
    assert not distilled.is_visible()  # SD 1.x: no distilled guidance
    choose(page, "setting_sd_model_checkpoint", "flux1-dev-tiny")
    distilled.wait_for(state="visible", timeout=SLOW)
    assert srv.app.models.active.info.name == "flux1-dev-tiny.safetensors"
    page.fill("#txt2img_prompt textarea", "a red circle")
    # the page's default "Euler a" can't run FLUX: the switch set Forge's "Euler"
    wait_text(page, "#txt2img_sampling input", "Euler")
    assert page.input_value("#txt2img_sampling input") == "Euler"
    set_slider(page, "txt2img_steps", 2)
    set_slider(page, "txt2img_cfg_scale", 1)
    set_slider(page, "txt2img_distilled_cfg_scale", 2.5)
    page.click("#txt2img_generate")
    page.wait_for_selector("#txt2img_gallery img", timeout=SLOW)
    wait_text(page, "#html_info_txt2img", "Distilled CFG Scale: 2.5", timeout=SLOW)
    info = page.inner_text("#html_info_txt2img")
    assert "Model: flux1-dev-tiny" in info and "Steps: 2" in info and "Module 1: ae" in info
    page.click("#txt2img_extra_networks button, #txt2img_extra_networks .label-wrap")
    card = page.locator('#txt2img_lora_cards .easel-card[data-name="sd1_style"]')
    card.wait_for(timeout=SLOW)
    assert "easel-card-unfit" in (card.get_attribute("class") or "")
    assert "the loaded checkpoint is FLUX.1 dev" in (card.get_attribute("title") or "")
    choose(page, "setting_sd_model_checkpoint", "tiny-a")
    distilled.wait_for(state="hidden", timeout=SLOW)
    # the FLUX image's infotext pasted (↙️) while SD 1.x is active: the paste switches to FLUX, and the switch
    # shows Distilled CFG Scale again as the top bar's does
    page.fill("#txt2img_prompt textarea", info)
    page.click("#txt2img_paste")
    distilled.wait_for(state="visible", timeout=SLOW)
    assert srv.app.models.active.info.name == "flux1-dev-tiny.safetensors"
    wait_text(page, "#txt2img_distilled_cfg_scale input[type=number]", "2.5")
    # skip-layer guidance: its panel only while an SD 3/3.5 checkpoint is active
    slg = page.locator("#txt2img_slg")
    assert not slg.is_visible()
    choose(page, "setting_sd_model_checkpoint", "sd35-diffusers")
    slg.wait_for(state="visible", timeout=SLOW)
    distilled.wait_for(state="hidden", timeout=SLOW)
