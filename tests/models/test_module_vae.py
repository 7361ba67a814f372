"""Forge's "VAE / Text Encoder" choice (`forge_additional_modules`) picks the VAE of SD 1.x and SDXL checkpoints too, as
Forge's selector does for any family: a VAE file of models/VAE/ named there whose latent channels fit is used exactly
as the same file chosen through sd_vae; the FLUX/SD 3 parts in the choice (16-channel VAEs, text encoders) are left
alone, and two VAEs that fit are refused."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def data_dir(data_dir):
    from tests.factories import _tiny_vae, write_tiny_sdxl_checkpoint
    from tests.factories_families import _save, clip_to_comfy, tiny_clip, tiny_flow_vae, vae_to_ldm

    models = data_dir / "models"
    write_tiny_sdxl_checkpoint(models / "Stable-diffusion" / "tiny-xl.safetensors", seed=0)
    for name, seed in (("other-vae.safetensors", 5), ("third-vae.safetensors", 6)):
        torch.manual_seed(seed)
        _save(models / "VAE" / name, vae_to_ldm(_tiny_vae()))  # a bare VAE file, LDM names
    _save(models / "VAE" / "ae.safetensors", vae_to_ldm(tiny_flow_vae(1, 0.3611, 0.1159)))  # FLUX's, 16 channels
    _save(models / "text_encoder" / "clip_l.safetensors", clip_to_comfy(tiny_clip(32, 2, projection=False)))
    return data_dir


def gen(client, model: str, status: int = 200, **overrides):
    body = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 3}
    r = client.post(
        "/sdapi/v1/txt2img", json={**body, "override_settings": {"sd_model_checkpoint": model, **overrides}}
    )
    assert r.status_code == status, r.text
    if status != 200:
        return r.json()["detail"], None
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0]))).convert("RGB"))
    return image, json.loads(r.json()["info"])["infotexts"][0]


@pytest.mark.parametrize("model", ["tiny-a", "tiny-xl"])
def test_a_vae_in_the_module_choice_is_the_checkpoints_vae(client, model):
    plain, text = gen(client, model)
    by_option, _ = gen(client, model, sd_vae="other-vae.safetensors")
    by_module, module_text = gen(client, model, forge_additional_modules=["other-vae.safetensors"])
    assert not np.array_equal(plain, by_option) and np.array_equal(by_option, by_module)
    assert "VAE: other-vae.safetensors" in module_text and "VAE:" not in text
    # Forge sends full Windows paths; and FLUX's parts in the choice (a 16-channel VAE, a text encoder) are ignored
    path = "C:\\forge\\models\\VAE\\other-vae.safetensors"
    flux_parts = ["ae.safetensors", "clip_l.safetensors"]
    assert np.array_equal(by_module, gen(client, model, forge_additional_modules=[path, *flux_parts])[0])
    assert np.array_equal(plain, gen(client, model, forge_additional_modules=flux_parts)[0])
    assert np.array_equal(plain, gen(client, model)[0])  # without the choice: the checkpoint's own VAE again


def test_two_fitting_vaes_are_refused(client):
    detail, _ = gen(client, "tiny-a", 400, forge_additional_modules=["other-vae", "third-vae"])
    assert "more than one VAE" in detail and "other-vae.safetensors" in detail and "third-vae.safetensors" in detail
    gen(client, "tiny-a")  # the checkpoint still works without that choice
