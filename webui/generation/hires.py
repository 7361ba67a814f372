"""Hires fix: a txt2img first pass at the base size, an upscale (latent or pixel), then an img2img pass at the
target size, as A1111 does. The second pass reuses the same seeds."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from webui.errors import InvalidRequest
from webui.generation.cost import area_text
from webui.generation.processing import GenerationContext, Plan, vae_tiling_params
from webui.generation.requests import Txt2ImgRequest, hires_size
from webui.generation.upscalers import LATENT_MODES, find_upscaler, upscale_image, upscale_latents
from webui.models import samplers
from webui.generation.conditioning import embeddings_for, prepare, record_ti_hashes


@dataclass
class FirstPass:
    """One batch's first pass, as the hires pass takes it over."""

    pipe: Any  # the first pass's pipeline: its VAE decodes the latents for a pixel upscaler
    latents: torch.Tensor  # its output latents (output_type="latent")
    seeds: list[int]  # the batch's seeds, used again by the second pass
    cond: Any = None  # SD: its conditioning (the conditioner and its cache are reused for the same text encoder)


@dataclass
class HiresPlan:
    width: int
    height: int
    steps: int
    strength: float
    upscaler: str
    sampler: samplers.SamplerSpec
    schedule: str
    prompt: str
    negative: str
    checkpoint: str | None


def plan_hires(req: Txt2ImgRequest, plan: Plan, models_dir: Path, max_pixels: int) -> HiresPlan:
    w, h = hires_size(plan.width, plan.height, req.hr_scale, req.hr_resize_x, req.hr_resize_y)
    if w * h > max_pixels:
        raise InvalidRequest(
            f"hires size {w}×{h} is over the limit of {area_text(max_pixels)} (setting max_generation_pixels)"
        )
    name = req.hr_upscaler or "Latent"
    if name not in LATENT_MODES:
        find_upscaler(name, models_dir)  # validates, with a clear error for unknown or unusable ones
    if req.hr_sampler_name:
        sampler, schedule = samplers.resolve(req.hr_sampler_name, req.hr_scheduler)
    elif req.hr_scheduler:  # A1111 applies a hires schedule type on its own, with the first pass's sampler
        sampler, schedule = samplers.resolve(plan.sampler.name, req.hr_scheduler)
    else:
        sampler, schedule = plan.sampler, plan.schedule
    strength = 0.7 if req.denoising_strength is None else req.denoising_strength
    checkpoint = req.hr_checkpoint_name
    hp = HiresPlan(
        width=w,
        height=h,
        steps=req.hr_second_pass_steps or req.steps,
        strength=strength,
        upscaler=name,
        sampler=sampler,
        schedule=schedule,
        prompt=req.hr_prompt or req.prompt,
        negative=req.hr_negative_prompt or req.negative_prompt,
        checkpoint=checkpoint,
    )
    p = plan.extra_params
    p["Denoising strength"] = strength
    if req.hr_resize_x > 0 or req.hr_resize_y > 0:
        p["Hires resize"] = f"{w}x{h}"
    else:
        p["Hires upscale"] = req.hr_scale
    if req.hr_second_pass_steps:
        p["Hires steps"] = req.hr_second_pass_steps
    p["Hires upscaler"] = name
    if sampler.name != plan.sampler.name:
        p["Hires sampler"] = sampler.name
    if hp.schedule != plan.schedule:
        p["Hires schedule type"] = hp.schedule
    if req.hr_prompt and req.hr_prompt != req.prompt:
        p["Hires prompt"] = req.hr_prompt
    if req.hr_negative_prompt and req.hr_negative_prompt != req.negative_prompt:
        p["Hires negative prompt"] = req.hr_negative_prompt
    if checkpoint:
        p["Hires checkpoint"] = checkpoint
    return hp


def second_pass(ctx: GenerationContext, first: FirstPass) -> list:
    """The hires pass (`ctx.hires`) of one batch: PIL images at the hires size."""
    from webui.generation.img2img import derived_pipeline, effective_strength

    plan, req, services, opts, hp = ctx.plan, ctx.req, ctx.services, ctx.opts, ctx.hires
    assert hp is not None  # a job without Hires. fix has no second pass
    seeds, latents, first_pipe, first_cond = first.seeds, first.latents, first.pipe, first.cond
    model = services.manager.load(hp.checkpoint) if hp.checkpoint else plan.model
    if model.probe.inpainting:
        raise InvalidRequest("hires fix on a 9-channel inpainting checkpoint is not supported")
    # the hires model in the job's runtime (another checkpoint: its UNet's precision and interrupt checks too, its
    # VAE's precision left as it is), with the VAE tiled for the hires size (the hires decode and the img2img encode
    # run at it)
    runtime = plan.runtime.at_size(hp.width, hp.height, len(seeds)).for_hires()
    if model is not plan.model:
        runtime = replace(runtime, vae_precision=None)
    if ctx.session is not None:
        ctx.session.add(model, runtime)
    plan.extra_params.update(vae_tiling_params(model.pipeline.vae, runtime))
    pipe = derived_pipeline(model, "img2img")
    pipe.scheduler = samplers.build_scheduler(model.scheduler_config, hp.sampler, hp.schedule)
    scale = pipe.vae_scale_factor
    if hp.upscaler in LATENT_MODES:
        image: Any = upscale_latents(latents, hp.upscaler, hp.height // scale, hp.width // scale)
    else:
        with torch.no_grad():
            decoded = first_pipe.vae.decode(latents / first_pipe.vae.config.scaling_factor).sample
        pil = first_pipe.image_processor.postprocess(decoded, output_type="pil")
        up = find_upscaler(hp.upscaler, services.models_dir)
        loaded: dict = {}  # a model upscaler is read once for the whole batch
        image = [upscale_image(im, up, hp.width, hp.height, loaded) for im in pil]
    n = len(seeds)
    # The same conditioner (and its cache) when the text encoder is the same; prompt editing follows the hires
    # pass's own step count, as in A1111.
    shared = first_cond.conditioner if model is plan.model else None
    if services.loras is not None and (model is not plan.model or req.hr_prompt):
        # the hires prompt (or checkpoint) may bring another LoRA set: apply it, and don't reuse the first pass's
        # conditioner, whose cache is keyed by text only
        services.loras.apply_prompt(model, req.hr_prompt or req.prompt)
        shared = None
    cond = prepare(
        pipe,
        hp.prompt,
        hp.negative,
        req.steps,
        plan.clip_skip,
        opts,
        hires_steps=hp.steps,
        conditioner=shared,
        embeddings=embeddings_for(services, pipe) if shared is None else None,
    )
    record_ti_hashes(plan, services, first_cond, cond)
    kwargs: dict[str, Any] = {"eta": plan.eta} if plan.eta is not None else {}
    assert ctx.callback is not None  # set by the first pass before its hires pass
    return cond.run(
        pipe,
        n,
        ctx.callback,
        hooks=services.hooks,
        kind="txt2img",
        hires=True,
        image=image,
        num_inference_steps=hp.steps,
        strength=effective_strength(hp.strength, hp.steps),
        guidance_scale=req.cfg_scale,
        generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
        **kwargs,
    ).images
