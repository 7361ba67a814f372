"""--lowram on the CPU: an SD 3/FLUX model's text encoders hold no weights between encodings (read from their part
files for each one, then released), and the pixels are the same as without it."""

from __future__ import annotations

import base64
import io

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


def _image(client, model: str, **body):
    r = client.post(
        "/sdapi/v1/txt2img",
        json={
            "prompt": "a (red:1.2) circle",
            "negative_prompt": "blurry",
            "steps": 2,
            "width": 32,
            "height": 32,
            "seed": 5,
            "cfg_scale": 2,
            "override_settings": {"sd_model_checkpoint": model},
            **body,
        },
    )
    assert r.status_code == 200, r.text
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0]))))


def test_lowram_same_pixels_encoders_released(make_app, family):
    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    model = MODELS[family]
    with TestClient(build_fastapi(make_app("--nowebui"))) as plain:
        want = _image(plain, model)
        want_hires = _image(plain, model, enable_hr=True, hr_scale=2, hr_second_pass_steps=1, denoising_strength=0.5)
        full = next(m for m in plain.get("/easel/v1/system").json()["models"] if m["active"])
    app = make_app("--nowebui", "--lowram")
    assert app.policy.lowram and "--lowram" in app.policy.label
    with TestClient(build_fastapi(app)) as low:
        assert np.array_equal(_image(low, model), want)
        assert np.array_equal(
            _image(low, model, enable_hr=True, hr_scale=2, hr_second_pass_steps=1, denoising_strength=0.5), want_hires
        )  # the second pass encodes again
        weights = app.models.active.extra["lowram"]
        assert weights.released and weights.held_bytes() == 0 and weights.loads == 3
        report = next(m for m in low.get("/easel/v1/system").json()["models"] if m["active"])
    encoders = sum(
        p.numel() * p.element_size()
        for p in app.models.active.extra["lowram"].reload().values()
        for p in p.parameters()
    )
    assert report["text_encoders_on_disk"] and not full["text_encoders_on_disk"]
    # the RAM held drops by the encoders' weights (each tensor counted once; buffers such as position ids stay)
    assert abs((full["bytes_ram"] - report["bytes_ram"]) - encoders) <= 0.01 * encoders


@pytest.mark.parametrize("family", ["flux"])
def test_lowram_is_ignored_for_sd1(make_app, family):
    app = make_app("--nowebui", "--lowram")
    model = app.models.load("tiny-a")
    assert "lowram" not in model.extra and model.pipeline.text_encoder.get_input_embeddings().weight.numel() > 0


@pytest.mark.parametrize("family", ["sd3"])
def test_lowram_with_a_text_encoder_lora(make_app, data_dir, family):
    """A LoRA with CLIP-L/G parts loads into encoders that hold no weights, and acts on them when they are read."""
    from fastapi.testclient import TestClient

    from tests.families.lora_factory import write_sd3_kohya
    from webui.api.server import build_fastapi

    write_sd3_kohya(data_dir / "models" / "Lora" / "sd3_kohya_te.safetensors", with_te=True)
    prompt = "a red circle <lora:sd3_kohya_te:1>"
    with TestClient(build_fastapi(make_app("--nowebui"))) as plain:
        want, base = _image(plain, MODELS[family], prompt=prompt), _image(plain, MODELS[family])
    app = make_app("--nowebui", "--lowram")
    with TestClient(build_fastapi(app)) as low:
        got = _image(low, MODELS[family], prompt=prompt)
        assert np.array_equal(got, want) and not np.array_equal(got, base)
        assert app.models.active.extra["lowram"].released
        assert np.array_equal(_image(low, MODELS[family]), base)  # off again, bit for bit


def test_lowram_diffusers_folder(make_app, family):
    """A FLUX/SD 3 diffusers folder's encoders are released too, read back from its subfolders for each encoding."""
    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    model = {"flux": "flux-dev-diffusers", "sd3": "sd35-diffusers"}[family]
    with TestClient(build_fastapi(make_app("--nowebui"))) as plain:
        want = _image(plain, model)
    app = make_app("--nowebui", "--lowram")
    with TestClient(build_fastapi(app)) as low:
        assert np.array_equal(_image(low, model), want)
        weights = app.models.active.extra["lowram"]
        assert app.models.active.info.path.is_dir() and weights.released and weights.loads == 1
        assert np.array_equal(_image(low, model), want) and weights.loads == 2
