"""The UI in a real browser: Debian's Chromium driven by Playwright against a live server on the tiny models."""

from __future__ import annotations

import io
import urllib.request
from pathlib import Path

from PIL import Image

from tests.ui.browser import SLOW, browser, choose, page, set_slider, viewport, wait_text  # noqa: F401
from webui.generation.requests import Txt2ImgRequest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def generate_via_service(app, **fields):
    job = app.submit_txt2img(Txt2ImgRequest(**fields), from_api=False)
    return app.jobs.wait(job, timeout=120)


def test_generate_shows_png_with_infotext(live_server, page):
    srv = live_server()
    page.goto(srv.url)
    prompt = "a red circle on a blue background"
    page.fill("#txt2img_prompt textarea", prompt)
    set_slider(page, "txt2img_steps", 4)
    page.click("#txt2img_generate")
    img = page.wait_for_selector("#txt2img_gallery img", timeout=SLOW)
    src = img.get_attribute("src")
    assert src and src.startswith(srv.url)
    with urllib.request.urlopen(src, timeout=10) as r:
        png = Image.open(io.BytesIO(r.read()))
    assert png.format == "PNG"
    params = png.info.get("parameters", "")
    assert prompt in params and "Steps: 4" in params
    info = page.inner_text("#html_info_txt2img")
    assert prompt in info and "Steps: 4" in info
    # ♻️ takes the seed of the image shown
    seed = params.split("Seed: ")[1].split(",")[0]
    page.click("#txt2img_reuse_seed")
    wait_text(page, "#txt2img_seed input", seed)
    page.click("#txt2img_random_seed")
    wait_text(page, "#txt2img_seed input", "-1")


def test_errors_are_visible_and_the_page_keeps_working(data_dir, live_server, page):
    broken = data_dir / "models" / "Stable-diffusion" / "zz-broken.safetensors"
    broken.write_bytes(b"this is not a safetensors file" * 4)
    srv = live_server()
    before = srv.app.models.active.info.title
    page.goto(srv.url)
    wait_text(page, "#setting_sd_model_checkpoint input", before)

    choose(page, "setting_sd_model_checkpoint", "zz-broken")
    wait_text(page, "#quicksettings_message", "zz-broken")
    assert page.locator("#quicksettings_message .easel-error").is_visible()
    wait_text(page, "#setting_sd_model_checkpoint input", before)
    assert srv.app.models.active.info.title == before

    page.click("#tab_settings-button")
    page.fill("#setting_max_generation_pixels input", "10")
    page.click("#settings_submit")
    wait_text(page, "#settings_result", "max_generation_pixels")
    assert page.locator("#settings_result .easel-error").is_visible()
    assert srv.app.options.get("max_generation_pixels") == 2048 * 2048

    # the page still works: a valid setting applies and persists, a valid checkpoint loads
    page.fill("#setting_max_generation_pixels input", str(2048 * 2048))
    set_slider(page, "setting_txt2img_default_steps", 9)
    page.click("#settings_submit")
    wait_text(page, "#settings_result", "1 setting(s) changed")
    assert srv.app.options.get("txt2img_default_steps") == 9
    assert '"txt2img_default_steps": 9' in (data_dir / "config.json").read_text()

    other = next(i.title for i in srv.app.catalog.list() if i.title != before and not i.name.startswith("zz"))
    choose(page, "setting_sd_model_checkpoint", other.split(" [")[0])
    page.wait_for_function(
        "() => document.querySelector('#quicksettings_message').innerText.trim() === ''", timeout=SLOW
    )  # cleared when the new model has loaded
    wait_text(page, "#setting_sd_model_checkpoint input", other)
    assert srv.app.models.active.info.title == other


def test_pnginfo_reads_a_png_made_by_the_app_and_sends_it_to_txt2img(live_server, page):
    srv = live_server()
    result = generate_via_service(
        srv.app,
        prompt="a green triangle, (sharp:1.2)",
        negative_prompt="blurry",
        steps=2,
        seed=1234,
        sampler_name="DPM++ 2M",
        cfg_scale=5.5,
    )
    path = result.paths[0]
    page.goto(srv.url)
    page.click("#tab_pnginfo-button")
    page.set_input_files("#pnginfo_image input[type=file]", path)
    wait_text(page, "#pnginfo_generation_info textarea", "Steps: 2")
    raw = page.input_value("#pnginfo_generation_info textarea")
    assert raw.startswith("a green triangle, (sharp:1.2)\nNegative prompt: blurry\n")
    table = page.inner_text("#pnginfo_table")
    assert "Sampler" in table and "DPM++ 2M" in table and "1234" in table

    page.click("#pnginfo_send_to_txt2img")
    page.wait_for_selector("#tab_txt2img", state="visible")
    wait_text(page, "#txt2img_prompt textarea", "a green triangle, (sharp:1.2)")
    assert page.input_value("#txt2img_neg_prompt textarea") == "blurry"
    wait_text(page, "#txt2img_seed input", "1234")
    assert page.input_value("#txt2img_steps input[type=number]") == "2"
    assert page.input_value("#txt2img_cfg_scale input[type=number]") == "5.5"
    assert page.input_value("#txt2img_sampling input") == "DPM++ 2M"


