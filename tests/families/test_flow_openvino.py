"""`cpu_backend: openvino` on SD 3 and FLUX (#21): the backend converts SD UNets only, so these jobs run on torch,
and say so as the SD 1.x fallbacks do: a warning in the result and `CPU backend: torch` in the infotext (pasting it
back runs what ran). The pixels are torch's."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.families.conftest import merge_models

pytestmark = pytest.mark.filterwarnings("ignore")


MODELS = {"flux": ("flux1-dev-tiny", "FLUX.1 dev"), "sd3": ("sd35_medium_tiny", "SD 3.5 Medium")}


@pytest.fixture(params=["flux", "sd3"])
def family(request):
    return request.param


@pytest.fixture
def data_dir(tmp_path, family, flux_models, sd3_models):
    merge_models(tmp_path / "models", flux_models if family == "flux" else sd3_models)
    return tmp_path


def _post(client, route: str, model: str, **body):
    payload = {
        "prompt": "a red circle",
        "steps": 2,
        "width": 64,
        "height": 64,
        "seed": 7,
        "cfg_scale": 1,
        **body,
        "override_settings": {"sd_model_checkpoint": model, **body.pop("override_settings", {})},
    }
    r = client.post(f"/sdapi/v1/{route}", json=payload)
    assert r.status_code == 200, r.text
    data = r.json()
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["images"][0]))))
    return image, json.loads(data["info"])


def _b64(im: Image.Image) -> str:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_flow_models_say_they_ran_on_torch(client, family):
    model, label = MODELS[family]
    ov, info = _post(client, "txt2img", model, override_settings={"cpu_backend": "openvino"})
    text = info["infotexts"][0]
    assert "CPU backend: torch" in text, text
    assert any(f"CPU backend openvino: {label}" in w and "ran on torch" in w for w in info["warnings"]), info
    plain, plain_info = _post(client, "txt2img", model)
    assert np.array_equal(ov, plain) and "CPU backend" not in plain_info["infotexts"][0]
    assert not any("CPU backend" in w for w in plain_info.get("warnings", []))  # no warnings: no key
    if family == "flux":  # img2img plans through the same place
        init = _b64(Image.fromarray(plain))
        _, i2i = _post(
            client,
            "img2img",
            model,
            init_images=[init],
            denoising_strength=0.5,
            override_settings={"cpu_backend": "openvino"},
        )
        assert "CPU backend: torch" in i2i["infotexts"][0] and any("ran on torch" in w for w in i2i["warnings"])
