"""Forge's "VAE / Text Encoder" choice (`forge_additional_modules`) for a FLUX transformer file with two CLIP-L text
encoders that both fit: through /sdapi/v1/options, per request in override_settings, hostile values, and the top
bar's selector (a UI handler test)."""

from __future__ import annotations

import base64
import io
import json

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from tests.families.conftest import merge_models

pytestmark = pytest.mark.filterwarnings("ignore")
FLUX = "flux1-dev-tiny"
BODY = {"prompt": "a red circle", "steps": 1, "width": 64, "height": 64, "seed": 5, "cfg_scale": 1}


@pytest.fixture
def data_dir(tmp_path, tiny_models, flux_models):
    from tests.factories_families import CLIP_TINY_META, _save, clip_to_comfy, tiny_clip

    merge_models(tmp_path / "models", tiny_models, flux_models)
    # a second CLIP-L of the same width (another fine-tune, ComfyUI's folder): both fit the transformer
    _save(
        tmp_path / "models" / "clip" / "clip_l_alt.safetensors",
        clip_to_comfy(tiny_clip(32, seed=9, projection=False)),
        CLIP_TINY_META,
    )
    return tmp_path


def _gen(client, **settings):
    r = client.post("/sdapi/v1/txt2img", json={**BODY, "override_settings": {"sd_model_checkpoint": FLUX, **settings}})
    if r.status_code != 200:
        return r, None, None
    info = json.loads(r.json()["info"])
    return r, np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))), info["infotexts"][0]


def test_two_fitting_text_encoders_need_a_choice_then_each_is_used(client):
    r, _, _ = _gen(client)
    assert r.status_code == 400 and "more than one" in r.text and "clip_l_alt.safetensors" in r.text
    r, a, text_a = _gen(client, forge_additional_modules=["clip_l.safetensors"])
    assert r.status_code == 200, r.text
    assert "Module 1: ae, Module 2: clip_l, Module 3: t5xxl_fp16" in text_a
    # Forge sends full paths; only the file name counts and only files in the model folders are found
    r, b, text_b = _gen(client, forge_additional_modules=["C:\\forge\\models\\text_encoder\\clip_l_alt.safetensors"])
    assert r.status_code == 200, r.text
    assert "Module 2: clip_l_alt" in text_b and not np.array_equal(a, b)  # the other encoder really encoded
    r, a2, _ = _gen(client, forge_additional_modules=["clip_l"])  # the stem alone, as the infotext writes it
    assert r.status_code == 200 and np.array_equal(a, a2)


def test_options_route_sets_the_choice_with_the_checkpoint(client):
    r = client.post(
        "/sdapi/v1/options", json={"sd_model_checkpoint": FLUX, "forge_additional_modules": ["clip_l_alt.safetensors"]}
    )
    assert r.status_code == 200, r.text  # loaded together: without the choice this switch would fail
    assert client.get("/sdapi/v1/options").json()["forge_additional_modules"] == ["clip_l_alt.safetensors"]
    r = client.post("/sdapi/v1/txt2img", json=BODY)
    assert r.status_code == 200 and "Module 2: clip_l_alt" in json.loads(r.json()["info"])["infotexts"][0]
    r = client.post("/sdapi/v1/options", json={"forge_additional_modules": []})
    assert r.status_code == 200
    r = client.post("/sdapi/v1/txt2img", json=BODY)
    assert r.status_code == 400 and "more than one" in r.text


@pytest.mark.parametrize(
    "value,status",
    [
        (["../../etc/passwd"], "per request"),
        (["/etc/clip_l_missing.safetensors"], "per request"),
        ("clip_l.safetensors", 422),
        ([1e9], 422),
        ([float("nan")], 422),
        (["x" * 5000], 422),
        (["a"] * 10000, 422),
        (None, 422),
    ],
)
def test_hostile_module_values_are_refused(client, data_dir, value, status):
    body = json.dumps({"forge_additional_modules": value})  # NaN goes out as the bare token NaN
    r = client.post("/sdapi/v1/options", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/json")
    assert client.get("/sdapi/v1/options").json()["forge_additional_modules"] == []  # nothing kept
    cfg = json.loads((data_dir / "config.json").read_text()) if (data_dir / "config.json").exists() else {}
    assert cfg.get("forge_additional_modules", []) == []
    if status == "per request":  # a name no model folder holds: 422 naming it before queueing, and nothing loaded
        r, _, _ = _gen(client, forge_additional_modules=value)
        assert r.status_code == 422 and value[0].rsplit("/", 1)[-1] in r.text, r.text
        assert not any(" + " in t for t in client.app.state.application.models.cached_titles())


def test_cross_site_options_post_is_refused(client):
    r = client.post(
        "/sdapi/v1/options",
        json={"forge_additional_modules": ["clip_l.safetensors"]},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert r.status_code == 403 and client.get("/sdapi/v1/options").json()["forge_additional_modules"] == []


def test_top_bar_selector_shown_for_flux_and_applies_the_choice(app):
    from webui.ui.quicksettings import Quicksettings
    from webui.ui.txt2img_tab import Txt2ImgTab

    app.switch_checkpoint(next(i.title for i in app.catalog.list() if i.name == "tiny-a.safetensors"))
    with gr.Blocks():
        tab = Txt2ImgTab(app)
        quick = Quicksettings(app)
        quick.wire(tab)
    assert quick.modules.elem_id == "setting_forge_additional_modules"
    assert quick.modules.visible is False  # an SD 1.x checkpoint is active: nothing to choose
    assert {"clip_l.safetensors", "clip_l_alt.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors"} <= set(
        quick.modules.choices and [c[0] for c in quick.modules.choices]
    )
    flux = next(i.title for i in app.catalog.list() if i.name.startswith(FLUX))
    _dropdown, message, *_ = quick.on_switch(flux)
    assert "easel-error" in message and "more than one" in message  # two CLIP-L fit: the user must choose
    assert quick.modules_update()["visible"] is False  # the SD 1.x model stayed active
    message, _ = quick.on_modules(["clip_l_alt.safetensors"])
    assert "easel-error" not in message and app.options.get("forge_additional_modules") == ["clip_l_alt.safetensors"]
    _dropdown, message, *_ = quick.on_switch(flux)
    assert message == "" and app.models.active.info.title == flux
    update = quick.modules_update()
    assert update["visible"] is True and update["value"] == ["clip_l_alt.safetensors"]
    sampler, schedule = quick.flow_sampling("Euler a", "Karras")  # FLUX can't run Euler a: Forge's Euler instead
    assert sampler["value"] == "Euler" and schedule["value"] == "Automatic"
    assert quick.flow_sampling("Euler", "Beta") == [gr.update(), gr.update()]
    message, _ = quick.on_modules(["clip_l.safetensors"])  # a new choice reloads the active FLUX model with it
    assert "easel-error" not in message
    assert app.models.active.probe.modules == ["ae", "clip_l", "t5xxl_fp16"]
    message, update = quick.on_modules(["nope.safetensors"])
    assert "easel-error" in message and "nope.safetensors" in message
    assert app.models.active.probe.modules == ["ae", "clip_l", "t5xxl_fp16"]  # the working model stays
    app.set_options({"forge_additional_modules": []})
    app.switch_checkpoint(next(i.title for i in app.catalog.list() if i.name == "flux-dev-diffusers"))
    assert quick.modules_update()["visible"] is False  # a diffusers folder brings its own encoders
