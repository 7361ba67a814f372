"""OpenVINO on SD 3 and FLUX (#21). `cpu_backend: openvino` converts SD UNets only, so these jobs run on torch,
and say so as the SD 1.x fallbacks do: a warning in the result and `CPU backend: torch` in the infotext (pasting it
back runs what ran); the pixels are torch's. `cpu_attention`: their bf16 transformers' joint attention goes to
OpenVINO's kernel under Automatic on a CPU without AMX (×1.9–2.2 per call at their real sizes there,
docs/performance.md), named in the infotext; `torch` turns it off; the same seed gives the same pixels."""

from __future__ import annotations

from dataclasses import replace

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.factories import psnr
from tests.families.conftest import merge_models
from webui.models import attention_kernel as ak

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


def test_flow_transformers_route_their_attention_to_the_kernel(client, app, family, monkeypatch):
    pytest.importorskip(
        "openvino", reason="openvino is not installed (pip install --no-deps -r requirements-openvino.txt)"
    )
    monkeypatch.setattr(ak, "MIN_WORK", 0)  # the tiny transformers' calls are all smaller (16-wide heads)
    monkeypatch.setattr(app.models, "policy", replace(app.models.policy, cpu_amx=False))  # where Automatic routes
    model, _ = MODELS[family]
    img, info = _post(client, "txt2img", model, seed=3, steps=3)
    transformer = app.models.active.pipeline.transformer
    switch = ak.switch_of(transformer)
    assert "CPU attention: openvino" in info["infotexts"][0], info
    assert switch is not None and not switch.enabled and switch.kernel.calls > 0
    assert len(ak.attention_modules(transformer)) > 0
    calls = switch.kernel.calls
    again, _ = _post(client, "txt2img", model, seed=3, steps=3)
    assert np.array_equal(img, again)  # same seed, same pixels
    torch_img, torch_info = _post(
        client, "txt2img", model, seed=3, steps=3, override_settings={"cpu_attention": "torch"}
    )
    assert "CPU attention: torch" in torch_info["infotexts"][0] and switch.kernel.calls == 2 * calls
    assert psnr(img, torch_img, 255) > 30  # bf16 both; the kernels round differently