def test_history_lists_jobs_searches_and_sends_to_txt2img(live_server, page):
    srv = live_server()
    generate_via_service(srv.app, prompt="a yellow square", steps=2, seed=77)
    generate_via_service(srv.app, prompt="a white circle", steps=3, seed=88)
    page.goto(srv.url)
    page.click("#tab_history-button")
    wait_text(page, "#history_table", "a yellow square")
    assert "a white circle" in page.inner_text("#history_table")
    assert page.locator("#history_gallery img").count() >= 2

    page.fill("#history_search textarea, #history_search input", "yellow")
    page.press("#history_search textarea, #history_search input", "Enter")
    page.wait_for_function("() => !document.querySelector('#history_table').innerText.includes('a white circle')")
    page.locator("#history_table [role=gridcell]", has_text="a yellow square").first.click()
    wait_text(page, "#history_details", "Seed: 77")
    page.click("#history_send_to_txt2img")
    page.wait_for_selector("#tab_txt2img", state="visible")
    wait_text(page, "#txt2img_prompt textarea", "a yellow square")
    wait_text(page, "#txt2img_seed input", "77")
    assert page.input_value("#txt2img_steps input[type=number]") == "2"

    # 400 px wide, light and dark: the rows are cards (no sideways scrolling), the prompt has a line of its own and
    # the numbers carry their column names; screenshots kept for a person to look at
    page.set_viewport_size({"width": 400, "height": 900})
    for theme in ("light", "dark"):
        page.goto(srv.url + ("?__theme=dark" if theme == "dark" else ""))
        page.click("#tabs .overflow-menu > button")
        page.locator("#tabs .overflow-dropdown button", has_text="History").first.click()
        wait_text(page, "#history_table", "a white circle")
        card = page.evaluate("""() => {
            const viewport = document.querySelector('#history_table .virtual-table-viewport');
            const row = document.querySelector('#history_table .virtual-row');
            const cell = (c) => row.querySelector(`[data-col="${c}"]`).getBoundingClientRect();
            return {overflow: viewport.scrollWidth - viewport.clientWidth, row: row.getBoundingClientRect().width,
                    prompt: cell(3).width, promptTop: cell(3).top, typeTop: cell(1).top, seedTop: cell(7).top,
                    header: document.querySelector('#history_table .header-table').getBoundingClientRect().height,
                    seed: getComputedStyle(row.querySelector('[data-col="7"]'), '::before').content,
                    dark: document.body.classList.contains('dark') || !!document.querySelector('.dark')}; }""")
        assert card["overflow"] <= 1 and card["header"] == 0, card
        assert card["prompt"] > 0.8 * card["row"] and card["typeTop"] < card["promptTop"] < card["seedTop"], card
        assert card["seed"] == '"Seed"' and card["dark"] == (theme == "dark"), card
        page.screenshot(path=str(ARTIFACTS / f"history-cards-{theme}.png"), full_page=True)
    # the Extensions table is cards at 400 px too: the name on its line, the filled columns labelled, the empty
    # ones (Remote, Branch… of a built-in) not shown as bare labels
    page.click("#tabs .overflow-menu > button")
    page.locator("#tabs .overflow-dropdown button", has_text="Extensions").first.click()
    page.wait_for_selector("#extensions_table .virtual-row")
    ext = page.evaluate("""() => {
        const viewport = document.querySelector('#extensions_table .virtual-table-viewport');
        const row = document.querySelector('#extensions_table .virtual-row');
        const cell = (c) => row.querySelector(`[data-col="${c}"]`);
        return {overflow: viewport.scrollWidth - viewport.clientWidth, row: row.getBoundingClientRect().width,
                name: cell(0).getBoundingClientRect().width, version: getComputedStyle(cell(1), '::before').content,
                remote: getComputedStyle(cell(3)).display}; }""")
    assert ext["overflow"] <= 1 and ext["name"] > 0.8 * ext["row"], ext
    assert ext["version"] == '"Version"' and ext["remote"] == "none", ext
