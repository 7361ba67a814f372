"""SD 3/3.5 skip-layer guidance (webui/generation/slg.py) at tiny scale through the API: SLG on changes the pixels,
the same seed repeats them, off (scale 0, whatever the other SLG fields) is bit for bit the image without SLG; the
infotext fields are read back by PNG Info and reproduce the image through the API's `infotext` and the UI's paste;
bad values, missing blocks and the places SLG can't run are 422s with a message."""

from __future__ import annotations

import base64
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.families.conftest import merge_models

pytestmark = pytest.mark.filterwarnings("ignore")

SD35 = "sd35_medium_tiny"  # 2 joint blocks (0 and 1): block 1 is the one to skip
ON = {"slg_scale": 3, "slg_layers": "1", "slg_start": 0.0, "slg_end": 1.0}  # steps 1 and 2 of 3 take it


@pytest.fixture
def data_dir(tmp_path, tiny_models, sd3_models, flux_models):
    merge_models(tmp_path / "models", tiny_models, sd3_models)
    flux = "Stable-diffusion/flux-dev-diffusers"  # self-contained (the split FLUX parts would clash with SD 3's)
    shutil.copytree(flux_models / flux, tmp_path / "models" / flux)
    return tmp_path


def _body(model: str = SD35, **body):
    return {
        "prompt": "a blue square",
        "negative_prompt": "blurry",
        "steps": 3,
        "width": 64,
        "height": 64,
        "seed": 11,
        "cfg_scale": 4,
        "override_settings": {"sd_model_checkpoint": model},
        **body,
    }


def _txt2img(client, **body):
    r = client.post("/sdapi/v1/txt2img", json=_body(**body))
    assert r.status_code == 200, r.text
    out = r.json()
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(out["images"][0]))))
    return pixels, json.loads(out["info"])["infotexts"][0], out["images"][0]


def test_slg_changes_pixels_off_is_bit_identical_and_infotext_round_trips(client):
    base, base_text, _ = _txt2img(client)
    off, off_text, _ = _txt2img(client, slg_scale=0, slg_layers=[0, 1], slg_start=0.5, slg_end=0.6)
    assert np.array_equal(base, off) and off_text == base_text and "SLG" not in base_text
    on, text, png = _txt2img(client, **ON)
    again, _, _ = _txt2img(client, **{**ON, "slg_layers": [1]})  # a list is the same as "1"
    assert not np.array_equal(on, base) and np.array_equal(on, again)
    assert "SLG scale: 3, SLG layers: 1, SLG start: 0, SLG end: 1," in text
    three, text3, _ = _txt2img(client, **{**ON, "slg_layers": "0, 1"})
    assert "SLG layers: 0 1," in text3 and not np.array_equal(three, on)

    # PNG Info reads the fields back from the PNG; the API's `infotext` alone reproduces the image
    info = client.post("/sdapi/v1/png-info", json={"image": "data:image/png;base64," + png}).json()
    assert info["parameters"]["SLG layers"] == "1" and float(info["parameters"]["SLG scale"]) == 3.0
    pasted, pasted_text, _ = _txt2img(client, infotext=info["info"])  # the SLG fields come from the infotext
    assert np.array_equal(pasted, on) and pasted_text == text


def test_slg_paste_fills_the_txt2img_fields(app):
    from webui.infotext import infotext_to_request_fields, parse_infotext
    from webui.ui.sendto import infotext_fields

    text = "a cat\nSteps: 3, Seed: 1, CFG scale: 4, SLG scale: 2.5, SLG layers: 7 8 9, SLG start: 0.01, SLG end: 0.2"
    fields = infotext_to_request_fields(parse_infotext(text))
    assert (fields["slg_scale"], fields["slg_layers"], fields["slg_start"], fields["slg_end"]) == (
        2.5,
        "7 8 9",
        0.01,
        0.2,
    )
    ui = infotext_fields(app, text, "txt2img")
    assert ui["slg_scale"] == 2.5 and ui["slg_layers"] == "7 8 9"
    assert infotext_fields(app, "a cat\nSteps: 3, Seed: 1", "txt2img")["slg_scale"] == 0  # pasted: SLG off
    assert "slg_scale" not in infotext_fields(app, text, "img2img")  # img2img has no SLG


