"""txt2img: seeds → noise → the diffusers pipeline's own denoise loop → decode. Reads top to bottom like a
diffusers pipeline; the batch loop, infotext and saving live in processing.py."""

from __future__ import annotations

from typing import Any

import torch

from webui.generation.control import JobControl
from webui.generation.processing import GenerationContext, GenerationServices, make_plan, run_batches, step_callback
from webui.generation.requests import GenerationResult, Txt2ImgRequest
from webui.generation.seeds import batch_noise
from webui.models import samplers
from webui.generation.conditioning import embeddings_for, prepare, record_ti_hashes
from webui.settings import OptionsView


@torch.no_grad()  # a generation job never needs autograd: without this, prompt encoders outside the
# pipelines' own no_grad recorded a graph (FLUX's T5 took twice as long and kept its activations alive)
def run_txt2img(
    req: Txt2ImgRequest,
    services: GenerationServices,
    opts: OptionsView,
    control: JobControl,
    *,
    save: bool,
    save_grid: bool,
) -> GenerationResult:
    from webui.generation.flow_txt2img import FLOW_FAMILIES, run_flow_txt2img

    model = services.manager.load(
        opts.get("sd_model_checkpoint") or None, tuple(opts.get("forge_additional_modules") or ())
    )
    if model.probe.family in FLOW_FAMILIES:  # SD 3/3.5, FLUX.1: transformer pipelines
        from webui.generation.flow_fill import refuse_txt2img

        refuse_txt2img(model)  # FLUX.1 Fill inpaints only (422; flow_fill.py says why)
        return run_flow_txt2img(req, services, opts, control, model, save=save, save_grid=save_grid)
    plan = make_plan(req, services, opts)
    model = plan.model
    pipe = model.pipeline
    pipe.scheduler = samplers.build_scheduler(model.scheduler_config, plan.sampler, plan.schedule)
    if model.probe.inpainting:
        # A 9-channel inpainting UNet can't run the plain pipeline: A1111 runs txt2img on it as inpainting of a
        # blank image with a full mask, which the inpaint pipeline does at strength 1.
        from webui.generation.img2img import inpaint_pipeline

        pipe = inpaint_pipeline(model)
    scale = pipe.vae_scale_factor
    shape = (pipe.vae.config.latent_channels, plan.height // scale, plan.width // scale)
    resize_from = None
    if req.seed_resize_from_w > 0 and req.seed_resize_from_h > 0:
        resize_from = (req.seed_resize_from_h // scale, req.seed_resize_from_w // scale)
    cond = prepare(
        pipe,
        req.prompt,
        req.negative_prompt,
        req.steps,
        plan.clip_skip,
        opts,
        embeddings=embeddings_for(services, pipe),
        hires_steps=req.hr_second_pass_steps or req.steps if req.enable_hr else None,
    )
    record_ti_hashes(plan, services, cond)
    callback = step_callback(control, req.steps, opts, services.hooks, "txt2img", services.previews)
    extra: dict[str, Any] = {"eta": plan.eta} if plan.eta is not None else {}
    if model.probe.inpainting:
        from PIL import Image

        extra.update(
            image=Image.new("RGB", (plan.width, plan.height), (127, 127, 127)),
            mask_image=Image.new("L", (plan.width, plan.height), 255),
            strength=1.0,
        )

    hires = None
    if req.enable_hr:
        from webui.generation.hires import FirstPass, plan_hires, second_pass

        hires = plan_hires(req, plan, services.models_dir, int(opts.get("max_generation_pixels")))
    ctx = GenerationContext(
        "txt2img", req, plan, services, opts, control, save, save_grid, callback=callback, hires=hires
    )

    def denoise(lo: int, hi: int) -> list:
        seeds = plan.seeds[lo:hi]
        n = len(seeds)
        latents = batch_noise(seeds, plan.subseeds[lo:hi], req.subseed_strength, shape, resize_from)
        generators = [torch.Generator("cpu").manual_seed(s + plan.ensd) for s in seeds]
        out = cond.run(
            pipe,
            n,
            callback,
            hooks=services.hooks,
            kind="inpaint" if model.probe.inpainting else "txt2img",
            num_inference_steps=req.steps,
            guidance_scale=req.cfg_scale,
            height=plan.height,
            width=plan.width,
            latents=latents.to(pipe.unet.device, pipe.unet.dtype),
            generator=generators,
            output_type="latent" if hires else "pil",
            **extra,
        ).images
        if hires is None:
            return out
        return second_pass(ctx, FirstPass(pipe, out, seeds, cond))

    return run_batches(ctx, denoise)
