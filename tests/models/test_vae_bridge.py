"""--no-half-vae: the checkpoint's VAE in fp32 beside a half-precision UNet and text encoder. No GPU here, so the
half model runs in fp16 on the CPU, through the real manager and pipelines (txt2img, img2img, hires)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from webui.generation.requests import Img2ImgRequest, Txt2ImgRequest
from webui.models.device import DevicePolicy


@pytest.fixture
def half_app(make_app, monkeypatch):
    policy = DevicePolicy(
        device=torch.device("cpu"), dtype=torch.float16, vae_dtype=torch.float32, note="test: fp16 model, --no-half-vae"
    )
    monkeypatch.setattr("webui.app.choose_policy", lambda **kw: policy)
    return make_app("--nowebui")


def test_fp32_vae_beside_an_fp16_unet_generates(half_app):
    pipe = half_app.models.active.pipeline
    assert (pipe.unet.dtype, pipe.text_encoder.dtype, pipe.vae.dtype) == (torch.float16, torch.float16, torch.float32)
    r = half_app.jobs.wait(
        half_app.submit_txt2img(Txt2ImgRequest(prompt="a cat", steps=2, seed=1, width=64, height=64), from_api=True)
    )
    image = np.asarray(r.images[0])
    assert image.shape == (64, 64, 3) and image.std() > 0
    i2i = half_app.jobs.wait(
        half_app.submit_img2img(
            Img2ImgRequest(prompt="a cat", steps=2, seed=1, denoising_strength=0.5, width=64, height=64),
            from_api=False,
            images=[r.images[0]],
        )
    )
    assert i2i.images[0].size == (64, 64)
    hires = half_app.jobs.wait(
        half_app.submit_txt2img(
            Txt2ImgRequest(
                prompt="a cat",
                steps=2,
                seed=1,
                width=64,
                height=64,
                enable_hr=True,
                hr_scale=2,
                hr_upscaler="Lanczos",
                hr_second_pass_steps=1,
                denoising_strength=0.5,
            ),
            from_api=True,
        )
    )
    assert hires.images[0].size == (128, 128)


def test_without_the_bridge_the_pipeline_fails_on_the_dtype(half_app):
    """The bridge is what makes it work: the same VAE without it is refused by diffusers' SD pipeline."""
    pipe = half_app.models.active.pipeline
    vae = pipe.vae
    from webui.models.runtime import bridge_vae_dtype, overridden
    from webui.models.vae_bridge import KEY

    assert overridden(vae, "decode", KEY) and overridden(vae, "encode", KEY)
    del vae.encode, vae.decode  # the runtime's overrides; the class methods remain
    try:
        with pytest.raises(RuntimeError, match="[Tt]ype|dtype"):
            pipe(
                prompt="a cat",
                num_inference_steps=1,
                height=64,
                width=64,
                output_type="np",
                generator=torch.Generator().manual_seed(0),
            )
    finally:
        assert bridge_vae_dtype(vae, torch.float16)
