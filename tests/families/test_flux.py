"""FLUX.1 end to end at tiny scale, through the real loaders and the API: probe, catalog, load, txt2img."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.families.conftest import merge_models

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def data_dir(tmp_path, tiny_models, flux_models):
    merge_models(tmp_path / "models", tiny_models, flux_models)
    return tmp_path


def _txt2img(client, model: str, **body):
    payload = {
        "prompt": "a red circle",
        "steps": 2,
        "width": 64,
        "height": 64,
        "seed": 7,
        "override_settings": {"sd_model_checkpoint": model},
        **body,
    }
    r = client.post("/sdapi/v1/txt2img", json=payload)
    assert r.status_code == 200, r.text
    data = r.json()
    images = [np.asarray(Image.open(io.BytesIO(base64.b64decode(b)))) for b in data["images"]]
    import json

    return images, json.loads(data["info"])


def test_probe_tells_dev_from_schnell(data_dir):
    from webui.models.loader import probe_file

    sd = data_dir / "models" / "Stable-diffusion"
    dev, schnell = probe_file(sd / "flux1-dev-tiny.safetensors"), probe_file(sd / "flux1-schnell-tiny.safetensors")
    assert (dev.family.value, dev.variant, dev.label) == ("flux", "flux-dev", "FLUX.1 dev")
    assert (schnell.variant, schnell.label) == ("flux-schnell", "FLUX.1 schnell")
    assert dev.configs["transformer"]["guidance_embeds"] and not schnell.configs["transformer"]["guidance_embeds"]
    assert dev.configs["scheduler"]["use_dynamic_shifting"] and schnell.configs["scheduler"]["shift"] == 1.0


def test_catalog_lists_flux_files_and_folders(client):
    names = {m["model_name"] for m in client.get("/sdapi/v1/sd-models").json()}
    assert {"flux1-dev-tiny", "flux1-schnell-tiny", "flux-dev-diffusers", "tiny-a"} <= names


def test_flux_dev_txt2img_size_seed_infotext(client):
    a, info = _txt2img(client, "flux1-dev-tiny", width=64, height=48, distilled_cfg_scale=2.5, cfg_scale=1)
    assert a[0].shape == (48, 64, 3)
    b, _ = _txt2img(client, "flux1-dev-tiny", width=64, height=48, distilled_cfg_scale=2.5, cfg_scale=1)
    assert np.array_equal(a[0], b[0])
    c, _ = _txt2img(client, "flux1-dev-tiny", width=64, height=48, distilled_cfg_scale=6.0, cfg_scale=1)
    assert not np.array_equal(a[0], c[0])  # the distilled guidance reaches the guidance embedder
    text = info["infotexts"][0]
    assert "Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 2.5, Seed: 7" in text
    assert "Model: flux1-dev-tiny" in text and "Module 1: ae, Module 2: clip_l, Module 3: t5xxl_fp16" in text


def test_distilled_cfg_pastes_back(client):
    forge = (
        "a cat\nSteps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, "
        "Seed: 1, Module 1: ae, Version: f2.0.1"
    )
    r = client.post(
        "/sdapi/v1/txt2img",
        json={
            "infotext": forge,
            "steps": 2,
            "width": 64,
            "height": 64,
            "override_settings": {"sd_model_checkpoint": "flux1-dev-tiny"},
        },
    )
    assert r.status_code == 200, r.text
    assert "Distilled CFG Scale: 3.5" in r.json()["info"]


def test_flux_schnell_has_no_distilled_cfg(client):
    imgs, info = _txt2img(client, "flux1-schnell-tiny")
    assert imgs[0].shape == (64, 64, 3)
    assert "Distilled CFG Scale" not in info["infotexts"][0]


def test_flux_diffusers_folder_generates(client):
    a, info = _txt2img(client, "flux-dev-diffusers", seed=3)
    b, _ = _txt2img(client, "flux-dev-diffusers", seed=3)
    assert a[0].shape == (64, 64, 3) and np.array_equal(a[0], b[0])
    assert "Distilled CFG Scale: 3.5" in info["infotexts"][0]


def test_flux_refuses_other_samplers_and_sizes(client):
    r = client.post(
        "/sdapi/v1/txt2img",
        json={
            "steps": 2,
            "width": 64,
            "height": 56,
            "sampler_name": "Euler",
            "override_settings": {"sd_model_checkpoint": "flux1-dev-tiny"},
        },
    )
    assert r.status_code == 422 and "multiples of 16" in r.text
    r = client.post(
        "/sdapi/v1/txt2img",
        json={
            "steps": 2,
            "width": 64,
            "height": 64,
            "sampler_name": "DPM++ 2M",
            "override_settings": {"sd_model_checkpoint": "flux1-dev-tiny"},
        },
    )
    assert r.status_code == 422 and "Euler" in r.text
