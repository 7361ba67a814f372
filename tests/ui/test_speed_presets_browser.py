"""#21 speed presets in Chromium: Settings → Optimizations holds Step cache and Token merging ratio (A1111 puts
token merging there); applied there, the next txt2img runs with them and its infotext says so."""

from __future__ import annotations

from tests.ui.browser import SLOW, browser, page, set_slider, viewport, wait_text  # noqa: F401


def test_presets_set_in_settings_reach_the_image(live_server, page):
    srv = live_server()
    page.goto(srv.url)
    page.click("#tab_settings-button")
    page.locator("#settings_sections label", has_text="Optimizations").click()
    for key in ("step_cache_interval", "token_merging_ratio", "token_merging_ratio_hr"):
        assert page.locator(f"#settings_section_optimizations #setting_{key}").first.is_visible()
    set_slider(page, "setting_step_cache_interval", 3)
    set_slider(page, "setting_token_merging_ratio", 0.5)
    page.click("#settings_submit")
    wait_text(page, "#settings_result", "step_cache_interval")
    assert srv.app.options.get("step_cache_interval") == 3 and srv.app.options.get("token_merging_ratio") == 0.5

    page.click("#tab_txt2img-button")
    page.fill("#txt2img_prompt textarea", "a red circle")
    set_slider(page, "txt2img_steps", 4)
    page.click("#txt2img_generate")
    wait_text(page, "#html_info_txt2img", "Token merging ratio: 0.5", timeout=SLOW)
    assert "Step cache: 3" in page.inner_text("#html_info_txt2img")
