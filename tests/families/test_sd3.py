"""SD 3/3.5 end to end at tiny scale: probe of every variant, the catalog, load with separate parts, txt2img, and the
messages for a missing or ambiguous part."""

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


@pytest.fixture
def data_dir(tmp_path, tiny_models, sd3_models):
    merge_models(tmp_path / "models", tiny_models, sd3_models)
    return tmp_path


def _txt2img(client, model: str, **body):
    payload = {
        "prompt": "a blue square",
        "negative_prompt": "blurry",
        "steps": 2,
        "width": 64,
        "height": 64,
        "seed": 11,
        "cfg_scale": 4,
        "override_settings": {"sd_model_checkpoint": model},
        **body,
    }
    r = client.post("/sdapi/v1/txt2img", json=payload)
    assert r.status_code == 200, r.text
    return (
        [np.asarray(Image.open(io.BytesIO(base64.b64decode(b)))) for b in r.json()["images"]],
        json.loads(r.json()["info"]),
    )


@pytest.mark.parametrize(
    "variant,label", [("sd3-medium", "SD 3 Medium"), ("sd35-medium", "SD 3.5 Medium"), ("sd35-large", "SD 3.5 Large")]
)
def test_probe_tells_sd3_variants(tmp_path, variant, label):
    from tests.factories_families import write_sd3_split
    from webui.models.loader import probe_file

    files = write_sd3_split(tmp_path, variant=variant)
    r = probe_file(files["transformer"])
    assert (r.family.value, r.variant, r.label) == ("sd3", variant, label)
    cfg = r.configs["transformer"]
    assert cfg["qk_norm"] == (None if variant == "sd3-medium" else "rms_norm")
    assert cfg["dual_attention_layers"] == ([0] if variant == "sd35-medium" else [])
    assert (cfg["num_layers"], cfg["num_attention_heads"], cfg["pooled_projection_dim"]) == (2, 4, 80)


def test_catalog_lists_sd3(client):
    names = {m["model_name"] for m in client.get("/sdapi/v1/sd-models").json()}
    assert {"sd35_medium_tiny", "sd35-diffusers", "tiny-a"} <= names


def test_sd35_txt2img_size_seed_infotext(client):
    a, info = _txt2img(client, "sd35_medium_tiny", width=64, height=48)
    b, _ = _txt2img(client, "sd35_medium_tiny", width=64, height=48)
    assert a[0].shape == (48, 64, 3) and np.array_equal(a[0], b[0])
    c, _ = _txt2img(client, "sd35_medium_tiny", width=64, height=48, seed=12)
    assert not np.array_equal(a[0], c[0])
    text = info["infotexts"][0]
    assert "Sampler: Euler, Schedule type: Simple, CFG scale: 4" in text and "Distilled CFG Scale" not in text
    assert "Module 1: sd3_vae, Module 2: clip_l, Module 3: clip_g, Module 4: t5xxl_fp16" in text


def test_sd35_diffusers_folder_generates(client):
    a, _ = _txt2img(client, "sd35-diffusers")
    assert a[0].shape == (64, 64, 3)


def test_sd3_parts_missing_or_ambiguous_are_named(make_app, data_dir):
    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    te = data_dir / "models" / "text_encoder"
    shutil.move(str(te / "t5xxl_fp16.safetensors"), str(data_dir / "t5.bak"))
    with TestClient(build_fastapi(make_app("--nowebui"))) as client:
        r = client.post(
            "/sdapi/v1/txt2img",
            json={
                "steps": 1,
                "width": 64,
                "height": 64,
                "override_settings": {"sd_model_checkpoint": "sd35_medium_tiny"},
            },
        )
        assert r.status_code >= 400
        assert "T5-XXL (t5xxl_fp16.safetensors)" in r.text and "models/text_encoder/" in r.text
        shutil.copy(str(data_dir / "t5.bak"), str(te / "t5xxl_fp16.safetensors"))
        (data_dir / "models" / "clip").mkdir()  # ComfyUI's folder counts too: now two T5 files fit
        shutil.copy(str(data_dir / "t5.bak"), str(data_dir / "models" / "clip" / "t5xxl_fp8_e4m3fn.safetensors"))
        r = client.post(
            "/sdapi/v1/txt2img",
            json={
                "steps": 1,
                "width": 64,
                "height": 64,
                "override_settings": {"sd_model_checkpoint": "sd35_medium_tiny"},
            },
        )
        assert r.status_code >= 400 and "more than one" in r.text and "t5xxl_fp8_e4m3fn.safetensors" in r.text


def test_forge_additional_modules_choose_between_fitting_parts(make_app, data_dir):
    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    te = data_dir / "models" / "text_encoder"
    shutil.copy(str(te / "t5xxl_fp16.safetensors"), str(te / "t5xxl_fp8_e4m3fn.safetensors"))
    body = {"prompt": "a blue square", "steps": 1, "width": 64, "height": 64, "seed": 1}
    with TestClient(build_fastapi(make_app("--nowebui"))) as client:
        r = client.post(
            "/sdapi/v1/txt2img", json={**body, "override_settings": {"sd_model_checkpoint": "sd35_medium_tiny"}}
        )
        assert r.status_code == 400 and "more than one" in r.text
        for chosen in ("t5xxl_fp8_e4m3fn.safetensors", "/some/forge/path/t5xxl_fp16.safetensors"):
            r = client.post(
                "/sdapi/v1/txt2img",
                json={
                    **body,
                    "override_settings": {
                        "sd_model_checkpoint": "sd35_medium_tiny",
                        "forge_additional_modules": [chosen],
                    },
                },
            )
            assert r.status_code == 200, r.text
            assert (
                f"Module 4: {chosen.rsplit('/', 1)[-1][: -len('.safetensors')]}"
                in json.loads(r.json()["info"])["infotexts"][0]
            )
        r = client.post(
            "/sdapi/v1/txt2img",
            json={
                **body,
                "override_settings": {
                    "sd_model_checkpoint": "sd35_medium_tiny",
                    "forge_additional_modules": ["nope.safetensors"],
                },
            },
        )
        assert r.status_code == 422 and "nope.safetensors" in r.text  # an unknown name is refused before queueing
