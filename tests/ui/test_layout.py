"""A1111's compact top row (#19 item 9), measured in Chromium: the token counters lie inside the prompt boxes, ↙️,
🗑️ and the styles sit in one row, no empty band between the top bar and the tabs, the live preview is placed over
the gallery; 🗑️ clears both prompts. Hires fix: Enable over the accordion header, "from W×H to W×H" (#19 item 12)."""

from __future__ import annotations

from pathlib import Path

from tests.ui.browser import browser, page, set_slider, viewport, wait_text  # noqa: F401

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def box(page, selector: str) -> dict:
    b = page.locator(selector).first.bounding_box()
    assert b, f"{selector} is not shown"
    return b


def inside(inner: dict, outer: dict) -> bool:
    return (
        outer["x"] <= inner["x"]
        and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 1
        and outer["y"] <= inner["y"]
        and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + 1
    )


def accordion_open(page) -> bool:
    return page.evaluate("() => !!document.querySelector('#txtimg_hr_finalres')?.checkVisibility()")


def hires_header(page) -> None:
    """Enable sits in the header row, centred on its text, right of the title, inside the header, readable."""
    enable, header = box(page, "#txt2img_enable_hr label"), box(page, "#txt2img_hr > button")
    title = box(page, "#txt2img_hr > button > span")
    assert abs((enable["y"] + enable["height"] / 2) - (header["y"] + header["height"] / 2)) < 5, (enable, header)
    assert title["x"] + title["width"] < enable["x"] and enable["x"] + enable["width"] < header["x"] + header["width"]
    colours = page.evaluate("""() => { const label = document.querySelector('#txt2img_enable_hr label span');
        const block = document.querySelector('#txt2img_hr');
        return [getComputedStyle(label).color, getComputedStyle(block).backgroundColor]; }""")
    assert colours[0] != colours[1], colours


def test_compact_top_row_and_hires_header(live_server, page):  # noqa: F811
    srv = live_server()
    page.goto(srv.url)
    page.wait_for_selector("#txt2img_generate")
    for counter, field in (
        ("#txt2img_token_counter", "#txt2img_prompt"),
        ("#txt2img_negative_token_counter", "#txt2img_neg_prompt"),
    ):
        assert inside(box(page, counter), box(page, field)), counter
    ys = [
        box(page, s)["y"] + box(page, s)["height"] / 2
        for s in ("#txt2img_paste", "#txt2img_clear_prompt", "#txt2img_styles", "#txt2img_styles_refresh")
    ]
    assert max(ys) - min(ys) < 8, ys  # one row
    tools_right = box(page, "#txt2img_style_apply")
    generate = box(page, "#txt2img_generate")
    assert tools_right["x"] + tools_right["width"] <= generate["x"] + generate["width"] + 2  # no overflow
    gap = box(page, "#tabs")["y"] - (box(page, "#quicksettings")["y"] + box(page, "#quicksettings")["height"])
    assert gap < 30, gap
    # the preview's place is the gallery's (it is shown over it while a job runs; hidden, it isn't in the page)
    assert page.locator("#txt2img_gallery_container.easel-results #txt2img_gallery").count() == 1
    rules = page.evaluate(
        "() => [...document.styleSheets].flatMap(s => { try { return [...s.cssRules]; }"
        " catch (e) { return []; } }).map(r => r.cssText)"
        ".filter(t => t.includes('easel-live-preview'))"
    )
    assert any("position: absolute" in r for r in rules), rules
    # 🗑️
    page.fill("#txt2img_prompt textarea", "a cat")
    page.fill("#txt2img_neg_prompt textarea", "blurry")
    page.click("#txt2img_clear_prompt")
    wait_text(page, "#txt2img_prompt textarea", "")
    page.wait_for_function("() => document.querySelector('#txt2img_neg_prompt textarea').value === ''")
    # Hires fix: Enable in the header row, works without opening the accordion; the size line follows the sliders
    hires_header(page)
    page.click("#txt2img_enable_hr input")
    assert page.is_checked("#txt2img_enable_hr input") and not accordion_open(page)  # the click didn't toggle it
    page.focus("#txt2img_hr > button")
    page.keyboard.press("Shift+Tab")  # keyboard: Enable is the stop before the header, and Space sets it
    assert page.evaluate("() => document.activeElement.closest('#txt2img_enable_hr') !== null")
    page.keyboard.press("Space")
    page.wait_for_function("() => !document.querySelector('#txt2img_enable_hr input').checked")
    page.keyboard.press("Space")
    page.wait_for_function("() => document.querySelector('#txt2img_enable_hr input').checked")
    assert not accordion_open(page)
    page.click("#txt2img_hr > button")
    page.wait_for_function("() => !!document.querySelector('#txtimg_hr_finalres')?.checkVisibility()")
    assert page.is_checked("#txt2img_enable_hr input")  # opening the accordion left Enable as it was
    wait_text(page, "#txtimg_hr_finalres", "from 64×64 to 128×128")
    set_slider(page, "txt2img_hr_scale", 3)
    wait_text(page, "#txtimg_hr_finalres", "to 192×192")

    # 400 px wide and dark: the top bar's 🔄 stays on the page, Enable still sits in the header, readable
    page.set_viewport_size({"width": 400, "height": 900})
    page.goto(srv.url + "?__theme=dark")
    page.wait_for_selector("#txt2img_generate")
    refresh = box(page, "#refresh_sd_model_checkpoint")
    assert refresh["x"] + refresh["width"] <= 400, refresh
    page.locator("#txt2img_hr").scroll_into_view_if_needed()
    hires_header(page)
    assert page.evaluate("() => document.body.classList.contains('dark') || !!document.querySelector('.dark')")
    page.click("#txt2img_enable_hr input")
    assert page.is_checked("#txt2img_enable_hr input") and not accordion_open(page)
    page.locator("#txt2img_hr_wrap").screenshot(path=str(ARTIFACTS / "hires-header-narrow-dark.png"))
