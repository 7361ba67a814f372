"""What txt2img and img2img share after planning (webui/generation/plan.py: make_plan): the batch loop of one job
(run inside the model runtime's context: webui/models/runtime.py; seeds, skip, interrupt, infotext, saving), the
per-step callback, and A1111's info dict."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from webui import VERSION_TAG
from webui.errors import Interrupted, Skipped
from webui.generation.control import JobControl
from webui.generation.estimate import step_sample
from webui.generation.plan import (
    GenerationServices,
    Plan,
    apply_loras,
    make_plan,
    plan_face_restoration,
    speed_preset_params,
    speed_presets,
    too_small,
    vae_tiling_params,
)
from webui.generation.preview import PreviewSources, make_preview
from webui.generation.requests import GenerationResult, Txt2ImgRequest
from webui.infotext import build_infotext
from webui.models import samplers
from webui.models.runtime import RuntimeSession
from webui.settings import OptionsView

if TYPE_CHECKING:
    from webui.generation.hires import HiresPlan

# the planning names, where the generation modules and extensions have always imported them from
__all__ = [
    "GenerationContext",
    "GenerationServices",
    "Plan",
    "apply_loras",
    "finish",
    "infotext_params",
    "make_plan",
    "partial_images",
    "plan_face_restoration",
    "run_batches",
    "speed_preset_params",
    "speed_presets",
    "step_callback",
    "too_small",
    "vae_tiling_params",
]


@dataclass
class GenerationContext:
    """One job's generation: what every stage after make_plan reads (the batch loop, the hires pass)."""

    kind: str  # "txt2img" | "img2img": the outputs folder and the extensions' kind
    req: Txt2ImgRequest
    plan: Plan
    services: GenerationServices
    opts: OptionsView
    control: JobControl
    save: bool
    save_grid: bool
    callback: Callable | None = None  # the pipelines' callback_on_step_end (step_callback)
    hires: HiresPlan | None = None  # SD txt2img's Hires. fix: each batch's second pass (hires.second_pass)
    session: RuntimeSession | None = None  # the model runtime, open while the batches run


def infotext_params(req: Txt2ImgRequest, plan: Plan, index: int) -> dict[str, Any]:
    """The A1111 parameter line for image `index` of the job (build_infotext applies A1111's field order)."""
    m = plan.model
    params: dict[str, Any] = {
        "Steps": req.steps,
        "Sampler": plan.sampler.name,
        "Schedule type": plan.schedule,
        "CFG scale": req.cfg_scale,
        "Seed": plan.seeds[index],
        "Size": f"{plan.width}x{plan.height}",
        "Model hash": m.info.shorthash,
        "Model": m.info.infotext_name,
    }
    if req.batch_size > 1:  # A1111 writes both only for batches of 2 or more; the position counts from 0
        params["Batch size"], params["Batch pos"] = req.batch_size, index % req.batch_size
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
    params.update(plan.extra_params)
    params.update(plan.lora_params)
    params.update(plan.script_params)
    params["Precision"] = plan.precision  # honest metadata: the fast path changes pixels slightly
    params["Version"] = VERSION_TAG
    return params


