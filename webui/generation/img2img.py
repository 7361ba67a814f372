"""img2img and inpainting on diffusers' Img2Img/Inpaint pipelines (sharing the loaded components),
with A1111's extras around them: resize modes, masked-content modes, "only masked" crops, at least one denoising
step at any strength, and a final composite so pixels outside the mask are exactly the input's."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from webui.errors import InvalidRequest
from webui.generation.control import JobControl
from webui.generation.flow_call import pipeline_over
from webui.generation.images import composite, crop_region, expand_to_ratio, fill_masked, prepare_mask, resize_image
from webui.generation.processing import GenerationContext, GenerationServices, make_plan, run_batches, step_callback
from webui.generation.requests import GenerationResult, Img2ImgRequest
from webui.models import samplers
from webui.models.manager import LoadedModel
from webui.generation.conditioning import embeddings_for, prepare, record_ti_hashes
from webui.settings import OptionsView

MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")
_SHARED = ("vae", "text_encoder", "tokenizer", "unet", "scheduler", "text_encoder_2", "tokenizer_2")


def derived_pipeline(model: LoadedModel, kind: str):
    """The Img2Img/Inpaint pipeline over the checkpoint's own modules (made once, kept in sync with VAE swaps)."""
    from diffusers import (
        StableDiffusionImg2ImgPipeline,
        StableDiffusionInpaintPipeline,
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLInpaintPipeline,
    )

    if getattr(model.pipeline, "text_encoder_2", None) is not None:  # SDXL
        cls = {"img2img": StableDiffusionXLImg2ImgPipeline, "inpaint": StableDiffusionXLInpaintPipeline}[kind]
    else:
        cls = {"img2img": StableDiffusionImg2ImgPipeline, "inpaint": StableDiffusionInpaintPipeline}[kind]
    pipes = model.extra.setdefault("pipelines", {})
    pipe = pipes.get(kind)
    if pipe is None:
        # not from_pipe: its closing .to(float32) would upcast a half-precision checkpoint for good
        pipe = pipes[kind] = pipeline_over(cls, model.pipeline)
    for name in _SHARED:
        if hasattr(pipe, name) and getattr(pipe, name) is not getattr(model.pipeline, name, None):
            setattr(pipe, name, getattr(model.pipeline, name))
    return pipe


def inpaint_pipeline(model: LoadedModel):
    return derived_pipeline(model, "inpaint")


def effective_strength(strength: float, steps: int) -> float:
    """A1111 runs about steps × strength steps, and always at least one (diffusers would run zero and fail)."""
    return min(1.0, max(strength, 1.0001 / steps))


