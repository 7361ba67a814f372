"""Prompts for FLUX.1 / SD 3.5: T5 gets the plain text (no A1111 syntax), T5's length is the t5_max_length setting,
and the token counter reports CLIP and T5 counts."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.families.conftest import merge_models
from webui.prompts.plain import plain_text

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def data_dir(tmp_path, tiny_models, flux_models):
    merge_models(tmp_path / "models", tiny_models, flux_models)
    return tmp_path


@pytest.mark.parametrize(
    "prompt,plain",
    [
        ("a (red:1.3) circle <lora:foo:0.8>, [blue] square BREAK night", "a red circle, blue square night"),
        ("[cat:dog:0.8] in a box", "cat in a box"),  # the text used for most of the steps
        ("[cat:dog:0.2] in a box", "dog in a box"),
        ("a cat AND a dog:0.5", "a cat a dog"),
        (r"a \(literal\) paren", "a (literal) paren"),
        ("((masterpiece)), best quality", "masterpiece, best quality"),
        ("", ""),
    ],
)
def test_plain_text(prompt, plain):
    assert plain_text(prompt, 10) == plain


def _image(client, prompt: str, **settings):
    r = client.post(
        "/sdapi/v1/txt2img",
        json={
            "prompt": prompt,
            "steps": 2,
            "width": 64,
            "height": 64,
            "seed": 3,
            "cfg_scale": 1,
            "override_settings": {"sd_model_checkpoint": "flux1-dev-tiny", **settings},
        },
    )
    assert r.status_code == 200, r.text
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0]))))


def test_encoders_get_plain_text_and_t5_length_setting(client):
    plain = _image(client, "a red circle, blue square")
    # the syntax never reaches T5 as text; weights of 1 leave the CLIP branch as the pipeline's own encoding
    assert np.array_equal(plain, _image(client, "a (red:1) circle, blue square"))
    # A1111 weights reach CLIP-L's pooled vector (tests/families/test_flow_prompt_weights.py)
    assert not np.array_equal(plain, _image(client, "a (red:1.3) circle, [[blue]] square"))
    assert not np.array_equal(plain, _image(client, "a green circle, blue square"))  # the prompt does reach them
    assert np.array_equal(plain, _image(client, "a red circle, blue square", t5_max_length=512))  # dev's own
    assert not np.array_equal(plain, _image(client, "a red circle, blue square", t5_max_length=256))


@pytest.mark.parametrize("bad", [300, -1, 1e9, "NaN", "Infinity", "512; rm", None, [512]])
def test_t5_max_length_refuses_hostile_values(client, bad):
    r = client.post("/sdapi/v1/options", json={"t5_max_length": bad})
    assert 400 <= r.status_code < 500 and r.headers["content-type"].startswith("application/json")
    assert client.get("/sdapi/v1/options").json()["t5_max_length"] == 0


def test_token_counter_clip_and_t5(client):
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny-a"}).status_code == 200
    before = client.post("/easel/v1/prompt/token-count", json={"prompt": "a photo of a cat"}).json()
    assert before == {"t5": None, "clip": {"tokens": 5, "max": 75}}  # SD 1.x: no T5
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "flux1-dev-tiny"}).status_code == 200
    body = {"prompt": "a (photo:1.2) of a cat <lora:x:1>"}
    got = client.post("/easel/v1/prompt/token-count", json=body).json()
    assert got["t5"] == {"tokens": 7, "max": 512}  # ▁ a ▁photo ▁of ▁ a ▁cat (no </s>)
    assert got["clip"] == {"tokens": 5, "max": 75}
    assert client.post("/sdapi/v1/options", json={"t5_max_length": 256}).status_code == 200
    assert client.post("/easel/v1/prompt/token-count", json=body).json()["t5"]["max"] == 256


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "x", "steps": "NaN"},
        {"prompt": "x", "steps": -1},
        {"prompt": "x", "steps": 1e9},
        {"prompt": "x" * 200_001},
        {"prompt": 5},
        {"prompt": "x", "evil": "../../etc/passwd"},
    ],
)
def test_token_counter_refuses_hostile_bodies(client, body):
    r = client.post("/easel/v1/prompt/token-count", json=body)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/json")
    assert client.post("/easel/v1/prompt/token-count", json={"prompt": "ok"}).status_code == 200


def test_ui_counter_shows_clip_and_t5(app):
    from webui.ui.prompt_tools import counter_text

    app.models.load("tiny-a")
    assert counter_text(app, "a photo of a cat") == "5/75"
    app.options.set({"sd_model_checkpoint": "flux1-dev-tiny"})
    app.models.load("flux1-dev-tiny")
    assert counter_text(app, "a (photo:1.2) of a cat") == "5/75 · T5 7/512"
