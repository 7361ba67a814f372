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


def test_a_flux_controlnet_runs_at_the_transformers_dtype_and_the_cached_copy_stays(tmp_path):
    """A bf16 FLUX checkpoint gets its own bf16 copy of the ControlNet (the float32 one in the cache is not rounded),
    and runs beside a float32 VAE."""
    import logging

    from tests.controlnet.conftest import EXT, FakeSettings, load_script
    from tests.controlnet.flow_models import tiny_flux_controlnet
    from tests.factories_families import tiny_flux_pipeline
    from webui.extensions.api import ExtensionHandle

    tiny_flux_controlnet(1).save_pretrained(tmp_path / "tiny-flux")
    settings = FakeSettings(control_net_models_path=str(tmp_path))
    ext = ExtensionHandle(name="controlnet", path=EXT, settings=settings, log=logging.getLogger("test.controlnet"))
    state = load_script().install(ext)
    state.family = "flux"
    entry = state.catalog.find("tiny-flux")
    fp32 = state.catalog.load(entry)
    before = {k: v.clone() for k, v in fp32.state_dict().items()}
    pipe = tiny_flux_pipeline(0).to(torch.bfloat16)
    pipe.vae.to(torch.float32)  # Easel's CPU policy for FLUX: a bf16 transformer, the VAE in float32
    state.units = state.parse([unit(model="tiny-flux", processor_res=64)], "txt2img")
    call = PipelineCall(kind="txt2img", pipeline=pipe, kwargs={"height": 64, "width": 64})
    used, kwargs = state.on_pipeline_call(call)
    assert type(used).__name__ == "FluxControlNetPipeline" and used.controlnet.dtype == torch.bfloat16
    assert used.controlnet is not fp32 and pipe.transformer.dtype == torch.bfloat16
    # the float32 control latents reach the bf16 ControlNet cast (diffusers would hand them over as they are)
    used(prompt="a", num_inference_steps=1, max_sequence_length=16, output_type="latent", **kwargs)
    for undo in call.cleanups:
        undo()
    assert not used.controlnet._forward_pre_hooks  # the cast is this call's only
    assert state.catalog.load(entry) is fp32 and fp32.dtype == torch.float32
    assert all(torch.equal(before[k], v) for k, v in fp32.state_dict().items())
