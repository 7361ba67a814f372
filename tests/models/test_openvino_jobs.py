"""img2img, inpainting (the 4-channel model and a 9-channel inpainting checkpoint) and hires fix with
`cpu_backend: openvino` (#21), on the tiny SD 1.x checkpoints through the Application: at `cpu_precision: fp32` the
converted UNet is the same graph at f32, so the pixels are torch's within 1/255; inpainting leaves the unmasked pixels
alone; a hires pass on the same checkpoint and prompt stays on OpenVINO (a second compiled shape), one with its own
checkpoint runs the job on torch and says so."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw

from webui.generation.images import prepare_mask
from webui.generation.requests import Img2ImgRequest, Txt2ImgRequest
from webui.models import openvino_backend as ovb

pytest.importorskip("openvino", reason="openvino is not installed (pip install --no-deps -r requirements-openvino.txt)")

OV = {"cpu_backend": "openvino", "cpu_precision": "fp32"}
TORCH = {"cpu_precision": "fp32"}


def _init(size=(64, 64)) -> Image.Image:
    im = Image.new("RGB", size, (30, 60, 200))
    d = ImageDraw.Draw(im)
    d.ellipse((12, 12, 52, 52), fill=(220, 40, 40))
    d.rectangle((0, 0, 10, size[1]), fill=(250, 250, 30))
    return im


def _mask(size=(64, 64), box=(20, 20, 44, 44)) -> Image.Image:
    m = Image.new("L", size, 0)
    ImageDraw.Draw(m).rectangle(box, fill=255)
    return m


def _a(im) -> np.ndarray:
    return np.asarray(im.convert("RGB"), dtype=np.int16)


def _img2img(app, overrides, mask=None, **kw):
    body = {"prompt": "a yellow square", "steps": 3, "seed": 11, "denoising_strength": 0.6, **kw}
    req = Img2ImgRequest(**body, override_settings=overrides)
    res = app.jobs.wait(app.submit_img2img(req, from_api=True, images=[_init()], mask=mask))
    return _a(res.images[0]), res.infotexts[0], res.warnings


def _txt2img(app, overrides, **kw):
    req = Txt2ImgRequest(**{"prompt": "a red circle", "steps": 2, "seed": 5, **kw}, override_settings=overrides)
    res = app.jobs.wait(app.submit_txt2img(req, from_api=True))
    return _a(res.images[0]), res.infotexts[0], res.warnings


def _hook(app) -> ovb.OpenVinoUnet:
    hook = ovb.hook_of(app.models.active.pipeline.unet)
    assert hook is not None
    return hook


def test_img2img_and_inpaint_give_torchs_pixels(make_app, data_dir, tiny_inpaint_file):
    app = make_app("--nowebui")
    torch_img, _, _ = _img2img(app, TORCH)
    ov_img, info, warnings = _img2img(app, OV)
    hook = _hook(app)
    assert "CPU backend: openvino" in info and not warnings and hook.calls > 0
    assert np.abs(ov_img - torch_img).max() <= 1 and np.abs(ov_img - _a(_init())).mean() > 5
    # inpainting with the 4-channel model: the same pixels, and outside the (blurred) mask the init image's
    mask = _mask()
    inpaint = {"mask_blur": 4, "denoising_strength": 1.0}
    torch_in, _, _ = _img2img(app, TORCH, mask=mask, **inpaint)
    calls = hook.calls
    ov_in, info, warnings = _img2img(app, OV, mask=mask, **inpaint)
    assert "CPU backend: openvino" in info and not warnings and hook.calls > calls
    assert np.abs(ov_in - torch_in).max() <= 1
    _, blurred = prepare_mask(mask, (64, 64), invert=False, blur=4)
    untouched, repainted = np.asarray(blurred) == 0, np.asarray(blurred) == 255
    src = _a(_init())
    assert np.abs(ov_in - src)[untouched].max() <= 2 and np.abs(ov_in - src)[repainted].mean() > 5
    assert hook.conversions == 1  # img2img and inpainting run the same IR
    # a 9-channel inpainting checkpoint: its own IR, with the masked image and the mask as input channels
    shutil.copy(tiny_inpaint_file, data_dir / "models" / "Stable-diffusion")
    app.models.refresh()
    assert app.switch_checkpoint("tiny-inpainting").probe.inpainting
    inpaint = {"mask_blur": 0, "denoising_strength": 1.0}
    torch_9, _, _ = _img2img(app, TORCH, mask=mask, **inpaint)
    ov_9, info, warnings = _img2img(app, OV, mask=mask, **inpaint)
    assert "CPU backend: openvino" in info and not warnings and _hook(app).conversions == 1
    assert np.abs(ov_9 - torch_9).max() <= 1
    keep = np.asarray(mask) == 0
    assert np.abs(ov_9 - src)[keep].max() <= 2 and np.abs(ov_9 - src)[~keep].mean() > 5


HIRES = {"enable_hr": True, "hr_scale": 1.5, "hr_upscaler": "Latent", "hr_second_pass_steps": 2}


def test_hires_stays_on_openvino_and_its_own_checkpoint_falls_back(make_app):
    app = make_app("--nowebui")
    torch_img, _, _ = _txt2img(app, TORCH, **HIRES)
    ov_img, info, warnings = _txt2img(app, OV, **HIRES)
    hook = _hook(app)
    assert ov_img.shape == (96, 96, 3) and "Hires upscale: 1.5" in info
    assert "CPU backend: openvino" in info and not warnings
    assert hook.conversions == 1 and hook.compiles == 2  # one IR, compiled for the first pass's and the hires size
    assert hook.calls == 3  # CFG batched: the first pass's 2 steps, the hires pass's 2 at denoising strength 0.7 → 1
    assert np.abs(ov_img - torch_img).max() <= 1
    # a hires checkpoint of its own (maybe another LoRA set, another IR): the job runs on torch and says so
    other = {**HIRES, "hr_checkpoint_name": "tiny-b"}
    torch_other, _, _ = _txt2img(app, {**TORCH, "sd_model_checkpoint": "tiny-a"}, **other)
    ov_other, info, warnings = _txt2img(app, {**OV, "sd_model_checkpoint": "tiny-a"}, **other)
    assert "CPU backend: torch" in info and "Hires checkpoint" in info
    assert any("hires pass has its own checkpoint" in w and "ran on torch" in w for w in warnings), warnings
    assert np.array_equal(ov_other, torch_other)