BAD = [
    '{"slg_scale": NaN}',
    '{"slg_scale": Infinity}',
    '{"slg_scale": 1e9}',
    '{"slg_scale": -1}',
    '{"slg_scale": 2, "slg_start": 0.3, "slg_end": 0.2}',
    '{"slg_start": -0.1}',
    '{"slg_end": 1.5}',
    '{"slg_layers": "7,x"}',
    '{"slg_layers": "../7"}',
    '{"slg_layers": "/etc/passwd"}',
    '{"slg_layers": [-1]}',
    '{"slg_layers": [1.5]}',
    '{"slg_layers": [true]}',
    '{"slg_layers": [100000]}',
    '{"slg_layers": {"a": 1}}',
    '{"slg_layers": "' + "1," * 600 + '"}',
]


def test_slg_bad_values_are_422(client):
    for raw in BAD:
        r = client.post("/sdapi/v1/txt2img", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json(), raw  # a JSON message, before any work
    r = client.post("/sdapi/v1/txt2img", json={"slg_scale": 2, "slg_start": 0.3, "slg_end": 0.2})
    assert "slg_start (0.3) must be below slg_end (0.2)" in r.text
    assert "is not a block number" in client.post("/sdapi/v1/txt2img", json={"slg_layers": "7,x"}).text


def test_slg_refused_where_it_cannot_run(client):
    def refused(path: str, **body) -> str:
        r = client.post(path, json=_body(**body))
        assert r.status_code == 422, r.text
        return r.json()["detail"] if isinstance(r.json().get("detail"), str) else r.text

    assert "blocks 0 to 1" in refused("/sdapi/v1/txt2img", **{**ON, "slg_layers": "1 2"})
    assert "CFG scale above 1" in refused("/sdapi/v1/txt2img", **ON, **{"cfg_scale": 1})
    assert "is for SD 3/3.5" in refused("/sdapi/v1/txt2img", model="tiny-a", **ON)
    assert "is for SD 3/3.5" in refused("/sdapi/v1/txt2img", model="flux-dev-diffusers", **ON)
    image = base64.b64encode(_png()).decode()
    assert "not for img2img" in refused("/sdapi/v1/img2img", init_images=[image], **ON)
    # off, the same requests run
    assert client.post("/sdapi/v1/txt2img", json=_body(model="tiny-a", steps=1, slg_layers="99")).status_code == 200


def test_slg_hires_and_empty_window_warn(client):
    hires = dict(enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", hr_second_pass_steps=1)
    r = client.post("/sdapi/v1/txt2img", json=_body(**ON, **hires))
    info = json.loads(r.json()["info"])
    assert "SLG scale: 3," in info["infotexts"][0] and "Hires upscale: 1.5" in info["infotexts"][0]
    assert any("first pass only" in w for w in info["warnings"])
    r = client.post("/sdapi/v1/txt2img", json=_body(**{**ON, "slg_start": 0.01, "slg_end": 0.2}))
    # steps×start < i < steps×end holds for no step of 3: said in the info
    assert any("had no effect" in w for w in json.loads(r.json()["info"])["warnings"])


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (40, 90, 200)).save(buf, format="PNG")
    return buf.getvalue()


def test_slg_fields_in_the_txt2img_tab_only_for_sd3(make_app):
    import warnings

    import gradio as gr

    from webui.ui.quicksettings import Quicksettings
    from webui.ui.sendto import infotext_fields
    from webui.ui.txt2img_tab import Txt2ImgTab

    app = make_app("--nowebui", "--ckpt", SD35)
    with gr.Blocks():
        quick = Quicksettings(app)
        tab = Txt2ImgTab(app)
        quick.wire(tab)
    assert tab.slg_panel.visible and quick.slg_updates() == [gr.update(visible=True)]
    fields = {"prompt": "a blue square", "sampler_name": "Euler", "steps": 3, "width": 64, "height": 64, "seed": 11}
    fields.update(cfg_scale=4, slg_scale=3, slg_layers="1", slg_start=0, slg_end=1)
    values = [fields.get(key, comp.value) for (key, _), comp in zip(tab.FIELDS, tab.field_components)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        final = list(tab.run(*values))[-1]
    text = final[tab.results]["infotexts"][0]
    assert "SLG scale: 3, SLG layers: 1, SLG start: 0, SLG end: 1," in text
    # ↙️ of that infotext sets the four components back
    filled = dict(zip([k for k, _ in tab.FIELDS], tab.fill(infotext_fields(app, text, "txt2img"))))
    assert (filled["slg_scale"], filled["slg_layers"], filled["slg_start"], filled["slg_end"]) == (3.0, "1", 0.0, 1.0)
    assert tab.fill_update("slg_layers", [7, 8, 9], None) == "7, 8, 9"
    # another family: the panel hides, and what it holds is not sent (SLG would be a 422 there)
    app.switch_checkpoint("tiny-a")
    assert quick.slg_updates() == [gr.update(visible=False)]
    assert tab.request(*values).slg_scale == 0
