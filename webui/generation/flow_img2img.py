"""img2img and inpainting for the flow-matching families (SD 3/3.5, FLUX.1) on diffusers' own
FluxImg2ImgPipeline / FluxInpaintPipeline and StableDiffusion3Img2ImgPipeline / StableDiffusion3InpaintPipeline
(made over the checkpoint's modules: flow_call.pipeline_over); FLUX.1 Fill checkpoints on FluxFillPipeline
(flow_fill.py). A1111's extras that apply unchanged: resize modes, mask blur and invert, "fill"/"original" masked
content, at least one step at any strength, and the final composite that leaves pixels outside the mask exactly as
they were. Not yet for these families: "Only masked", "latent
noise"/"latent nothing", variation seeds (the pipelines draw the noise from the per-image seeded generators)."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from webui.errors import InvalidRequest
from webui.generation.control import JobControl
from webui.generation.flow_call import hooked_call, pipeline_over
from webui.generation.flow_fill import fill_guidance, is_fill, whole_image_mask
from webui.generation.flow_sampling import make_scheduler
from webui.generation.flow_txt2img import (
    flow_step_callback,
    guidance_kwargs,
    make_flow_plan,
    prompt_kwargs,
    prompt_steps,
)
from webui.generation.images import fill_masked, prepare_mask, resize_image
from webui.generation.processing import GenerationContext, GenerationServices, run_batches
from webui.generation.requests import GenerationResult, Img2ImgRequest
from webui.models.families import Family
from webui.settings import OptionsView

_SHARED = (
    "vae",
    "text_encoder",
    "tokenizer",
    "text_encoder_2",
    "tokenizer_2",
    "text_encoder_3",
    "tokenizer_3",
    "transformer",
    "scheduler",
)


def flow_pipeline(model, kind: str):
    """The Img2Img/Inpaint pipeline over the checkpoint's own modules (made once per model, kept in sync)."""
    from diffusers import (
        FluxFillPipeline,
        FluxImg2ImgPipeline,
        FluxInpaintPipeline,
        StableDiffusion3Img2ImgPipeline,
        StableDiffusion3InpaintPipeline,
    )

    classes = {
        Family.FLUX: {"img2img": FluxImg2ImgPipeline, "inpaint": FluxInpaintPipeline, "fill": FluxFillPipeline},
        Family.SD3: {"img2img": StableDiffusion3Img2ImgPipeline, "inpaint": StableDiffusion3InpaintPipeline},
    }
    pipes = model.extra.setdefault("pipelines", {})
    pipe = pipes.get(kind)
    if pipe is None:
        pipe = pipes[kind] = pipeline_over(classes[model.probe.family][kind], model.pipeline)  # not from_pipe: GGUF
    for name in _SHARED:
        if hasattr(pipe, name) and getattr(pipe, name) is not getattr(model.pipeline, name, None):
            setattr(pipe, name, getattr(model.pipeline, name))
    return pipe


def run_flow_img2img(
    req: Img2ImgRequest,
    init_images: list[Image.Image],
    mask: Image.Image | None,
    services: GenerationServices,
    opts: OptionsView,
    control: JobControl,
    model,
    *,
    save: bool,
    save_grid: bool,
) -> GenerationResult:
    from webui.generation.img2img import MASKED_CONTENT, _nothing_to_inpaint, _paste_back, effective_strength

    label = model.probe.label
    if req.enable_hr:
        raise InvalidRequest(f"hires fix is not available for {label} yet")
    if mask is not None and req.inpaint_full_res:
        raise InvalidRequest(f"'Only masked' inpainting is not available for {label} yet; use 'Whole picture'")
    if mask is not None and req.inpainting_fill in (2, 3):
        raise InvalidRequest(
            f"masked content {MASKED_CONTENT[req.inpainting_fill]!r} is not available for {label} "
            "yet; use 'fill' or 'original'"
        )
    plan = make_flow_plan(req, services, opts, model)
    w, h = plan.width, plan.height
    strength = effective_strength(req.denoising_strength, req.steps)
    plan.extra_params["Denoising strength"] = req.denoising_strength
    base = resize_image(req.resize_mode, init_images[0], w, h)
    ctx = GenerationContext("img2img", req, plan, services, opts, control, save, save_grid)
    hard = blurred = None
    if mask is not None:
        hard, blurred = prepare_mask(mask, base.size, invert=bool(req.inpainting_mask_invert), blur=req.blur)
        plan.extra_params.update({"Mask blur": req.blur, "Masked content": MASKED_CONTENT[req.inpainting_fill]})
        if req.inpainting_mask_invert:
            plan.extra_params["Mask mode"] = "Inpaint not masked"
        if hard.getextrema()[1] == 0:
            return _nothing_to_inpaint(ctx, base)
    fill = is_fill(model)
    kind = "inpaint" if mask is not None or fill else "img2img"
    pipe = flow_pipeline(model, "fill" if fill else kind)
    pipe.scheduler, sched_kwargs = make_scheduler(
        model.scheduler_config, plan.schedule, float(opts.get("flow_shift") or 0.0), req.steps
    )
    extra = dict(guidance_kwargs(req, model, opts), **sched_kwargs)
    if fill:
        plan.warnings.extend(fill_guidance(extra, req.cfg_scale))
    work_image = fill_masked(base, hard) if mask is not None and req.inpainting_fill == 0 else base
    if mask is not None or fill:
        extra["mask_image"] = hard if hard is not None else whole_image_mask(base.size)
    callback = ctx.callback = flow_step_callback(control)

    def denoise(lo: int, hi: int) -> list[Image.Image]:
        seeds = plan.seeds[lo:hi]
        n = len(seeds)
        batch: dict[str, Any] = dict(extra)
        negative = req.negative_prompt if batch.pop("negative_prompt", None) is not None else None
        encoded = prompt_kwargs(pipe, model, opts, req.prompt, negative, req.steps, n, services, plan)
        generators = [torch.Generator("cpu").manual_seed(s + plan.ensd) for s in seeds]
        call = dict(
            batch,
            image=work_image,
            height=h,
            width=w,
            strength=strength,
            num_inference_steps=req.steps,
            generator=generators,
            output_type="pil",
        )
        if fill:  # an input per image: given one, FluxFillPipeline samples all masked-image latents with the first
            # generator, and image i of a batch would differ from a single run with its seed
            call.update(image=[work_image] * n, mask_image=[call["mask_image"]] * n)
        with prompt_steps(pipe, encoded), hooked_call(services, pipe, kind, call, callback) as (run, kw, cb):
            out = run(callback_on_step_end=cb, **kw, **encoded.kwargs).images
        return [_paste_back(img, base, blurred, None) for img in out]

    return run_batches(ctx, denoise, steps_per_batch=max(1, int(req.steps * strength)))
