"""ControlNet units through the whole application (the built-in extension as Easel loads it): the infotext round
trip, hires fix (the second pass keeps control), the 9-channel inpainting checkpoint, LoRAs, AND, and the
sd-webui-controlnet routes at /controlnet/ behind the API auth."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.controlnet.conftest import b64, load_script, square
from webui.generation.requests import Img2ImgRequest, Txt2ImgRequest
from webui.infotext import parse_infotext


@pytest.fixture
def cn_app(make_app, controlnet_dir):
    app = make_app("--nowebui")
    app.options.set({"control_net_models_path": str(controlnet_dir)}, persist=False)
    return app


def unit(**kw):
    return {
        "enabled": True,
        "module": "canny",
        "model": "tiny-canny",
        "image": b64(square()),
        "weight": 1.0,
        "processor_res": 64,
        **kw,
    }


def txt2img(app, units=None, **kw):
    body = {"prompt": "a square", "steps": 4, "seed": 5, **kw}
    if units is not None:
        body["alwayson_scripts"] = {"controlnet": {"args": units}}
    return app.jobs.wait(app.submit_txt2img(Txt2ImgRequest(**body), from_api=True))


def pixels(result, i=0):
    return np.asarray(result.images[i].convert("RGB"), dtype=np.int16)


def test_infotext_round_trip_regenerates_the_same_pixels(cn_app):
    units_lib = load_script().lib("units")
    first = txt2img(
        cn_app,
        [
            unit(
                weight=0.8,
                guidance_start=0.1,
                threshold_a=50,
                threshold_b=150,
                control_mode="My prompt is more important",
            )
        ],
    )
    text = first.infotexts[0]
    params = parse_infotext(text)
    value = params["ControlNet 0"]
    assert value.startswith("Module: canny, Model: tiny-canny [") and "Weight: 0.8" in value
    assert "Threshold A: 50" in value and "Control Mode: My prompt is more important" in value
    assert first.info["extra_generation_params"]["ControlNet 0"] == value
    restored = units_lib.parse_infotext(value)  # what PNG Info / Send-to restore (all but the image)
    again = txt2img(cn_app, [{**restored, "image": b64(square())}])
    assert np.array_equal(pixels(first), pixels(again))
    plain = txt2img(cn_app)
    assert "ControlNet 0" not in plain.infotexts[0]


def test_hires_second_pass_keeps_control(cn_app, monkeypatch):
    import diffusers

    calls = []
    cls = diffusers.StableDiffusionControlNetImg2ImgPipeline
    original = cls.__call__

    def spy(self, *a, **kw):
        calls.append(kw["control_image"].size)
        return original(self, *a, **kw)

    monkeypatch.setattr(cls, "__call__", spy)
    hires = dict(enable_hr=True, hr_scale=2, hr_upscaler="Latent", hr_second_pass_steps=2, denoising_strength=0.6)
    controlled = txt2img(cn_app, [unit()], **hires)
    assert calls == [(128, 128)]  # the second pass ran controlled, with the map made at the hires size
    assert controlled.images[0].size == (128, 128)
    uncontrolled = txt2img(cn_app, **hires)
    assert np.abs(pixels(controlled) - pixels(uncontrolled)).mean() > 0.5
    calls.clear()
    txt2img(cn_app, [unit()], **{**hires, "hr_upscaler": "Lanczos"})  # an image upscaler: a PIL image in
    assert calls == [(128, 128)]


def test_nine_channel_inpainting_with_control_keeps_the_unmasked_area(cn_app, data_dir, tiny_inpaint_file):
    shutil.copy(tiny_inpaint_file, data_dir / "models" / "Stable-diffusion")
    cn_app.models.refresh()
    assert cn_app.switch_checkpoint("tiny-inpainting").probe.inpainting
    init = Image.new("RGB", (64, 64), (30, 60, 200))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 48, 48), fill=255)

    def run(units=None):
        body = {"prompt": "a square", "steps": 4, "seed": 3, "denoising_strength": 1.0, "mask_blur": 0}
        if units is not None:
            body["alwayson_scripts"] = {"controlnet": {"args": units}}
        job = cn_app.submit_img2img(Img2ImgRequest(**body), from_api=True, images=[init], mask=mask)
        return cn_app.jobs.wait(job)

    plain, controlled = run(), run([unit()])
    keep = np.asarray(mask) == 0
    src = np.asarray(init, dtype=np.int16)
    assert np.abs(pixels(controlled) - src)[keep].max() <= 2
    assert np.abs(pixels(controlled) - pixels(plain))[~keep].mean() > 0.5
    assert "ControlNet 0" in controlled.infotexts[0]
    # "use the img2img input": a unit without an image takes the init image as its control source
    assert run([unit(image=None)]).images[0].size == (64, 64)


def test_lora_and_control_together(cn_app):
    from tests.lora.factory import write_kohya

    write_kohya(cn_app.paths.lora_dir / "alpha.safetensors", seed=1)
    cn_app.loras.refresh()
    control_only = txt2img(cn_app, [unit()])
    both = txt2img(cn_app, [unit()], prompt="a square <lora:alpha:1>")
    lora_only = txt2img(cn_app, prompt="a square <lora:alpha:1>")
    assert np.abs(pixels(both) - pixels(control_only)).mean() > 0.5
    assert np.abs(pixels(both) - pixels(lora_only)).mean() > 0.5
    params = parse_infotext(both.infotexts[0])
    assert "alpha" in params["Lora hashes"] and params["ControlNet 0"].startswith("Module: canny")


def test_and_prompts_with_control(cn_app):
    composed = txt2img(cn_app, [unit()], prompt="a square AND a circle :0.5")
    plain_and = txt2img(cn_app, prompt="a square AND a circle :0.5")
    assert np.abs(pixels(composed) - pixels(plain_and)).mean() > 0.5
    guess = txt2img(
        cn_app, [unit(control_mode="ControlNet is more important")], prompt="a square AND a circle :0.5"
    )  # guess mode: zero residuals for the uncond half
    assert guess.images[0].size == (64, 64)


def test_routes_are_also_at_controlnet_and_behind_the_api_auth(make_app, controlnet_dir):
    from fastapi.testclient import TestClient

    from tests.extensions.conftest import build_server

    app = make_app("--nowebui", "--api-auth", "u:p")
    app.options.set({"control_net_models_path": str(controlnet_dir)}, persist=False)
    with TestClient(build_server(app)) as c:
        assert c.get("/controlnet/version").status_code == 401
        assert c.get("/controlnet/model_list", auth=("u", "x")).status_code == 401
        models = c.get("/controlnet/model_list", auth=("u", "p"))
        assert models.status_code == 200 and any(t.startswith("tiny-canny [") for t in models.json()["model_list"])
        assert c.get("/ext/controlnet/model_list", auth=("u", "p")).json() == models.json()
        assert c.get("/controlnet/version", auth=("u", "p")).json() == {"version": 2}
        assert "canny" in c.get("/controlnet/module_list", auth=("u", "p")).json()["module_list"]
        r = c.post(
            "/controlnet/detect",
            auth=("u", "p"),
            json={
                "controlnet_module": "canny",
                "controlnet_input_images": [b64(square())],
                "controlnet_processor_res": 64,
                "controlnet_threshold_a": 100,
                "controlnet_threshold_b": 200,
            },
        )
        assert r.status_code == 200 and len(r.json()["images"]) == 1


def test_sdxl_checkpoint_with_an_sdxl_controlnet(cn_app, data_dir):
    from tests.factories import write_tiny_sdxl_checkpoint

    write_tiny_sdxl_checkpoint(data_dir / "models" / "Stable-diffusion" / "tiny-xl.safetensors", seed=0)
    cn_app.models.refresh()
    assert cn_app.switch_checkpoint("tiny-xl").probe.family == "sdxl"
    plain = txt2img(cn_app)
    controlled = txt2img(cn_app, [unit(model="tiny-xl")])
    assert np.abs(pixels(controlled) - pixels(plain)).mean() > 0.5
    assert "Model: tiny-xl [" in parse_infotext(controlled.infotexts[0])["ControlNet 0"]
    # an SD 1.x ControlNet on the SDXL checkpoint is refused with the reason, and the checkpoint stays loaded
    with pytest.raises(Exception, match="tiny-canny") as refused:
        txt2img(cn_app, [unit()])
    assert type(refused.value).__name__ == "InvalidRequest" and "checkpoint is sdxl" in str(refused.value)
    assert cn_app.models.active.probe.family == "sdxl"


def test_controlnets_run_at_the_unets_precision_and_never_stay_bf16(cn_app, monkeypatch):
    """CPU fast path: a bf16 request runs the ControlNet under the same bf16 autocast as the UNet (it is a third
    of the denoising work); the next fp32 request — single unit or MultiControlNet — is exactly fp32 again."""
    import diffusers
    import torch

    if not cn_app.policy.cpu_bf16:
        pytest.skip("this CPU has no native bf16")
    seen = []
    original = diffusers.ControlNetModel.forward

    def spy(self, *a, **kw):
        seen.append(torch.is_autocast_enabled("cpu"))
        return original(self, *a, **kw)

    monkeypatch.setattr(diffusers.ControlNetModel, "forward", spy)

    def run(units, precision):
        seen.clear()
        r = txt2img(cn_app, units, override_settings={"cpu_precision": precision})
        assert f"Precision: {precision}" in r.infotexts[0]
        return pixels(r), set(seen)

    one, two = [unit()], [unit(), unit(weight=0.5)]
    fp32_one, s1 = run(one, "fp32")
    bf16_one, s2 = run(one, "bf16")
    fp32_two, s3 = run(two, "fp32")
    bf16_two, s4 = run(two, "bf16")
    again_one, s5 = run(one, "fp32")
    again_two, s6 = run(two, "fp32")
    assert (s1, s2, s3, s4, s5, s6) == ({False}, {True}, {False}, {True}, {False}, {False})
    assert np.array_equal(fp32_one, again_one) and np.array_equal(fp32_two, again_two)
    for fast, ref in ((bf16_one, fp32_one), (bf16_two, fp32_two)):
        diff = np.abs(fast - ref)
        assert 0 < diff.mean() < 2, diff.mean()  # bf16 rounding (measured ~0.5), not a different picture
