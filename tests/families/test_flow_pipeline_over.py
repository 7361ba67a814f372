"""flow_call.pipeline_over: the img2img/inpaint pipelines of every family share the checkpoint's modules untouched.
diffusers' from_pipe ends with `.to(dtype)` (float32 unless told), which upcasts a bf16 checkpoint's shared modules
in place and raises on a GGUF-quantized transformer; the GGUF case runs end to end in tests/controlnet/test_flow.py."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.filterwarnings("ignore")


def test_pipeline_over_shares_the_modules_and_keeps_their_dtype():
    from diffusers import FluxImg2ImgPipeline, FluxInpaintPipeline

    from tests.factories_families import tiny_flux_pipeline
    from webui.generation.flow_call import pipeline_over

    pipe = tiny_flux_pipeline(0).to(torch.bfloat16)
    for cls in (FluxImg2ImgPipeline, FluxInpaintPipeline):
        made = pipeline_over(cls, pipe)
        assert type(made) is cls and made.transformer is pipe.transformer and made.vae is pipe.vae
        assert made.text_encoder_2 is pipe.text_encoder_2 and made.scheduler is pipe.scheduler
    assert pipe.transformer.dtype == pipe.vae.dtype == torch.bfloat16  # still bf16
    FluxImg2ImgPipeline.from_pipe(pipe)
    assert pipe.transformer.dtype == torch.float32  # what from_pipe does to them (why pipeline_over exists)


def test_sd_img2img_pipeline_keeps_a_half_checkpoint_half(tiny_models, tmp_path):
    """The SD families' img2img/inpaint pipelines (img2img.py) too, with the config's constructor arguments."""
    from types import SimpleNamespace

    from webui.generation.img2img import inpaint_pipeline
    from webui.models.loader import build_from_single_file

    pipe = build_from_single_file(tiny_models / "Stable-diffusion" / "tiny-a.safetensors", tmp_path).pipeline
    pipe.to(torch.float16)
    made = inpaint_pipeline(SimpleNamespace(pipeline=pipe, extra={}))
    assert type(made).__name__ == "StableDiffusionInpaintPipeline" and made.unet is pipe.unet
    assert pipe.unet.dtype == pipe.vae.dtype == torch.float16
    assert made.config.requires_safety_checker == pipe.config.requires_safety_checker