@torch.no_grad()  # a generation job never needs autograd: without this, prompt encoders outside the
# pipelines' own no_grad recorded a graph (FLUX's T5 took twice as long and kept its activations alive)
def run_img2img(
    req: Img2ImgRequest,
    init_images: list[Image.Image],
    mask: Image.Image | None,
    services: GenerationServices,
    opts: OptionsView,
    control: JobControl,
    *,
    save: bool,
    save_grid: bool,
) -> GenerationResult:
    if not init_images:
        raise InvalidRequest("init_images is empty: img2img needs an input image")
    from webui.generation.flow_txt2img import FLOW_FAMILIES

    model = services.manager.load(
        opts.get("sd_model_checkpoint") or None, tuple(opts.get("forge_additional_modules") or ())
    )
    if model.probe.family in FLOW_FAMILIES:  # SD 3/3.5, FLUX.1: transformer pipelines
        from webui.generation.flow_img2img import run_flow_img2img

        return run_flow_img2img(req, init_images, mask, services, opts, control, model, save=save, save_grid=save_grid)
    first = init_images[0]
    plan = make_plan(req, services, opts)
    model, w, h = plan.model, plan.width, plan.height
    strength = effective_strength(req.denoising_strength, req.steps)
    plan.extra_params["Denoising strength"] = req.denoising_strength
    full_res = mask is not None and req.inpaint_full_res
    base = first.convert("RGB") if full_res else resize_image(req.resize_mode, first, w, h)
    hard = blurred = None
    ctx = GenerationContext("img2img", req, plan, services, opts, control, save, save_grid)
    if mask is not None:
        hard, blurred = prepare_mask(mask, base.size, invert=bool(req.inpainting_mask_invert), blur=req.blur)
        plan.extra_params.update({"Mask blur": req.blur, "Masked content": MASKED_CONTENT[req.inpainting_fill]})
        if req.inpainting_mask_invert:
            plan.extra_params["Mask mode"] = "Inpaint not masked"
        if full_res:
            plan.extra_params.update(
                {"Inpaint area": "Only masked", "Masked area padding": req.inpaint_full_res_padding}
            )
        if hard.getextrema()[1] == 0:
            return _nothing_to_inpaint(ctx, base)
    kind = "inpaint" if (mask is not None or model.probe.inpainting) else "img2img"
    pipe = derived_pipeline(model, kind)
    pipe.scheduler = samplers.build_scheduler(model.scheduler_config, plan.sampler, plan.schedule)
    cond = prepare(
        pipe,
        req.prompt,
        req.negative_prompt,
        req.steps,
        plan.clip_skip,
        opts,
        embeddings=embeddings_for(services, pipe),
    )
    record_ti_hashes(plan, services, cond)
    callback = ctx.callback = step_callback(
        control, max(1, int(req.steps * strength)), opts, services.hooks, "img2img", services.previews
    )

    box = None
    work_image, work_mask = base, hard
    if full_res:
        assert blurred is not None and hard is not None  # "Only masked" needs a mask (checked before)
        region = crop_region(blurred, req.inpaint_full_res_padding)
        assert region is not None  # an all-black mask returned above
        box = expand_to_ratio(region, w / h, base.size)
        work_image = base.crop(box).resize((w, h), Image.LANCZOS)
        work_mask = hard.crop(box).resize((w, h), Image.LANCZOS)
    if mask is not None and req.inpainting_fill == 0:
        work_image = fill_masked(work_image, work_mask)

    def denoise(lo: int, hi: int) -> list[Image.Image]:
        seeds = plan.seeds[lo:hi]
        n = len(seeds)
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        kwargs: dict[str, Any] = dict(
            num_inference_steps=req.steps, guidance_scale=req.cfg_scale, strength=strength, generator=generators
        )
        if plan.eta is not None:
            kwargs["eta"] = plan.eta
        image_in: Any = work_image
        if mask is not None and req.inpainting_fill in (2, 3):
            image_in = _latent_fill(pipe, work_image, work_mask, req.inpainting_fill, seeds)
            kwargs["masked_image_latents"] = image_in  # latents in, so the pipeline must not mask pixels itself
        if kind == "inpaint":
            m = work_mask if work_mask is not None else Image.new("L", work_image.size, 255)
            out = cond.run(
                pipe,
                n,
                callback,
                hooks=services.hooks,
                kind="inpaint",
                image=image_in,
                mask_image=m,
                height=work_image.height,
                width=work_image.width,
                **kwargs,
            )
        else:
            out = cond.run(pipe, n, callback, hooks=services.hooks, kind="img2img", image=image_in, **kwargs)
        return [_paste_back(img, base, blurred, box) for img in out.images]

    return run_batches(ctx, denoise, steps_per_batch=max(1, int(req.steps * strength)))


def _latent_fill(pipe, image: Image.Image, mask: Image.Image, mode: int, seeds: list[int]) -> torch.Tensor:
    """A1111's "latent noise" (2) and "latent nothing" (3): the masked part of the encoded image is replaced by
    seeded noise or zeros before noising. diffusers' inpaint pipeline accepts image latents in place of an image."""
    x = pipe.image_processor.preprocess(image).to(pipe.vae.device, pipe.vae.dtype)
    with torch.no_grad():
        latent = pipe.vae.encode(x).latent_dist.mean * pipe.vae.config.scaling_factor
    lh, lw = latent.shape[-2:]
    m = torch.from_numpy(np.asarray(mask.resize((lw, lh), Image.BILINEAR), dtype=np.float32) / 255.0)
    m = (m > 0.5).to(latent.dtype)[None, None]
    fills = []
    for s in seeds:
        fill = (
            torch.zeros_like(latent[0])
            if mode == 3
            else torch.randn(
                latent.shape[1:], generator=torch.Generator("cpu").manual_seed(s + 1), dtype=torch.float32
            ).to(latent)
        )
        fills.append(latent[0] * (1 - m[0]) + fill * m[0])
    return torch.stack(fills)


def _paste_back(
    generated: Image.Image, base: Image.Image, blurred: Image.Image | None, box: tuple[int, int, int, int] | None
) -> Image.Image:
    if blurred is None:
        return generated
    if box is not None:  # only masked: the crop was generated at full resolution; scale it back into place
        canvas = base.copy()
        canvas.paste(generated.resize((box[2] - box[0], box[3] - box[1]), Image.LANCZOS), box[:2])
        generated = canvas
    return composite(base, generated, blurred)


def _nothing_to_inpaint(ctx: GenerationContext, base: Image.Image) -> GenerationResult:
    """An all-black mask leaves nothing to repaint: return the input (per requested image) and say so."""
    result = run_batches(ctx, lambda lo, hi: [base.copy() for _ in range(hi - lo)])
    result.warnings.append("the mask is empty (all black): nothing to inpaint, the input image was returned")
    return result
