"""The "Extra networks" panel's handlers called directly (no browser), on LoRA files written into the app's LoRA
folder: cards with preview and ss_* metadata, search, click → `<lora:name:1>` in the prompt, refresh, errors."""

from __future__ import annotations

import json

import gradio as gr
import pytest
from PIL import Image

from tests.lora.factory import write_kohya, write_loha
from webui.ui.extra_networks import ExtraNetworksPanel, toggle_tag, trigger_tags

META = {"ss_network_dim": 8, "ss_network_alpha": 4, "ss_base_model_version": "sd_v1",
        "ss_sd_model_name": "tiny-a.safetensors",
        "ss_tag_frequency": json.dumps({"1_ds": {"easelcat": 12, " red hat": 5, "smile": 1},
                                        "2_more": {"red hat": 4, "blue sky": 3}})}


@pytest.fixture
def loras(app):
    d = app.paths.lora_dir
    d.mkdir(parents=True, exist_ok=True)
    write_kohya(d / "catstyle.safetensors", seed=1, metadata=META)
    Image.new("RGB", (64, 48), (0, 200, 0)).save(d / "catstyle.preview.png")
    write_kohya(d / "plain.safetensors", seed=2)
    write_loha(d / "broken.safetensors")
    app.loras.refresh()
    return d


def panel_for(app, prompt_value=""):
    with gr.Blocks():
        prompt = gr.Textbox(prompt_value, elem_id="txt2img_prompt")
        return ExtraNetworksPanel(app, "txt2img", prompt)


def captions(gallery_value):
    return [c for _, c in gallery_value]


def test_cards_show_preview_and_metadata(app, loras):
    panel = panel_for(app)
    gallery, names, details, status = panel.render("")
    assert names == ["broken", "catstyle", "plain"]
    assert "3 LoRAs" in status
    cat_img, cat_caption = gallery[names.index("catstyle")]
    assert cat_img.getpixel((5, 5)) == (0, 200, 0)  # the preview file, not the placeholder
    assert gallery[names.index("plain")][0].getpixel((1, 1)) == (70, 70, 80)  # placeholder
    assert "sd_v1" in cat_caption and "dim 8/alpha 4" in cat_caption
    assert "Base model: sd_v1 · tiny-a.safetensors" in details and "Dim/alpha: 8/4" in details
    tags_line = details.split("Trigger tags: ")[1]
    assert tags_line.index("easelcat") < tags_line.index("red hat") < tags_line.index("blue sky")
    assert trigger_tags(app.lora_catalog.find("catstyle").metadata, limit=2) == ["easelcat", "red hat"]
    # the component built with the same cards
    assert len(panel.gallery.value) == 3 and panel.names.preprocess(panel.names.value) == names


def test_search_filters_by_name_and_tags(app, loras):
    panel = panel_for(app)
    upd, names, _, status = panel.on_search("CAT")
    assert names == ["catstyle"] and "1 of 3 LoRAs" in status and len(upd["value"]) == 1
    assert panel.on_search("blue sky")[1] == ["catstyle"]  # a trigger tag matches too
    assert panel.on_search("nothing-like-this")[1] == []
    assert panel.on_search("")[1] == ["broken", "catstyle", "plain"]


def test_click_inserts_the_tag_into_the_prompt(app, loras):
    panel = panel_for(app)
    names = panel.on_search("")[1]
    prompt, status = panel.click(names, "a photo of a cat", names.index("catstyle"))
    assert prompt == "a photo of a cat <lora:catstyle:1>" and "Added" in status
    prompt, _ = panel.click(names, prompt, names.index("plain"))
    assert prompt == "a photo of a cat <lora:catstyle:1> <lora:plain:1>"
    assert panel.click(names, "", names.index("plain"))[0] == "<lora:plain:1>"
    # after a search, the index refers to the filtered cards
    filtered = panel.on_search("plain")[1]
    assert panel.click(filtered, "x,", 0)[0] == "x, <lora:plain:1>"
    # as in A1111, clicking a card whose tag is in the prompt takes it out
    assert panel.click(names, "a, <lora:plain:0.5>, b", names.index("plain"))[0] == "a, b"


