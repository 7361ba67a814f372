"""<lora:…> for FLUX.1 and SD 3.5 through diffusers' own LoRA loaders, hot-swapped as for SD 1.x: a LoRA changes the
output, switching it off restores it bit for bit, and a LoRA of another family is refused with a warning naming it."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.families.conftest import merge_models
from tests.families.lora_factory import write_flux_diffusers, write_flux_kohya, write_sd3_diffusers

pytestmark = pytest.mark.filterwarnings("ignore")
MODELS = {"flux": "flux1-dev-tiny", "sd3": "sd35_medium_tiny"}


@pytest.fixture(params=["flux", "sd3"])
def family(request):
    return request.param


@pytest.fixture
def data_dir(tmp_path, tiny_models, flux_models, sd3_models, family):
    from tests.lora.factory import write_kohya

    models = tmp_path / "models"
    merge_models(models, tiny_models, flux_models if family == "flux" else sd3_models)
    write_flux_diffusers(models / "Lora" / "flux_peft.safetensors")
    write_flux_kohya(models / "Lora" / "flux_kohya.safetensors")
    write_sd3_diffusers(models / "Lora" / "sd3_peft.safetensors")
    write_kohya(models / "Lora" / "sd15_kohya.safetensors", seed=3)
    return tmp_path


def _run(client, model: str, prompt: str):
    r = client.post(
        "/sdapi/v1/txt2img",
        json={
            "prompt": prompt,
            "steps": 2,
            "width": 32,
            "height": 32,
            "seed": 4,
            "cfg_scale": 1,
            "override_settings": {"sd_model_checkpoint": model},
        },
    )
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))), info


def test_lora_changes_output_and_off_restores_it(client, family):
    model = MODELS[family]
    base, _ = _run(client, model, "a red circle")
    own = ["flux_peft", "flux_kohya"] if family == "flux" else ["sd3_peft"]
    for name in own:
        with_lora, info = _run(client, model, f"a red circle <lora:{name}:1>")
        assert not np.array_equal(base, with_lora), name
        assert f'Lora hashes: "{name}: ' in info["infotexts"][0] and not info.get("warnings")
        half, _ = _run(client, model, f"a red circle <lora:{name}:0.5>")  # a weight change only: set_adapters
        assert not np.array_equal(half, with_lora)
        off, _ = _run(client, model, "a red circle")
        assert np.array_equal(base, off), name  # hot-swapped off: bit for bit the base model
    assert client.get("/sdapi/v1/loras").status_code == 200
    families = {x["name"]: x["family"] for x in client.get("/sdapi/v1/loras").json()}
    assert families == {"flux_peft": "flux", "flux_kohya": "flux", "sd3_peft": "sd3", "sd15_kohya": "sd"}


def test_wrong_family_lora_is_refused_with_a_message(client, family):
    model = MODELS[family]
    base, _ = _run(client, model, "a red circle")
    other = "sd3_peft" if family == "flux" else "flux_peft"
    for name, kind in ((other, "SD 3/3.5" if family == "flux" else "FLUX.1"), ("sd15_kohya", "SD 1.x/2.x/SDXL")):
        img, info = _run(client, model, f"a red circle <lora:{name}:1>")
        label = "FLUX.1 dev" if family == "flux" else "SD 3.5 Medium"
        assert f"LoRA {name} is a {kind} LoRA: it does not fit {label} and was not applied" in info["warnings"]
        assert np.array_equal(img, base) and "Lora hashes" not in info["infotexts"][0]
    img, info = _run(client, "tiny-a", "a red circle <lora:flux_peft:1>")  # and the other way round
    assert any("is a FLUX.1 LoRA: it does not fit SD 1.x" in w for w in info["warnings"])
