"""ControlNet for FLUX.1 and SD 3 through the built-in extension and the API, at tiny scale: sd-webui-controlnet
units in alwayson_scripts steer FLUX (txt2img, img2img, inpaint, two units) and SD 3 (txt2img) generations; weight 0
is exactly the uncontrolled output; the infotext records the unit and pastes back to the same pixels; a ControlNet
of another family, or a combination diffusers has no pipeline for, is a 422 that says why."""

from __future__ import annotations

import base64
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.conftest import app_flags
from tests.controlnet.conftest import b64, load_script, square, tiny_controlnet
from tests.controlnet.flow_models import write_flow_controlnets
from tests.factories_families import write_flux_split, write_sd3_aio
from tests.factories_gguf import write_flux_gguf
from webui.infotext import parse_infotext

pytestmark = pytest.mark.filterwarnings("ignore")
FLUX, SD3, SD1 = "flux1-dev-tiny", "sd3.5_medium_tiny_incl_clips_t5xxl", "tiny-a"


@pytest.fixture(scope="module")
def client(tmp_path_factory, tiny_models):
    """One app for the module: the tiny SD 1.x checkpoints, FLUX.1 dev (split files) and SD 3.5 Medium (all in one), and
    models/ControlNet/ with the FLUX/SD 3 ControlNets and an SD 1.x one (tiny-canny)."""
    from fastapi.testclient import TestClient

    from tests.extensions.conftest import build_server
    from tests.factories import tiny_components
    from webui.app import Application
    from webui.flags import parse_args

    root = tmp_path_factory.mktemp("flow-controlnet")
    models = root / "models"
    shutil.copytree(tiny_models, models)
    write_flux_split(models, seed=0, dev=True)
    write_flux_gguf(models, "Q4_0", twin=False)  # its parts: the split's
    write_sd3_aio(models, seed=0, variant="sd35-medium")  # all in one: the split files share FLUX's names
    write_flow_controlnets(models / "ControlNet")
    tiny_controlnet(tiny_components(0)[0], 1).save_pretrained(models / "ControlNet" / "tiny-canny")
    app = Application(parse_args(app_flags(root, "--nowebui")))
    app.catalog.demo_dir = None
    app.start(wait_for_model=True)
    try:
        with TestClient(build_server(app)) as c:
            yield c
    finally:
        app.stop()


def unit(**kw):
    return {"enabled": True, "module": "canny", "model": "tiny-flux", "image": b64(square()), "weight": 1.0, **kw}


def post(client, model, units=None, *, route="txt2img", **body):
    payload = {
        "prompt": "a square",
        "steps": 2,
        "width": 64,
        "height": 64,
        "seed": 5,
        "cfg_scale": 5 if model in (SD3, SD1) else 1,  # FLUX: the distilled guidance only
        "override_settings": {"sd_model_checkpoint": model},
        **body,
    }
    if units is not None:
        payload["alwayson_scripts"] = {"controlnet": {"args": units}}
    return client.post(f"/sdapi/v1/{route}", json=payload)


def generate(client, model, units=None, **kw):
    r = post(client, model, units, **kw)
    assert r.status_code == 200, r.text
    data = r.json()
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["images"][0]))).convert("RGB"), dtype=np.int16)
    return image, json.loads(data["info"])


def refused(client, model, units, message, **kw):
    r = post(client, model, units, **kw)
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"], r.json()["detail"]


def test_model_list_names_each_family_and_why_some_cant_be_used(client):
    body = client.get("/controlnet/model_list").json()
    by_name = {t.split(" [")[0]: t for t in body["model_list"]}
    assert set(by_name) == {
        *("tiny-flux", "tiny-flux-b", "tiny-flux-wide", "tiny-flux-w32", "tiny-sd3", "tiny-flux-union"),
        *("tiny-flux-single", "tiny-canny"),
    }
    detail = {name: body["model_detail"][title] for name, title in by_name.items()}
    assert detail["tiny-flux"] == {"family": "flux", "layout": "diffusers"}
    assert detail["tiny-sd3"] == {"family": "sd3", "layout": "diffusers"}
    assert detail["tiny-canny"]["family"] == "unknown" and "reason" not in detail["tiny-canny"]  # 32-wide test UNet
    assert "union ControlNets" in detail["tiny-flux-union"]["reason"]
    assert "FLUX.1 ControlNet in a single file" in detail["tiny-flux-single"]["reason"]


def test_flux_control_weight_zero_infotext_and_two_units(client):
    plain, _ = generate(client, FLUX)
    controlled, info = generate(client, FLUX, [unit()])
    assert not np.array_equal(plain, controlled)
    assert np.array_equal(plain, generate(client, FLUX, [unit(weight=0.0)])[0])  # weight 0: exactly uncontrolled
    value = parse_infotext(info["infotexts"][0])["ControlNet 0"]
    assert value.startswith("Module: canny, Model: tiny-flux [") and "Weight: 1" in value
    restored = load_script().lib("units").parse_infotext(value)  # what PNG Info / Send-to restore (not the image)
    assert np.array_equal(controlled, generate(client, FLUX, [{**restored, "image": b64(square())}])[0])
    two, info2 = generate(client, FLUX, [unit(), unit(model="tiny-flux-b", guidance_end=0.5)])
    assert not np.array_equal(two, controlled)  # FluxMultiControlNetModel: the second unit counts
    assert "ControlNet 1" in parse_infotext(info2["infotexts"][0])
    assert np.array_equal(plain, generate(client, FLUX)[0])  # the next request without units is plain again


