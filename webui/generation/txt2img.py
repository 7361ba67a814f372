"""txt2img: one request → n_iter batches through the diffusers pipeline → images with A1111 infotext.

Reads top to bottom like a diffusers pipeline: resolve the model and sampler, seeds → noise, denoise (the
pipeline's own loop, with a per-step callback for progress, previews, interrupt and skip), decode, then save.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from webui import VERSION_TAG
from webui.errors import Interrupted, InvalidRequest, Skipped
from webui.generation.control import JobControl
from webui.generation.preview import make_preview
from webui.generation.requests import GenerationResult, Txt2ImgRequest
from webui.generation.seeds import batch_noise, fix_seed
from webui.infotext import build_infotext
from webui.models import samplers
from webui.models.manager import LoadedModel, ModelManager
from webui.prompts.encoder import encode_texts
from webui.settings import OptionsView


@dataclass
class GenerationServices:
    """The services one generation needs, passed explicitly (no globals)."""

    manager: ModelManager
    outputs: Any  # webui.outputs.OutputWriter
    hooks: Any = None  # extension hook dispatcher, when present


@dataclass
class Plan:
    """Everything resolved from a request before any compute: the same for every batch."""

    model: LoadedModel
    sampler: samplers.SamplerSpec
    schedule: str
    width: int
    height: int
    seeds: list[int]
    subseeds: list[int]
    clip_skip: int
    eta: float | None
    ensd: int


def plan_txt2img(req: Txt2ImgRequest, services: GenerationServices, opts: OptionsView) -> Plan:
    model = services.manager.load(opts.get("sd_model_checkpoint") or None)
    sampler, schedule = samplers.resolve(req.sampler, req.scheduler, default_sampler=opts.get("txt2img_default_sampler"))
    native = model.native_size
    width, height = req.width or native, req.height or native
    if width * height > int(opts.get("max_generation_pixels")):
        raise InvalidRequest(f"size {width}x{height} is over the limit of {opts.get('max_generation_pixels')} pixels "
                             f"(setting max_generation_pixels)")
    total = req.batch_size * req.n_iter
    seed, subseed = fix_seed(req.seed), fix_seed(req.subseed)
    seeds = [seed + (i if req.subseed_strength == 0 else 0) for i in range(total)]
    subseeds = [subseed + i for i in range(total)]
    return Plan(model=model, sampler=sampler, schedule=schedule, width=width, height=height, seeds=seeds,
                subseeds=subseeds, clip_skip=int(opts.get("CLIP_stop_at_last_layers")), eta=req.eta,
                ensd=int(opts.get("eta_noise_seed_delta")))


def infotext_params(req: Txt2ImgRequest, plan: Plan, index: int) -> dict[str, Any]:
    """The A1111 parameter line for image `index` of the job (field order is applied by build_infotext)."""
    m = plan.model
    params: dict[str, Any] = {
        "Steps": req.steps, "Sampler": plan.sampler.name, "Schedule type": plan.schedule, "CFG scale": req.cfg_scale,
        "Seed": plan.seeds[index], "Size": f"{plan.width}x{plan.height}", "Model hash": m.info.shorthash,
        "Model": m.info.infotext_name,
    }
    if m.vae is not None:
        params["VAE"] = m.vae.model_name
    if req.subseed_strength > 0:
        params["Variation seed"] = plan.subseeds[index]
        params["Variation seed strength"] = req.subseed_strength
    if req.seed_resize_from_w > 0 and req.seed_resize_from_h > 0:
        params["Seed resize from"] = f"{req.seed_resize_from_w}x{req.seed_resize_from_h}"
    if plan.clip_skip > 1:
        params["Clip skip"] = plan.clip_skip
    if plan.ensd and samplers.is_stochastic(plan.sampler):
        params["ENSD"] = plan.ensd
    params["Version"] = VERSION_TAG
    return params


def run_txt2img(req: Txt2ImgRequest, services: GenerationServices, opts: OptionsView, control: JobControl,
                *, save: bool, save_grid: bool, on_image: Callable[[Any, str, int], None] | None = None
                ) -> GenerationResult:
    plan = plan_txt2img(req, services, opts)
    pipe = plan.model.pipeline
    pipe.scheduler = samplers.build_scheduler(plan.model.scheduler_config, plan.sampler, plan.schedule)
    result = GenerationResult()
    control.job_count = req.n_iter
    vae_scale = pipe.vae_scale_factor
    shape = (pipe.unet.config.in_channels, plan.height // vae_scale, plan.width // vae_scale)
    resize_from = None
    if req.seed_resize_from_w > 0 and req.seed_resize_from_h > 0:
        resize_from = (req.seed_resize_from_h // vae_scale, req.seed_resize_from_w // vae_scale)
    preview_every = int(opts.get("show_progress_every_n_steps")) if opts.get("live_previews_enable") else -1
    all_images, infotexts = [], []
    for it in range(req.n_iter):
        if control.interrupted:
            break
        control.start_batch(it, req.steps)
        lo, hi = it * req.batch_size, (it + 1) * req.batch_size
        seeds = plan.seeds[lo:hi]
        latents = batch_noise(seeds, plan.subseeds[lo:hi], req.subseed_strength, shape, resize_from)
        generators = [torch.Generator("cpu").manual_seed(s + plan.ensd) for s in seeds]
        try:
            images = _denoise(pipe, req, plan, latents, generators, control, opts, preview_every)
        except Skipped:
            control.clear_skip()
            continue
        except Interrupted:
            result.interrupted = True
            break
        for j, image in enumerate(images):
            idx = lo + j
            text = build_infotext(req.prompt, req.negative_prompt, infotext_params(req, plan, idx))
            all_images.append(image)
            infotexts.append(text)
            if save:
                path = services.outputs.save_image(image, kind="txt2img", seed=plan.seeds[idx], prompt=req.prompt,
                                                   infotext=text, model_name=plan.model.info.infotext_name)
                result.paths.append(str(path))
            if on_image:
                on_image(image, text, idx)
    result.interrupted = result.interrupted or control.interrupted
    _finish(result, req, plan, all_images, infotexts, services, opts, save_grid)
    return result


def _denoise(pipe, req: Txt2ImgRequest, plan: Plan, latents, generators, control: JobControl, opts: OptionsView,
             preview_every: int):
    def on_step_end(_pipe, i, t, kwargs):
        control.step(i + 1)
        if control.interrupted:
            raise Interrupted("interrupted")
        if control.skipped:
            raise Skipped()
        if preview_every > 0 and (i + 1) % preview_every == 0 and i + 1 < req.steps:
            method, vae = opts.get("show_progress_type"), _pipe.vae
            control.offer_preview(i + 1, kwargs["latents"][0].detach().clone(),
                                  lambda latent: make_preview(method, vae, latent))
        return kwargs

    n = len(generators)
    extra: dict[str, Any] = {}
    if plan.eta is not None:
        extra["eta"] = plan.eta
    cond = encode_texts(pipe, [req.prompt, req.negative_prompt], plan.clip_skip)
    out = pipe(
        prompt_embeds=cond[:1].expand(n, -1, -1), negative_prompt_embeds=cond[1:].expand(n, -1, -1),
        num_inference_steps=req.steps, guidance_scale=req.cfg_scale, height=plan.height, width=plan.width,
        latents=latents.to(pipe.unet.device, pipe.unet.dtype), generator=generators,
        callback_on_step_end=on_step_end, **extra,
    )
    return out.images


def _finish(result: GenerationResult, req: Txt2ImgRequest, plan: Plan, images, infotexts, services, opts, save_grid):
    from webui.outputs import make_grid

    index_of_first = 0
    if len(images) > 1 and save_grid and opts.get("grid_save"):
        grid = make_grid(images)
        text = infotexts[0]
        services.outputs.save_image(grid, kind="txt2img", seed=plan.seeds[0], prompt=req.prompt, infotext=text,
                                    grid=True, model_name=plan.model.info.infotext_name)
        if opts.get("return_grid"):
            images, infotexts = [grid] + images, [text] + infotexts
            index_of_first = 1
    result.images, result.infotexts = images, infotexts
    m = plan.model
    n = len(plan.seeds)
    result.info = {
        "prompt": req.prompt, "all_prompts": [req.prompt] * n, "negative_prompt": req.negative_prompt,
        "all_negative_prompts": [req.negative_prompt] * n, "seed": plan.seeds[0], "all_seeds": plan.seeds,
        "subseed": plan.subseeds[0], "all_subseeds": plan.subseeds, "subseed_strength": req.subseed_strength,
        "width": plan.width, "height": plan.height, "sampler_name": plan.sampler.name, "scheduler": plan.schedule,
        "cfg_scale": req.cfg_scale, "steps": req.steps, "batch_size": req.batch_size, "restore_faces": False,
        "face_restoration_model": None, "sd_model_name": m.info.model_name, "sd_model_hash": m.info.shorthash,
        "sd_vae_name": m.vae.model_name if m.vae else None, "sd_vae_hash": None,
        "seed_resize_from_w": req.seed_resize_from_w, "seed_resize_from_h": req.seed_resize_from_h,
        "denoising_strength": req.denoising_strength, "extra_generation_params": {},
        "index_of_first_image": index_of_first, "infotexts": infotexts, "styles": req.styles,
        "job_timestamp": time.strftime("%Y%m%d%H%M%S"), "clip_skip": plan.clip_skip,
        "is_using_inpainting_conditioning": False, "version": VERSION_TAG,
    }