def step_callback(
    control: JobControl,
    steps: int,
    opts: OptionsView,
    hooks: Any = None,
    kind: str = "txt2img",
    previews: PreviewSources | None = None,
) -> Callable:
    """diffusers' callback_on_step_end: progress, lazily decoded previews, interrupt (raises), skip (raises), and
    extensions' step_end hooks (which may replace the latents)."""
    every = int(opts.get("show_progress_every_n_steps")) if opts.get("live_previews_enable") else -1
    method = opts.get("show_progress_type")
    step_hooks = hooks if hooks is not None and hooks.wants_steps else None

    def on_step_end(pipe, i, t, kwargs):
        # second-order samplers (Heun, DPM2) and PLMS run more timesteps than steps: count what the loop runs
        control.sampling_steps = getattr(pipe, "_num_timesteps", None) or control.sampling_steps
        control.step(i + 1)
        control.time_step(step_sample(kwargs["latents"], pipe.vae_scale_factor), time.perf_counter())
        control.keep_latents(kwargs["latents"], pipe.vae)
        if control.interrupted:
            raise Interrupted("interrupted")
        if control.skipped:
            raise Skipped()
        if step_hooks is not None:
            from webui.extensions.api import StepInfo

            new = step_hooks.step_end(
                StepInfo(step=i + 1, total=control.sampling_steps, timestep=t, latents=kwargs["latents"], kind=kind)
            )
            if new is not None:
                kwargs["latents"] = new
        if every > 0 and (i + 1) % every == 0 and i + 1 < control.sampling_steps:
            vae = pipe.vae
            control.offer_preview(
                i + 1,
                kwargs["latents"][0].detach().clone(),
                lambda lat: make_preview(method, vae, lat, previews.get(vae) if previews else None),
            )
        return kwargs

    return on_step_end


def run_batches(
    ctx: GenerationContext, denoise: Callable[[int, int], list], steps_per_batch: int | None = None
) -> GenerationResult:
    """n_iter batches of batch_size: `denoise(lo, hi)` makes images lo..hi-1; infotext, saving and skip/interrupt
    handling are the same for every kind. The model runtime is configured for the whole job (runtime.py)."""
    req, plan, control = ctx.req, ctx.plan, ctx.control
    result = GenerationResult()
    result.warnings.extend(plan.warnings)
    control.job_count = req.n_iter
    images: list = []
    infotexts: list[str] = []
    cut = None  # (lo, hi) of a batch stopped by an interrupt
    ctx.services.previews.attach(plan.model.pipeline.vae, ctx.services.models_dir / "VAE-approx")
    with plan.model.runtime.configure(plan.runtime, control) as session:
        ctx.session = session
        for it in range(req.n_iter):
            if control.interrupted:
                break
            control.start_batch(it, steps_per_batch or req.steps)
            lo, hi = it * req.batch_size, (it + 1) * req.batch_size
            try:
                batch = denoise(lo, hi)
            except Skipped:
                control.clear_skip()
                continue
            except Interrupted:
                cut = (lo, hi)
                break
            _keep_batch(ctx, batch, lo, images, infotexts, result, ctx.save)
        session.stop_checks()  # the interrupt checks are off: the partial batch can be decoded
        if ctx.services.timer is not None:
            ctx.services.timer.record(plan.model.info.title, control.step_samples)
            control.step_samples.clear()
        if control.interrupted and cut is not None:
            save_partial = ctx.save and bool(ctx.opts.get("save_incomplete_images"))
            partial = partial_images(control, session.stopped_in, ctx.services.previews)
            _keep_batch(ctx, partial, cut[0], images, infotexts, result, save_partial)
        ctx.session = None
    result.interrupted = control.interrupted
    finish(ctx, result, images, infotexts)
    if ctx.services.hooks is not None:
        result.warnings.extend(ctx.services.hooks.take_failures())
    return result


def partial_images(control: JobControl, stopped_in: str | None, previews: PreviewSources | None = None) -> list:
    """What an interrupted batch returns (A1111 returns the current latents decoded): the VAE decodes them when
    that is quick (≤ 512² pixels in all, and the interrupt didn't come in the middle of that very decode), else the
    cheap linear preview does, so an Interrupt never waits on a long decode."""
    latents, vae = control.last_latents, control.last_vae
    if latents is None or vae is None:
        return []
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    pixels = latents.shape[0] * latents.shape[-1] * latents.shape[-2] * scale * scale
    method = "Full" if pixels <= 512 * 512 and stopped_in != "vae" else "Approx cheap"
    try:
        src = previews.get(vae) if previews is not None else None
        return [make_preview(method, vae, lat.detach(), src) for lat in latents]
    except Exception:  # a partial image is a courtesy; the interrupt itself must not fail
        return []


