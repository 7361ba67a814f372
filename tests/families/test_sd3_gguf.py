"""SD 3.5 GGUF transformer files (Stability's MMDiT names, GGML blocks) at tiny scale through the production path."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.families.conftest import merge_models

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="session")
def sd3_gguf_models(tmp_path_factory, sd3_models):
    from tests.factories_gguf import write_sd3_gguf

    root = tmp_path_factory.mktemp("sd3-gguf")
    merge_models(root, sd3_models)
    write_sd3_gguf(root, "Q8_0")
    return root


@pytest.fixture
def data_dir(tmp_path, sd3_gguf_models):
    merge_models(tmp_path / "models", sd3_gguf_models)
    return tmp_path


def _txt2img(client, model: str, **body):
    payload = {
        "prompt": "a blue square",
        "negative_prompt": "blurry",
        "steps": 2,
        "width": 64,
        "height": 48,
        "seed": 11,
        "cfg_scale": 4,
        "override_settings": {"sd_model_checkpoint": model},
        **body,
    }
    r = client.post("/sdapi/v1/txt2img", json=payload)
    assert r.status_code == 200, r.text
    return (
        [np.asarray(Image.open(io.BytesIO(base64.b64decode(b)))).astype(int) for b in r.json()["images"]],
        json.loads(r.json()["info"]),
    )


def test_sd35_gguf_probe_list_generate(client, data_dir):
    from webui.models.loader import probe_file

    r = probe_file(data_dir / "models" / "Stable-diffusion" / "sd3.5_medium_tiny-Q8_0.gguf")
    assert (r.family.value, r.variant) == ("sd3", "sd35-medium")
    assert r.configs["transformer"]["dual_attention_layers"] == [0]
    names = {m["model_name"] for m in client.get("/sdapi/v1/sd-models").json()}
    assert "sd3.5_medium_tiny-Q8_0" in names
    a, info = _txt2img(client, "sd3.5_medium_tiny-Q8_0")
    b, _ = _txt2img(client, "sd3.5_medium_tiny-Q8_0")
    assert a[0].shape == (48, 64, 3) and np.array_equal(a[0], b[0])
    assert "Model: sd3.5_medium_tiny-Q8_0" in info["infotexts"][0]
    full, _ = _txt2img(client, "sd35_medium_tiny")  # the same weights unquantized
    other, _ = _txt2img(client, "sd35_medium_tiny", seed=12)
    d8, d_seed = np.abs(a[0] - full[0]).mean(), np.abs(other[0] - full[0]).mean()
    assert 0 < d8 < d_seed / 5, (d8, d_seed)


def test_damaged_gguf_is_a_clear_error(client, data_dir):
    (data_dir / "models" / "Stable-diffusion" / "broken-Q4_0.gguf").write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    client.post("/sdapi/v1/refresh-checkpoints")
    r = client.post(
        "/sdapi/v1/txt2img",
        json={"steps": 1, "width": 64, "height": 64, "override_settings": {"sd_model_checkpoint": "broken-Q4_0"}},
    )
    assert r.status_code == 400 and "broken-Q4_0.gguf: not a readable GGUF file" in r.text, r.text
