"""Hires fix for the flow-matching families (SD 3/3.5, FLUX.1), as for SD 1.x (hires.py): the txt2img pass at the
base size keeps its latents, they are upscaled (a "Latent" mode on the unpacked 16-channel latents, or decoded and
upscaled in pixels), and the family's own Img2Img pipeline (flow_img2img.flow_pipeline) runs the second pass at the
target size with the same seeds. The infotext fields are A1111's/Forge's (hires.plan_hires writes them)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from webui.errors import InvalidRequest
from webui.generation.flow_call import hooked_call
from webui.generation.hires import FirstPass, HiresPlan, plan_hires
from webui.generation.processing import GenerationContext, Plan
from webui.generation.requests import Txt2ImgRequest
from webui.generation.upscalers import LATENT_MODES, find_upscaler, upscale_image, upscale_latents
from webui.models.families import Family


def plan_flow_hires(
    req: Txt2ImgRequest, plan: Plan, ctx_models_dir, max_pixels: int, label: str, samplers: tuple[str, ...]
) -> HiresPlan:
    """hires.plan_hires with what these families allow: the same checkpoint, flow-matching Euler, sizes in
    multiples of 16 (FLUX packs 2×2 latents, SD 3 patches 2×2)."""
    if req.hr_checkpoint_name:
        raise InvalidRequest(f"a separate hires checkpoint is not available for {label}; use the same checkpoint")
    if req.hr_sampler_name and req.hr_sampler_name not in samplers:
        raise InvalidRequest(
            f"{label} samples with {', '.join(samplers)}; hires sampler {req.hr_sampler_name!r} is not available for it"
        )
    hp = plan_hires(req.model_copy(update={"hr_sampler_name": None}), plan, ctx_models_dir, max_pixels)
    hp.width, hp.height = max(16, hp.width - hp.width % 16), max(16, hp.height - hp.height % 16)
    if req.hr_scheduler not in (None, plan.schedule):
        raise InvalidRequest(
            f"hires schedule type {req.hr_scheduler!r}: the hires pass uses the first pass's "
            f"({plan.schedule}) for {label}"
        )
    return hp


def _unpacked(pipe, latents: torch.Tensor, height: int, width: int, flux: bool) -> torch.Tensor:
    """The first pass's latents as (batch, 16, h, w) in the transformer's space (FLUX's are packed 2×2)."""
    return pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor) if flux else latents


def _decode(pipe, latents: torch.Tensor) -> list:
    vae = pipe.vae
    with torch.no_grad():
        scaled = latents.to(vae.dtype) / vae.config.scaling_factor + (vae.config.shift_factor or 0.0)
        pixels = vae.decode(scaled).sample
    return pipe.image_processor.postprocess(pixels, output_type="pil")


def flow_second_pass(
    ctx: GenerationContext,
    first: FirstPass,
    guidance: dict[str, Any],
    scheduler_factory: Callable[[int], tuple[Any, dict[str, Any]]],
) -> list:
    """The hires pass (`ctx.hires`) of one batch (`first`): PIL images at the hires size. `guidance` is the first
    pass's guidance kwargs (a negative prompt in it means the hires pass takes the hires negative prompt too)."""
    from webui.generation.flow_img2img import flow_pipeline
    from webui.generation.flow_txt2img import prompt_kwargs, prompt_steps
    from webui.generation.img2img import effective_strength

    plan, hp = ctx.plan, ctx.hires
    assert hp is not None  # a job without Hires. fix has no second pass
    model, first_pipe, latents, seeds = plan.model, first.pipe, first.latents, first.seeds
    prompt, negative = hp.prompt, (hp.negative if "negative_prompt" in guidance else None)
    extra = {k: v for k, v in guidance.items() if k != "negative_prompt"}
    flux = model.probe.family == Family.FLUX
    lat = _unpacked(first_pipe, latents, plan.height, plan.width, flux)
    scale = first_pipe.vae_scale_factor
    if hp.upscaler in LATENT_MODES:
        image: Any = upscale_latents(lat.float(), hp.upscaler, hp.height // scale, hp.width // scale).to(lat.dtype)
    else:
        up = find_upscaler(hp.upscaler, ctx.services.models_dir)
        loaded: dict = {}
        image = [upscale_image(im, up, hp.width, hp.height, loaded) for im in _decode(first_pipe, lat)]
    pipe = flow_pipeline(model, "img2img")
    pipe.scheduler, sched_kwargs = scheduler_factory(hp.steps)
    n = len(seeds)
    batch = dict(extra, **sched_kwargs)
    encoded = prompt_kwargs(pipe, model, ctx.opts, prompt, negative, hp.steps, n, ctx.services)
    generators = [torch.Generator("cpu").manual_seed(s + plan.ensd) for s in seeds]
    call = dict(
        batch,
        image=image,
        height=hp.height,
        width=hp.width,
        strength=effective_strength(hp.strength, hp.steps),
        num_inference_steps=hp.steps,
        generator=generators,
        output_type="pil",
    )
    assert ctx.callback is not None  # set by the first pass
    hooked = hooked_call(ctx.services, pipe, "txt2img", call, ctx.callback, hires=True)
    with prompt_steps(pipe, encoded), hooked as (run, kw, cb):
        return run(callback_on_step_end=cb, **kw, **encoded.kwargs).images
