"""OpenVINO's attention kernel under the SD 3/FLUX transformers (#21; setting `cpu_attention`): their bf16 weights
on this CPU make Automatic route the joint attention there (×1.9–2.2 per call at their real sizes,
docs/performance.md), named in the infotext; `torch` turns it off; the same seed gives the same pixels."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.factories import psnr
from tests.families.conftest import merge_models
from webui.models import attention_kernel as ak

pytest.importorskip("openvino", reason="openvino is not installed (pip install --no-deps -r requirements-openvino.txt)")
pytestmark = pytest.mark.filterwarnings("ignore")
MODELS = {"flux": "flux1-dev-tiny", "sd3": "sd35_medium_tiny"}


@pytest.fixture(params=["flux", "sd3"])
def family(request):
    return request.param


@pytest.fixture
def data_dir(tmp_path, family, flux_models, sd3_models):
    merge_models(tmp_path / "models", flux_models if family == "flux" else sd3_models)
    return tmp_path


def _txt2img(client, family, **overrides):
    body = {
        "prompt": "a red circle",
        "steps": 3,
        "width": 64,
        "height": 64,
        "seed": 3,
        "override_settings": {"sd_model_checkpoint": MODELS[family], **overrides},
    }
    r = client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 200, r.text
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))).astype(int)
    return image, json.loads(r.json()["info"])["infotexts"][0]


def test_flow_transformers_route_their_attention_to_the_kernel(client, app, family, monkeypatch):
    monkeypatch.setattr(ak, "MIN_WORK", 0)  # the tiny transformers' calls are all smaller (16-wide heads)
    img, info = _txt2img(client, family)
    transformer = app.models.active.pipeline.transformer
    switch = ak.switch_of(transformer)
    assert "CPU attention: openvino" in info, info
    assert switch is not None and not switch.enabled and switch.kernel.calls > 0
    assert len(ak.attention_modules(transformer)) > 0
    calls = switch.kernel.calls
    again, _ = _txt2img(client, family)
    assert np.array_equal(img, again)  # same seed, same pixels
    torch_img, torch_info = _txt2img(client, family, cpu_attention="torch")
    assert "CPU attention: torch" in torch_info and switch.kernel.calls == 2 * calls
    assert psnr(img, torch_img, 255) > 30  # bf16 both; the kernels round differently