def test_select_event_uses_the_index(app, loras):
    panel = panel_for(app)
    names = panel.on_search("")[1]
    evt = gr.SelectData(None, {"index": names.index("catstyle"), "value": None, "selected": True})
    assert panel.on_select(names, "cat", evt)[0] == "cat <lora:catstyle:1>"


def test_erroring_entry_shows_its_error_and_does_not_insert(app, loras):
    panel = panel_for(app)
    gallery, names, details, _ = panel.render("")
    broken = names.index("broken")
    assert "error" in gallery[broken][1] and "LoHa" in details
    prompt, status = panel.click(names, "a cat", broken)
    assert prompt == gr.update()  # the prompt is left as it is
    assert "easel-error" in status and "broken cannot be used" in status and "LoHa" in status


def test_refresh_picks_up_a_new_file(app, loras):
    panel = panel_for(app)
    assert "fresh" not in panel.on_search("")[1]
    write_kohya(loras / "fresh.safetensors", seed=3, metadata={"ss_network_dim": 2, "ss_network_alpha": 1})
    _, names, details, status = panel.on_refresh("")
    assert "fresh" in names and "4 LoRAs" in status and "Dim/alpha: 2/1" in details
    assert panel.click(names, "", names.index("fresh"))[0] == "<lora:fresh:1>"
    (loras / "fresh.safetensors").unlink()  # a card whose file went away since the last refresh
    app.loras.refresh()
    assert "gone" in panel.click(names, "", names.index("fresh"))[1]


def test_both_tabs_have_the_panel_on_their_own_prompt(app, loras):
    from webui.ui.img2img_tab import Img2ImgTab
    from webui.ui.txt2img_tab import Txt2ImgTab

    with gr.Blocks() as demo:
        t2i, i2i = Txt2ImgTab(app), Img2ImgTab(app)
    for tab in (t2i, i2i):
        panel = tab.extra_networks
        assert panel.prompt is tab.prompt and panel.gallery.elem_id == f"{tab.tabname}_lora_cards"
    ids = {c.get("props", {}).get("elem_id") for c in demo.config["components"]}
    assert {"txt2img_extra_networks", "img2img_extra_networks"} <= ids
    targets = [d for d in demo.config["dependencies"]
               if any(t[0] == t2i.extra_networks.gallery._id and t[1] == "select" for t in d["targets"])]
    assert targets and t2i.prompt._id in targets[0]["outputs"]


def test_toggle_tag_separators():
    assert toggle_tag("", "a") == ("<lora:a:1>", True)
    assert toggle_tag("cat  ", "a") == ("cat <lora:a:1>", True)
    assert toggle_tag("cat <lora:a:1>", "a") == ("cat", False)
    assert toggle_tag("x <lora:a:1> y", "a") == ("x y", False)
    assert toggle_tag("x <lora:ab:1>", "a") == ("x <lora:ab:1> <lora:a:1>", True)


def test_clicking_a_card_in_chromium_edits_the_prompt(data_dir, live_server):
    from pathlib import Path

    if not Path("/usr/bin/chromium").exists():
        pytest.skip("needs Debian's /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.ui.browser import ARGS

    write_kohya(data_dir / "models" / "Lora" / "catstyle.safetensors", seed=1, metadata=META)
    srv = live_server()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(30_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(srv.url)
            prompt = page.locator("#txt2img_prompt textarea")
            prompt.fill("a cat")
            page.locator("#txt2img_extra_networks").get_by_text("Extra networks").first.click()
            page.locator("#txt2img_lora_cards img").first.click()
            page.wait_for_function(
                "() => document.querySelector('#txt2img_prompt textarea').value.includes('<lora:catstyle:1>')")
            assert prompt.input_value() == "a cat <lora:catstyle:1>"
            assert "Added" in page.locator("#txt2img_extra_networks_status").inner_text()
            assert not errors, errors
        finally:
            browser.close()
