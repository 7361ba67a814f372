"""Hires fix for FLUX.1 and SD 3.5 (txt2img, then the family's img2img pass at the target size), through the API."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.families.conftest import merge_models

pytestmark = pytest.mark.filterwarnings("ignore")
MODELS = {"flux": "flux1-dev-tiny", "sd3": "sd35_medium_tiny"}


@pytest.fixture(params=["flux", "sd3"])
def family(request):
    return request.param


@pytest.fixture
def data_dir(tmp_path, tiny_models, flux_models, sd3_models, family):
    merge_models(tmp_path / "models", tiny_models, flux_models if family == "flux" else sd3_models)
    return tmp_path


def _run(client, model: str, **body):
    payload = {
        "prompt": "a red circle",
        "negative_prompt": "blurry",
        "steps": 2,
        "width": 32,
        "height": 32,
        "seed": 11,
        "cfg_scale": 2,
        "override_settings": {"sd_model_checkpoint": model},
        **body,
    }
    r = client.post("/sdapi/v1/txt2img", json=payload)
    assert r.status_code == 200, r.text
    data = r.json()
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(b)))) for b in data["images"]], json.loads(data["info"])


def test_hires_size_seed_infotext_and_paste_back(client, family):
    model = MODELS[family]
    # 4 hires steps at 0.5: diffusers' img2img starts at step int(4 - 4 × 0.5) = 2 (with 2 steps at 0.6 it would
    # start at 0, from pure noise, and the first pass would not show)
    hr = {
        "enable_hr": True,
        "hr_scale": 2,
        "hr_upscaler": "Latent",
        "denoising_strength": 0.5,
        "hr_second_pass_steps": 4,
    }
    a, info = _run(client, model, **hr)
    assert a[0].shape == (64, 64, 3)
    b, _ = _run(client, model, **hr)
    assert np.array_equal(a[0], b[0])
    plain, _ = _run(client, model, width=64, height=64)
    assert not np.array_equal(a[0], plain[0])  # the first pass shows through
    text = info["infotexts"][0]
    assert "Size: 32x32" in text and "Denoising strength: 0.5" in text and "Hires steps: 4" in text
    assert "Hires upscale: 2" in text and "Hires upscaler: Latent" in text
    pasted, info2 = _run(client, model, infotext=text)  # the infotext alone asks for the same hires run
    assert np.array_equal(pasted[0], a[0]) and info2["infotexts"][0] == text
    pixel, info3 = _run(
        client,
        model,
        enable_hr=True,
        hr_resize_x=48,
        hr_resize_y=64,
        hr_upscaler="Lanczos",
        hr_second_pass_steps=1,
        hr_prompt="a blue circle",
    )
    assert pixel[0].shape == (64, 48, 3)
    assert "Hires resize: 48x64" in info3["infotexts"][0] and "Hires prompt: a blue circle" in info3["infotexts"][0]


HOSTILE = [
    ("hr_sampler_name", "DPM++ 2M"),
    ("hr_checkpoint_name", "tiny-a"),
    ("hr_scale", "NaN"),
    ("hr_scale", 1e9),
    ("hr_scale", -2),
    ("hr_upscaler", "../../etc/passwd"),
    ("hr_scheduler", "Karras"),
]


def test_hires_refuses_what_it_cannot_do(client, family):
    for field, value in HOSTILE:
        body = json.dumps(
            {
                "prompt": "x",
                "steps": 1,
                "width": 32,
                "height": 32,
                "enable_hr": True,
                "override_settings": {"sd_model_checkpoint": MODELS[family]},
            }
        )
        raw = body[:-1] + f', "{field}": {value if value == "NaN" else json.dumps(value)}}}'
        r = client.post("/sdapi/v1/txt2img", content=raw, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500 and r.headers["content-type"].startswith("application/json"), (field, r.text)
    assert client.get("/sdapi/v1/options").status_code == 200
