"""The "Extra networks" panel (#19 item 10): tabs of fixed-size cards for Textual Inversion, Checkpoints and LoRA,
built from files written into the app's folders; the handlers called directly, then one click path in Chromium.
Cards show the preview and the name; clicking a LoRA toggles `<lora:name:w>` (w and activation text from A1111's
user metadata `<name>.json`), an embedding toggles its word, a checkpoint loads; ⚙ shows the ss_* metadata."""

from __future__ import annotations

import json
import math

import gradio as gr
import pytest
import torch
from PIL import Image

from tests.lora.factory import write_kohya, write_loha
from webui.models.user_metadata import read_user_metadata
from webui.ui.extra_networks import ExtraNetworksPanel, toggle_tag, toggle_word, trigger_tags

META = {
    "ss_network_dim": 8,
    "ss_network_alpha": 4,
    "ss_base_model_version": "sd_v1",
    "ss_sd_model_name": "tiny-a.safetensors",
    "ss_tag_frequency": json.dumps(
        {"1_ds": {"easelcat": 12, " red hat": 5, "smile": 1}, "2_more": {"red hat": 4, "blue sky": 3}}
    ),
}


@pytest.fixture
def loras(app):
    d = app.paths.lora_dir
    d.mkdir(parents=True, exist_ok=True)
    write_kohya(d / "catstyle.safetensors", seed=1, metadata=META)
    Image.new("RGB", (64, 48), (0, 200, 0)).save(d / "catstyle.preview.png")
    write_kohya(d / "plain.safetensors", seed=2)
    (d / "plain.json").write_text(
        json.dumps(
            {
                "preferred weight": 0.6,
                "activation text": "plainstyle",
                "description": "a plain one",
                "sd version": "SD1",
            }
        )
    )
    write_loha(d / "broken.safetensors")
    app.loras.refresh()
    e = app.paths.embeddings_dir
    e.mkdir(parents=True, exist_ok=True)
    torch.save({"string_to_param": {"*": torch.randn(2, 32)}, "step": 5}, e / "zorbo.pt")
    app.embeddings.refresh()
    return d


def panel_for(app, prompt_value=""):
    with gr.Blocks():
        prompt = gr.Textbox(prompt_value, elem_id="txt2img_prompt")
        return ExtraNetworksPanel(app, "txt2img", prompt)


def names_in(cards_html: str) -> list[str]:
    return [part.split('"')[0] for part in cards_html.split('data-name="')[1:]]


def test_tabs_of_cards_with_preview_name_and_counts(app, loras):
    panel = panel_for(app)
    htmls, status = panel.render("")
    assert names_in(htmls["lora"]) == ["broken", "catstyle", "plain"]
    assert names_in(htmls["textual_inversion"]) == ["zorbo"]
    assert len(names_in(htmls["checkpoints"])) == len(app.catalog.list()) == 2
    assert "3 LoRAs" in status and "1 embedding" in status and "2 checkpoints" in status
    cat = htmls["lora"].split('data-name="catstyle"')[1].split("data-name=")[0]
    assert 'src="data:image/jpeg;base64,' in cat and "SD 1.x" in cat and "dim 8/alpha 4" in cat
    assert '<div class="easel-card-name">catstyle' in cat and 'data-action="meta"' in cat
    plain = htmls["lora"].split('data-name="plain"')[1].split("data-name=")[0]
    assert "no preview" in plain
    assert trigger_tags(app.lora_catalog.find("catstyle").metadata, limit=2) == ["easelcat", "red hat"]


def test_one_lora_is_singular(app):
    d = app.paths.lora_dir
    d.mkdir(parents=True, exist_ok=True)
    write_kohya(d / "only.safetensors", seed=1)
    app.loras.refresh()
    status = panel_for(app).render("")[1]
    assert "1 LoRA<" in status and "1 LoRAs" not in status


def test_search_filters_every_tab(app, loras):
    panel = panel_for(app)
    *htmls, status = panel.on_search("CAT")
    assert names_in(htmls[2]) == ["catstyle"] and "1 of 3 LoRAs" in status and "0 of 1 embedding" in status
    assert names_in(panel.on_search("blue sky")[2]) == ["catstyle"]  # a trigger tag matches too
    assert "Nothing matches" in panel.on_search("nothing-like-this")[2]


def test_lora_click_uses_the_preferred_weight_and_activation_text(app, loras):
    panel = panel_for(app)
    prompt, status, _, _ = panel.click("lora", "catstyle", "a photo of a cat")
    assert prompt == "a photo of a cat <lora:catstyle:1>" and "Added" in status
    prompt, status, _, _ = panel.click("lora", "plain", prompt)
    assert prompt == "a photo of a cat <lora:catstyle:1> <lora:plain:0.6> plainstyle"
    assert "&lt;lora:plain:0.6&gt;" in status
    # as in A1111, clicking a card whose tag is in the prompt takes the tag out
    assert panel.click("lora", "plain", "a, <lora:plain:0.5>, b")[0] == "a, b"


