"""The browser tests' shared setup: Debian's Chromium (never Playwright's own download) driven by Playwright,
headless and offline, and small page helpers. A test module imports the fixtures it uses:

    from tests.ui.browser import SLOW, browser, page, viewport  # noqa: F401  (pytest fixtures)

Importing this module skips the importing test module when Chromium or Playwright is missing. Override the
`viewport` fixture in a module for another window size."""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "the browser tests need Debian's /usr/bin/chromium (apt-get install chromium); "
        "Playwright's own browser download is never used",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need the playwright package")

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SLOW = 90_000  # ms; generation on a busy 2-core CPU


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module (starting it is the slow part)."""
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def viewport() -> dict[str, int]:
    return {"width": 1280, "height": 1000}


@pytest.fixture
def page(browser, viewport):
    """A fresh page (its own context) per test; JavaScript errors on the page fail the test."""
    context = browser.new_context(viewport=viewport)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.set_default_navigation_timeout(60_000)  # the first page load of a cold run (Gradio's JS read from disk)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def set_slider(page, elem_id: str, value) -> None:
    """Type `value` into a slider's number box and commit it (Enter, then leaving the box); typed again when the
    slider did not take it (a box typed into while its accordion was still opening kept its old value: the hires
    size line of test_layout then never changed)."""
    box = page.locator(f"#{elem_id} input[type=number]")
    slider = page.locator(f"#{elem_id} input[type=range]")
    for _ in range(3):
        box.fill(str(value))
        box.press("Enter")
        box.blur()
        try:
            page.wait_for_function(
                "([sel, v]) => { const e = document.querySelector(sel); return !!e && Number(e.value) === Number(v); }",
                arg=[f"#{elem_id} input[type=range]", value],
                timeout=3_000,
            )
            return
        except sync_api.TimeoutError:
            continue
    raise AssertionError(f"slider {elem_id} never took {value!r}; it shows {slider.input_value()!r}")


def choose(page, elem_id: str, text: str) -> None:
    """Pick a dropdown entry by (part of) its text."""
    page.click(f"#{elem_id} input")
    page.locator("ul[role=listbox] li", has_text=text).first.click()


def wait_text(page, selector: str, text: str, timeout: int = 30_000) -> None:
    """Wait until the element's value (inputs) or text shows `text`; on timeout say what it shows instead."""
    try:
        page.wait_for_function(
            "([sel, text]) => { const e = document.querySelector(sel);"
            " return !!e && (e.value ?? e.innerText).includes(text); }",
            arg=[selector, text],
            timeout=timeout,
        )
    except sync_api.TimeoutError:
        shown = page.evaluate(
            "(sel) => { const e = document.querySelector(sel); return e && (e.value ?? e.innerText); }", selector
        )
        raise AssertionError(f"{selector} never showed {text!r}; it shows {shown!r}") from None