def _keep_batch(
    ctx: GenerationContext, batch: list, lo: int, images: list, infotexts: list, result: GenerationResult, save: bool
) -> None:
    """Infotext, extensions' after_image, and saving for the images lo.. of one batch."""
    req, plan, services = ctx.req, ctx.plan, ctx.services
    for j, image in enumerate(batch):
        idx = lo + j
        if plan.restore_faces is not None:
            image = plan.restore_faces(image)
        params = infotext_params(req, plan, idx)
        text = build_infotext(req.prompt, req.negative_prompt, params)
        image_ctx = None
        if services.hooks is not None:
            from webui.extensions.api import ImageContext

            from webui.generation.detail import inpaint_in_job

            image_ctx = ImageContext(
                index=idx,
                seed=plan.seeds[idx],
                prompt=req.prompt,
                negative_prompt=req.negative_prompt,
                infotext=text,
                kind=ctx.kind,
                params=params,
                inpaint=inpaint_in_job(ctx, idx),
            )
            image = services.hooks.after_image(image, image_ctx)
        images.append(image)
        infotexts.append(text)
        if save:
            path = services.outputs.save_image(
                image,
                kind=ctx.kind,
                seed=plan.seeds[idx],
                prompt=req.prompt,
                infotext=text,
                model_name=plan.model.info.infotext_name,
            )
            result.paths.append(str(path))
            if image_ctx is not None:
                services.hooks.image_saved(str(path), image_ctx)


def finish(ctx: GenerationContext, result: GenerationResult, images: list, infotexts: list[str]) -> None:
    from webui.outputs import make_grid

    req, plan, services, opts, kind = ctx.req, ctx.plan, ctx.services, ctx.opts, ctx.kind
    index_of_first = 0
    if len(images) > 1 and ctx.save_grid and opts.get("grid_save"):
        grid = make_grid(images)
        services.outputs.save_image(
            grid,
            kind=kind,
            seed=plan.seeds[0],
            prompt=req.prompt,
            infotext=infotexts[0],
            grid=True,
            model_name=plan.model.info.infotext_name,
        )
        if opts.get("return_grid"):
            images, infotexts = [grid] + images, [infotexts[0]] + infotexts
            index_of_first = 1
    result.images, result.infotexts = images, infotexts
    m, n = plan.model, len(plan.seeds)
    result.info = {
        "prompt": req.prompt,
        "all_prompts": [req.prompt] * n,
        "negative_prompt": req.negative_prompt,
        "all_negative_prompts": [req.negative_prompt] * n,
        "seed": plan.seeds[0],
        "all_seeds": plan.seeds,
        "subseed": plan.subseeds[0],
        "all_subseeds": plan.subseeds,
        "subseed_strength": req.subseed_strength,
        "width": plan.width,
        "height": plan.height,
        "sampler_name": plan.sampler.name,
        "scheduler": plan.schedule,
        "cfg_scale": req.cfg_scale,
        "steps": req.steps,
        "batch_size": req.batch_size,
        "restore_faces": plan.restore_faces is not None,
        "face_restoration_model": plan.extra_params.get("Face restoration"),
        "sd_model_name": m.info.infotext_name,
        "sd_model_hash": m.info.shorthash,
        "sd_vae_name": m.vae.model_name if m.vae else None,
        "sd_vae_hash": None,
        "seed_resize_from_w": req.seed_resize_from_w,
        "seed_resize_from_h": req.seed_resize_from_h,
        "denoising_strength": req.denoising_strength,
        "extra_generation_params": {**plan.extra_params, **plan.lora_params, **plan.script_params},
        "index_of_first_image": index_of_first,
        "infotexts": infotexts,
        "styles": req.styles,
        "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
        "clip_skip": plan.clip_skip,
        "is_using_inpainting_conditioning": bool(m.probe.inpainting),
        "version": VERSION_TAG,
    }