def test_embedding_click_toggles_its_word(app, loras):
    panel = panel_for(app)
    assert panel.click("textual_inversion", "zorbo", "a cat")[0] == "a cat, zorbo"
    assert panel.click("textual_inversion", "zorbo", "a cat, zorbo")[0] == "a cat"
    assert toggle_word("zorbos, x", "zorbo") == ("zorbos, x, zorbo", True)  # whole words only


def test_checkpoint_click_switches_the_model(app, loras):
    panel = panel_for(app)
    other = next(i.title for i in app.catalog.list() if i.title != app.models.active.info.title)
    prompt, status, _, dropdown = panel.click("checkpoints", other, "kept")
    assert app.models.active.info.title == other and "Loaded" in status
    assert dropdown["value"] == other and prompt == gr.update()


def test_metadata_view_shows_ss_fields_and_user_metadata(app, loras):
    panel = panel_for(app)
    _, _, details, _ = panel.click("lora", "catstyle", "", "meta")
    assert "ss_network_dim" in details and "ss_base_model_version" in details and "sd_v1" in details
    assert details.index("ss_base_model_version") < details.index("ss_tag_frequency")
    _, _, details, _ = panel.click("lora", "plain", "", "meta")
    assert "a plain one" in details and "Preferred weight" in details
    ckpt = app.catalog.list()[0].title
    assert "Checkpoints" in panel.click("checkpoints", ckpt, "", "meta")[2]


def test_broken_or_gone_cards_say_why_and_change_nothing(app, loras):
    panel = panel_for(app)
    prompt, status, _, _ = panel.click("lora", "broken", "a cat")
    assert prompt == gr.update() and "easel-error" in status and "LoHa" in status
    for kind, name in (
        ("lora", "no-such"),
        ("nonsense", "x"),
        ("checkpoints", "../../etc/passwd"),
        ("textual_inversion", "<script>"),
    ):
        prompt, status, _, dropdown = panel.click(kind, name, "a cat")
        assert prompt == gr.update() and "gone" in status and dropdown == gr.update() and "<script>" not in status


def test_user_metadata_is_read_safely(tmp_path):
    f = tmp_path / "x.safetensors"
    for raw, weight in (
        ('{"preferred weight": 0.7}', 0.7),
        ('{"preferred weight": "NaN"}', None),
        ('{"preferred weight": 1e9}', None),
        ('{"preferred weight": -2}', -2.0),
        ('{"preferred weight": true}', None),
        ("[1, 2]", None),
        ("not json", None),
    ):
        (tmp_path / "x.json").write_text(raw)
        assert read_user_metadata(f).get("preferred weight") == weight, raw
    (tmp_path / "x.json").write_text(json.dumps({"activation text": "a" * 300_000}))
    assert read_user_metadata(f) == {}  # oversized
    assert not math.isnan(read_user_metadata(tmp_path / "missing.pt").get("preferred weight", 0))


def test_both_tabs_have_the_panel_on_their_own_prompt(app, loras):
    from webui.ui.img2img_tab import Img2ImgTab
    from webui.ui.txt2img_tab import Txt2ImgTab

    with gr.Blocks() as demo:
        t2i, i2i = Txt2ImgTab(app), Img2ImgTab(app)
    for tab in (t2i, i2i):
        panel = tab.extra_networks
        assert panel.prompt is tab.prompt and panel.cards["lora"].elem_id == f"{tab.tabname}_lora_cards"
    ids = {c.get("props", {}).get("elem_id") for c in demo.config["components"]}
    assert {"txt2img_extra_networks", "img2img_extra_networks", "txt2img_textual_inversion_cards"} <= ids
    targets = [
        d
        for d in demo.config["dependencies"]
        if any(t[0] == t2i.extra_networks.cards["lora"]._id and t[1] == "click" for t in d["targets"])
    ]
    assert targets and t2i.prompt._id in targets[0]["outputs"]


def test_toggle_tag_separators():
    assert toggle_tag("", "a") == ("<lora:a:1>", True)
    assert toggle_tag("cat  ", "a") == ("cat <lora:a:1>", True)
    assert toggle_tag("cat <lora:a:1>", "a") == ("cat", False)
    assert toggle_tag("x <lora:a:1> y", "a") == ("x y", False)
    assert toggle_tag("x <lora:ab:1>", "a") == ("x <lora:ab:1> <lora:a:1>", True)


def test_clicking_cards_in_chromium(data_dir, live_server):
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
            card = page.locator("#txt2img_lora_cards .easel-card").first
            box = card.bounding_box()
            assert box and 140 <= box["width"] <= 160 and 180 <= box["height"] <= 210  # fixed card size
            card.locator(".easel-card-name").click()
            page.wait_for_function(
                "() => document.querySelector('#txt2img_prompt textarea').value.includes('<lora:catstyle:1>')"
            )
            assert prompt.input_value() == "a cat <lora:catstyle:1>"
            assert "Added" in page.locator("#txt2img_extra_networks_status").inner_text()
            card.locator(".easel-card-meta").click()  # ⚙: the metadata, and the prompt unchanged
            page.wait_for_function(
                "() => document.querySelector('#txt2img_extra_details').innerText.includes('ss_network_dim')"
            )
            assert prompt.input_value() == "a cat <lora:catstyle:1>"
            assert not errors, errors
        finally:
            browser.close()
