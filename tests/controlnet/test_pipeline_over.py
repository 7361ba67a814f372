"""The ControlNet pipeline is made over the checkpoint's modules without diffusers' from_pipe, whose closing
`.to(float32)` would upcast a half-precision checkpoint's UNet for good (and raises on GGUF transformers: see
test_flow.py); the config's constructor arguments (requires_safety_checker) carry over as from_pipe carries them."""

from __future__ import annotations

import pytest
import torch

from tests.controlnet.test_units import unit
from webui.extensions.api import PipelineCall

pytestmark = pytest.mark.filterwarnings("ignore")


def test_a_half_precision_checkpoint_stays_half(installed, tiny_models, tmp_path):
    from webui.models.loader import build_from_single_file

    state, _ = installed
    pipe = build_from_single_file(tiny_models / "Stable-diffusion" / "tiny-a.safetensors", tmp_path).pipeline
    pipe.to(torch.float16)
    state.units = state.parse([unit(processor_res=64)], "txt2img")
    call = PipelineCall(kind="txt2img", pipeline=pipe, kwargs={"height": 64, "width": 64})
    used, kwargs = state.on_pipeline_call(call)
    assert type(used).__name__ == "StableDiffusionControlNetPipeline" and used.unet is pipe.unet
    assert pipe.unet.dtype == pipe.vae.dtype == pipe.text_encoder.dtype == torch.float16
    assert used.controlnet.dtype == torch.float16  # moved to the UNet's precision, as before
    assert used.config.requires_safety_checker == pipe.config.requires_safety_checker
    assert kwargs["controlnet_conditioning_scale"] == 1.0
