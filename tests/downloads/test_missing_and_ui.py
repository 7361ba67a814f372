"""PNG Info names the models an infotext uses that aren't installed (API field and UI note with the install box),
and the Models page's handlers run the real install job (no browser)."""

from __future__ import annotations

import hashlib

import gradio as gr

from tests.api.conftest import png_base64
from tests.factories import write_tiny_checkpoint
from tests.lora.factory import write_kohya
from webui.ui.models_tab import AUTO, InstallBox, missing_note, request_body


def _infotext(model_hash: str, model: str, loras: str = "") -> str:
    extra = f', Lora hashes: "{loras}"' if loras else ""
    return (
        f"a red square\nNegative prompt: blur\nSteps: 2, Sampler: Euler a, Model hash: {model_hash}, "
        f"Model: {model}{extra}"
    )


def test_png_info_lists_missing_models(dl_client, dl_app):
    write_kohya(dl_app.paths.lora_dir / "have-this.safetensors", seed=1)
    dl_app.loras.refresh()
    entry = dl_app.lora_catalog.find("have-this")
    lora_hash = dl_app.lora_catalog.shorthash(entry)
    tiny = next(i for i in dl_app.catalog.list() if i.name == "tiny-a.safetensors")

    def ask(text: str) -> list[dict]:
        r = dl_client.post("/sdapi/v1/png-info", json={"image": png_base64(text=text)})
        assert r.status_code == 200, r.text
        return r.json()["missing_models"]

    assert ask(_infotext(tiny.shorthash, "tiny-a", f"have-this: {lora_hash}")) == []
    # a renamed LoRA is still found by its hash
    assert ask(_infotext(tiny.shorthash, "tiny-a", f"renamed: {lora_hash}")) == []
    missing = ask(_infotext("0badc0ffee", "not-here", f"have-this: {lora_hash}, gone-lora: 0123456789ab"))
    assert missing == [
        {"type": "checkpoint", "name": "not-here", "hash": "0badc0ffee"},
        {"type": "lora", "name": "gone-lora", "hash": "0123456789ab"},
    ]
    # the same name with another hash is another model
    assert ask(_infotext("0badc0ffee", "tiny-a"))[0]["type"] == "checkpoint"
    r = dl_client.post("/sdapi/v1/png-info", json={"image": png_base64()})
    assert r.json()["missing_models"] == []  # no infotext, nothing missing


def _box(app, prefix="t") -> InstallBox:
    with gr.Blocks():
        return InstallBox(app, prefix=prefix)


def test_models_page_installs_with_progress(dl_app, models_server, tmp_path):
    body = write_tiny_checkpoint(tmp_path / "s.safetensors", seed=9).read_bytes()
    url = models_server.add("/m/from-ui.safetensors", body=body)
    box = _box(dl_app)
    out = list(box.on_install(url, AUTO, "", hashlib.sha256(body).hexdigest(), False))
    assert len(out) >= 2 and "Installed from-ui.safetensors in Stable-diffusion" in out[-1], out[-1]
    assert "SHA-256 verified" in out[-1]
    assert "from-ui.safetensors" in {i.name for i in dl_app.catalog.list()}
    # refusals are shown, not raised
    out = list(box.on_install("file:///etc/passwd", AUTO, "", "", False))
    assert len(out) == 1 and "http://" in out[0]
    out = list(box.on_install(url, "Lora", "../x.safetensors", "", False))
    assert "not a plain file name" in out[0]


def test_models_page_shows_the_lock_when_exposed(make_app):
    app = make_app("--listen", "--gradio-auth", "u:p", "--nowebui", start=False)
    box = _box(app)
    assert box.button.interactive is False
    out = list(box.on_install("https://example.com/x.safetensors", AUTO, "", "", False))
    assert "--enable-insecure-extension-access" in out[0]


def test_request_body_maps_the_form():
    assert request_body(" https://x/y.safetensors ", AUTO, " ", "", 1) == {
        "url": "https://x/y.safetensors",
        "convert_to_safetensors": True,
    }
    assert request_body("u", "Lora", "a.safetensors", "ab" * 32, False) == {
        "url": "u",
        "folder": "Lora",
        "filename": "a.safetensors",
        "sha256": "ab" * 32,
        "convert_to_safetensors": False,
    }


def test_png_info_note_and_the_ui_pages(dl_app):
    note, box = missing_note(dl_app, _infotext("0badc0ffee", "not-here"))
    assert "not-here" in note and "0badc0ffee" in note and box["visible"] is True
    tiny = next(i for i in dl_app.catalog.list() if i.name == "tiny-a.safetensors")
    note, box = missing_note(dl_app, _infotext(tiny.shorthash, "tiny-a"))
    assert note == "" and box["visible"] is False
    from webui.ui import build_ui

    demo = build_ui(dl_app)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {
        "tab_models",
        "models_install_url",
        "models_install_button",
        "pnginfo_missing_models",
        "pnginfo_install_url",
    } <= ids
