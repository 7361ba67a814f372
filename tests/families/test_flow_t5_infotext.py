"""The t5_max_length setting in the infotext ("T5 max length", only when not the model's own) and pasted back."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.families.conftest import merge_models

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def data_dir(tmp_path, tiny_models, flux_models):
    merge_models(tmp_path / "models", tiny_models, flux_models)
    return tmp_path


def _run(client, body: dict, **settings):
    payload = {
        "prompt": "a red circle",
        "steps": 2,
        "width": 32,
        "height": 32,
        "seed": 9,
        "cfg_scale": 1,
        **body,
        "override_settings": {"sd_model_checkpoint": "flux1-dev-tiny", **settings},
    }
    r = client.post("/sdapi/v1/txt2img", json=payload)
    assert r.status_code == 200, r.text
    data = r.json()
    return (
        np.asarray(Image.open(io.BytesIO(base64.b64decode(data["images"][0])))),
        json.loads(data["info"])["infotexts"][0],
    )


def test_t5_max_length_in_infotext_when_not_default_and_pasted_back(client):
    from webui.infotext import infotext_to_request_fields, parse_infotext

    own, text = _run(client, {})
    assert "T5 max length" not in text
    same, text = _run(client, {}, t5_max_length=512)  # FLUX dev's own length: nothing to record
    assert "T5 max length" not in text and np.array_equal(own, same)
    short, text = _run(client, {}, t5_max_length=256)
    assert "T5 max length: 256," in text and not np.array_equal(own, short)  # T5's padding reaches the image
    assert infotext_to_request_fields(parse_infotext(text))["override_settings"]["t5_max_length"] == 256
    pasted, text2 = _run(client, {"infotext": text})
    assert np.array_equal(pasted, short) and text2 == text
    assert client.get("/sdapi/v1/options").json()["t5_max_length"] == 0  # an override, not kept


def test_hostile_t5_max_length_is_refused(client):
    for value in ("NaN", "Infinity", "-1", "1e9", "300", '"abc"', "null", "[256]"):
        r = client.post(
            "/sdapi/v1/txt2img",
            content='{"steps": 1, "override_settings": {"t5_max_length": %s}}' % value,
            headers={"content-type": "application/json"},
        )
        assert 400 <= r.status_code < 500 and r.headers["content-type"].startswith("application/json"), value
    r = client.post(
        "/sdapi/v1/txt2img",
        json={"steps": 1, "width": 32, "height": 32, "infotext": "x\nSteps: 1, Seed: 1, T5 max length: 99999"},
    )
    assert 400 <= r.status_code < 500 and r.headers["content-type"].startswith("application/json")
