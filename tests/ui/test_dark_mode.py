"""Dark mode is readable (#19 item 8): in Chromium, the computed contrast of an inline error (`.easel-error`) and a
note (`.easel-note`) against the background they are drawn on is at least 4.5:1 (WCAG AA) in light and in dark
mode; the page's CSS reaches the page through mount_gradio_app (Gradio 6), not as a block of the layout."""

from __future__ import annotations

import pytest

from tests.ui.browser import browser, choose, page, viewport, wait_text  # noqa: F401

# WCAG 2 contrast of an element's text colour against its effective background: the element's and its
# ancestors' background colours composited (alpha) from the page's canvas down
CONTRAST_JS = """(el) => {
  const parse = (c) => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const layers = [];
  for (let e = el; e; e = e.parentElement) layers.push(parse(getComputedStyle(e).backgroundColor));
  let bg = [255, 255, 255];
  for (const c of layers.reverse()) { if (!c || c[3] === 0) continue;
    bg = bg.map((v, i) => c[i] * c[3] + v * (1 - c[3])); }
  const fgc = parse(getComputedStyle(el).color);
  const fg = fgc.slice(0, 3).map((v, i) => v * fgc[3] + bg[i] * (1 - fgc[3]));
  const lum = (rgb) => { const [r, g, b] = rgb.map((v) => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return {ratio: (a + 0.05) / (b + 0.05), fg: getComputedStyle(el).color, bg: bg.map(Math.round)};
}"""


def contrast(page, selector: str) -> dict:
    return page.locator(selector).first.evaluate(CONTRAST_JS)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_error_and_note_contrast(data_dir, live_server, page, theme):  # noqa: F811
    (data_dir / "models" / "Stable-diffusion" / "zz-broken.safetensors").write_bytes(b"not safetensors" * 8)
    srv = live_server()
    page.goto(srv.url + ("/?__theme=dark" if theme == "dark" else "/"))
    page.wait_for_selector("#txt2img_generate")
    assert page.evaluate("() => document.body.classList.contains('dark')") == (theme == "dark")
    choose(page, "setting_sd_model_checkpoint", "zz-broken")  # a load error: .easel-error under the top bar
    wait_text(page, "#quicksettings_message", "zz-broken")
    page.click("#txt2img_extra_networks > button")  # the extra networks' status line: .easel-note
    page.wait_for_selector("#txt2img_extra_networks_status .easel-note", state="visible")
    for selector in ("#quicksettings_message .easel-error", "#txt2img_extra_networks_status .easel-note"):
        c = contrast(page, selector)
        assert c["ratio"] >= 4.5, f"{theme}: {selector} text {c['fg']} on {c['bg']}: {c['ratio']:.2f}:1"
    # the CSS is the page's own (mount_gradio_app(css=…)), not a <style> block taking a place in the layout, and
    # the values kept in the page (PageValue) are not shown as JSON blocks
    assert page.locator("#easel_css").count() == 0
    assert page.locator("[data-testid=json]:visible").count() == 0
    # the page load's follower (live_jobs) found no job and left the buttons as they were
    assert page.inner_text("#txt2img_generate").strip() == "Generate"
