#!/usr/bin/env python3
"""Screenshots of every tab of a running Easel page, in light and dark mode and 400 px wide, to look at before
a UI change is called done (#19). `tests/ui/test_screenshots.py` runs it against a test server and keeps the files
in test-artifacts/screenshots/ (gitignored); by hand, against a running server:

    .venv/bin/python tools/screenshots.py http://127.0.0.1:7860 test-artifacts/screenshots

Uses Debian's /usr/bin/chromium through Playwright (never Playwright's own browser download)."""

from __future__ import annotations

import sys
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# name → (viewport width, query string)
MODES = {"light": (1280, ""), "dark": (1280, "?__theme=dark"), "narrow": (400, "")}
# the tabs' elem_ids → their labels (extension tabs, tab_ext_*, are found on the page)
LABELS = {
    "txt2img": "txt2img",
    "img2img": "img2img",
    "extras": "Extras",
    "train": "Train",
    "pnginfo": "PNG Info",
    "modelmerger": "Checkpoint Merger",
    "models": "Models",
    "history": "History",
    "extensions": "Extensions",
    "settings": "Settings",
}
TABS = tuple(LABELS)
OPEN_ACCORDIONS = ("txt2img_extra_networks", "txt2img_hr", "txt2img_script_controlnet")  # their content shows


def tab_ids(page) -> list[str]:
    found = page.evaluate(
        "() => [...document.querySelectorAll('[id^=tab_ext_]')].map(e => e.id)"
        ".filter(id => !id.endsWith('-button')).map(id => id.slice(4))"
    )
    return [*TABS, *found]


def show_tab(page, tab: str) -> None:
    """Select a tab; at 400 px Gradio moves most tab buttons into its overflow menu."""
    button = page.locator(f"#tab_{tab}-button")
    if button.count() and button.first.is_visible():
        button.first.click()
    else:  # the "More tabs" menu lists the tabs that don't fit, by label
        page.click("#tabs .overflow-menu > button")
        page.locator("#tabs .overflow-dropdown button", has_text=LABELS.get(tab, tab)).first.click()
    page.wait_for_selector(f"#tab_{tab}", state="visible", timeout=10_000)


def shoot(page, url: str, out_dir: Path, mode: str) -> list[Path]:
    _width, query = MODES[mode]
    page.goto(url + query, wait_until="networkidle", timeout=60_000)
    page.wait_for_selector("#txt2img_generate", timeout=30_000)
    for accordion in OPEN_ACCORDIONS:
        header = page.locator(f"#{accordion} > button").first
        if header.count():
            header.click()
    page.wait_for_timeout(500)
    saved = []
    for tab in tab_ids(page):
        try:
            show_tab(page, tab)
        except Exception as e:  # noqa: BLE001 - a tab that can't be shown is reported, the others still shot
            print(f"{mode}/{tab}: {e}", file=sys.stderr)
            continue
        page.wait_for_timeout(300)
        path = out_dir / f"{tab}-{mode}.png"
        page.screenshot(path=str(path), full_page=True)
        saved.append(path)
    return saved


def take_screenshots(browser, url: str, out_dir: Path, modes=tuple(MODES)) -> list[Path]:
    """Every tab in every mode as out_dir/<tab>-<mode>.png; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = []
    for mode in modes:
        context = browser.new_context(viewport={"width": MODES[mode][0], "height": 900})
        try:
            saved += shoot(context.new_page(), url.rstrip("/") + "/", out_dir, mode)
        finally:
            context.close()
    return saved


def main(argv: list[str]) -> int:
    from playwright.sync_api import sync_playwright

    url = argv[0] if argv else "http://127.0.0.1:7860"
    out = Path(argv[1] if len(argv) > 1 else "test-artifacts/screenshots")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        for path in take_screenshots(browser, url, out):
            print(path)
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