def test_sd3_control_and_weight_zero(client):
    plain, _ = generate(client, SD3)
    controlled, info = generate(client, SD3, [unit(model="tiny-sd3")])
    assert not np.array_equal(plain, controlled)
    assert np.array_equal(plain, generate(client, SD3, [unit(model="tiny-sd3", weight=0.0)])[0])
    assert parse_infotext(info["infotexts"][0])["ControlNet 0"].startswith("Module: canny, Model: tiny-sd3 [")


def test_flux_img2img_and_inpaint_with_control(client):
    init = Image.new("RGB", (64, 64), (90, 140, 200))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    body = {"init_images": [b64(init)], "denoising_strength": 0.8}
    plain, _ = generate(client, FLUX, route="img2img", **body)
    controlled, _ = generate(client, FLUX, [unit(image=None)], route="img2img", **body)  # the init image as map
    assert not np.array_equal(plain, controlled)
    inpaint = {**body, "mask": b64(mask), "mask_blur": 0}
    a, _ = generate(client, FLUX, route="img2img", **inpaint)
    b, _ = generate(client, FLUX, [unit()], route="img2img", **inpaint)
    assert not np.array_equal(a[:, :32], b[:, :32])
    assert np.array_equal(b[:, 32:], np.asarray(init, dtype=np.int16)[:, 32:])  # unmasked pixels kept


def test_wrong_family_and_unsupported_combinations_are_refused(client):
    refused(
        client, FLUX, [unit(model="tiny-canny")], "is for an SD 1.x/2.x/SDXL UNet, but the loaded checkpoint is FLUX.1"
    )
    refused(client, SD3, [unit()], "is for flux, but the loaded checkpoint is SD 3")
    refused(client, SD1, [unit()], "is for flux, but the loaded checkpoint is sd1")
    refused(client, SD1, [unit(model="tiny-sd3")], "is for sd3, but the loaded checkpoint is sd1")
    init = {"init_images": [b64(square())]}
    refused(client, SD3, [unit(model="tiny-sd3")], "no SD 3 ControlNet pipeline for img2img", route="img2img", **init)
    refused(client, SD3, [unit(model="tiny-sd3")], "for the hires fix pass", enable_hr=True, hr_scale=1.5)
    slg = {"slg_scale": 3, "slg_layers": "1", "slg_start": 0, "slg_end": 1}  # diffusers' SD 3 ControlNet has no SLG
    refused(client, SD3, [unit(model="tiny-sd3")], "can't run with StableDiffusion3ControlNetPipeline", **slg)
    refused(client, FLUX, [unit()], "set CFG scale to 1", route="img2img", **init, cfg_scale=3)
    refused(client, FLUX, [unit(control_mode=2)], "use 'Balanced'")
    refused(client, FLUX, [unit(model="tiny-flux-union")], "union ControlNets")
    refused(client, FLUX, [unit(model="tiny-flux-wide")], "does not fit the loaded FLUX.1 checkpoint (width 32 ≠ 16)")
    refused(client, FLUX, [unit(model="tiny-flux-single")], "loads FLUX.1 ControlNets only from a diffusers folder")
    items = {e["name"]: e for e in client.get("/sdapi/v1/extensions").json()}
    assert items["controlnet"]["status"] == "ok"  # refusals, not crashes: the extension stays enabled
    generate(client, SD1, [unit(model="tiny-canny")])  # and the UNet path still runs


def test_flux_hires_second_pass_keeps_control(client):
    """The hires pass is an img2img call: FluxControlNetImg2ImgPipeline with the map remade at the hires size."""
    hires = {"enable_hr": True, "hr_scale": 1.5, "hr_upscaler": "Latent", "denoising_strength": 0.6}
    plain, _ = generate(client, FLUX, **hires)
    controlled, info = generate(client, FLUX, [unit()], **hires)
    assert plain.shape == controlled.shape == (96, 96, 3) and not np.array_equal(plain, controlled)
    first_only, _ = generate(client, FLUX, [unit(guidance_end=0.5)], **hires)  # the window applies to each pass
    assert not np.array_equal(first_only, controlled)


def test_flux_gguf_checkpoint_with_control(client):
    """A GGUF-quantized transformer: the ControlNet pipeline is made over it without from_pipe's dtype cast (which
    raises on quantized weights), in txt2img and img2img."""
    gguf = "flux1-dev-tiny-Q4_0"
    plain, _ = generate(client, gguf)
    assert not np.array_equal(plain, generate(client, gguf, [unit(model="tiny-flux-w32")])[0])
    body = {"route": "img2img", "init_images": [b64(square())], "denoising_strength": 0.7}
    plain_i2i, _ = generate(client, gguf, **body)
    assert not np.array_equal(plain_i2i, generate(client, gguf, [unit(model="tiny-flux-w32")], **body)[0])
    items = {e["name"]: e for e in client.get("/sdapi/v1/extensions").json()}
    assert items["controlnet"]["status"] == "ok"
