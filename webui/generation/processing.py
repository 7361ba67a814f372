"""What txt2img and img2img share: resolving a request into a Plan (pure: it switches nothing on the model), the
batch loop of one job (run inside the model runtime's context: webui/models/runtime.py; seeds, skip, interrupt,
infotext, saving), the per-step callback, and A1111's info dict."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from webui import VERSION_TAG
from webui.errors import Interrupted, InvalidRequest, Skipped
from webui.generation.control import JobControl
from webui.generation.cost import area_text
from webui.generation.estimate import step_sample
from webui.generation.native import native_size
from webui.generation.preview import PreviewSources, make_preview
from webui.generation.requests import GenerationResult, Img2ImgRequest, Txt2ImgRequest, size_or_native
from webui.generation.seeds import fix_seed
from webui.infotext import build_infotext
from webui.models import samplers
from webui.models.manager import LoadedModel, ModelManager
from webui.models.precision import choose_precision
from webui.models.runtime import RuntimeConfig, RuntimeSession
from webui.models.vae_precision import choose_vae_precision
from webui.models.vae_tiling import tiling_wanted
from webui.settings import OptionsView

if TYPE_CHECKING:
    from webui.generation.hires import HiresPlan


@dataclass
class GenerationServices:
    """The services one generation needs, passed explicitly (no globals)."""

    manager: ModelManager
    outputs: Any  # webui.outputs.OutputWriter
    models_dir: Path = Path("models")  # where upscaler model folders live
    hooks: Any = None  # extension hook dispatcher, when present
    loras: Any = None  # webui.lora.LoraService, when present
    embeddings: Any = None  # webui.prompts.embeddings.EmbeddingCatalog, when present
    timer: Any = None  # webui.generation.estimate.StepTimer: measured step times, for estimates
    faces: Any = None  # webui.faces.restore.FaceRestorers (one per app; made per job when absent)
    previews: PreviewSources = field(default_factory=PreviewSources)  # what live previews loaded/fitted per VAE


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
    precision: str = "fp32"
    extra_params: dict[str, Any] = field(default_factory=dict)  # kind-specific infotext fields
    lora_params: dict[str, Any] = field(default_factory=dict)  # "Lora hashes" (after the Hires fields, as A1111)
    script_params: dict[str, Any] = field(default_factory=dict)  # always-on scripts' infotext_params
    warnings: list[str] = field(default_factory=list)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)  # what the job asks of the model's objects
    restore_faces: Callable | None = None  # image → image (A1111's Restore faces), when asked for


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


def make_plan(req: Txt2ImgRequest, services: GenerationServices, opts: OptionsView) -> Plan:
    """Resolve a request (model, sampler, size, seeds, precision, LoRAs, scripts' infotext). Loads the checkpoint
    and its VAE, and applies the prompt's LoRAs, but switches nothing else: the runtime applies `plan.runtime`."""
    model = services.manager.load(opts.get("sd_model_checkpoint") or None)
    services.manager.apply_vae(model, str(opts.get("sd_vae") or "Automatic"))  # a request may override sd_vae
    sampler, schedule = samplers.resolve(
        req.sampler, req.scheduler, default_sampler=opts.get("txt2img_default_sampler")
    )
    width, height = size_or_native(req, native_size(model))
    if width * height > int(opts.get("max_generation_pixels")):
        raise InvalidRequest(
            f"size {width}×{height} is over the limit of "
            f"{area_text(int(opts.get('max_generation_pixels')))} (setting max_generation_pixels)"
        )
    pipe = model.pipeline
    if too_small(
        pipe.unet.config,
        height // pipe.vae_scale_factor,
        width // pipe.vae_scale_factor,
        req.batch_size * (2 if req.cfg_scale > 1 else 1),
    ):
        raise InvalidRequest(f"{width}x{height} is too small for this checkpoint; use a larger size")
    total = req.batch_size * req.n_iter
    seed, subseed = fix_seed(req.seed), fix_seed(req.subseed)
    precision = choose_precision(str(opts.get("cpu_precision")), services.manager.policy, pipe.unet)
    vae_setting = str(opts.get("cpu_vae_precision"))
    guard = services.manager.vae_bf16_guard
    vae_precision = choose_vae_precision(vae_setting, services.manager.policy, pipe.vae, guard)
    runtime = RuntimeConfig(
        precision=precision,
        compile=bool(opts.get("cpu_compile")),
        vae_precision=vae_precision,
        width=width,
        height=height,
        batch_size=req.batch_size,
        vae_tiling_min_pixels=int(opts.get("vae_tiling_min_pixels")),
        **speed_presets(req, model, opts),
    )
    plan = Plan(
        precision=precision,
        model=model,
        sampler=sampler,
        schedule=schedule,
        width=width,
        height=height,
        seeds=[seed + (i if req.subseed_strength == 0 else 0) for i in range(total)],
        subseeds=[subseed + i for i in range(total)],
        clip_skip=int(opts.get("CLIP_stop_at_last_layers")),
        eta=req.eta,
        ensd=int(opts.get("eta_noise_seed_delta")),
        runtime=runtime,
    )
    if vae_precision != "fp32" or (
        vae_setting == "fp32" and choose_vae_precision("Automatic", services.manager.policy, pipe.vae, guard) == "bf16"
    ):
        # honest metadata, as "Precision" for the UNet; an fp32 decode is named where Automatic would pick bf16,
        # so pasting the infotext back decodes in fp32 again
        plan.extra_params["VAE precision"] = vae_precision
    plan.extra_params.update(vae_tiling_params(pipe.vae, runtime))
    plan.extra_params.update(speed_preset_params(req, runtime))
    apply_loras(req, plan, services)
    plan_face_restoration(req, plan, services, opts)
    if services.hooks is not None:
        plan.script_params.update(services.hooks.infotext_params(req))
    return plan


def speed_presets(req: Txt2ImgRequest, model: Any, opts: OptionsView) -> dict[str, Any]:
    """The speed presets a job asks for (settings step_cache_interval, token_merging_ratio[_hr|_img2img]) as
    RuntimeConfig fields; none for a model family whose runtime doesn't run them (SD 3, FLUX)."""
    from webui.models import runtime as rt
    from webui.models.token_merge import available

    parts = rt.parts_for(model.probe.family)
    interval = int(opts.get("step_cache_interval"))
    ratio, ratio_hr = float(opts.get("token_merging_ratio")), float(opts.get("token_merging_ratio_hr"))
    if isinstance(req, Img2ImgRequest) and float(opts.get("token_merging_ratio_img2img")) > 0:
        ratio = float(opts.get("token_merging_ratio_img2img"))  # A1111: img2img's own ratio, when set, wins
    if (ratio > 0 or (ratio_hr > 0 and req.enable_hr)) and rt.token_merging in parts and not available():
        raise InvalidRequest(
            "token merging needs the tomesd package (pip install --no-deps -r requirements-nodeps.txt)"
        )
    return {
        "step_cache": interval if interval >= 2 and rt.step_cache in parts else 0,
        "token_merging": ratio if rt.token_merging in parts else 0.0,
        "token_merging_hr": ratio_hr if rt.token_merging in parts and req.enable_hr else 0.0,
    }


def speed_preset_params(req: Txt2ImgRequest, runtime: RuntimeConfig) -> dict[str, Any]:
    """Infotext of the speed presets: A1111's "Token merging ratio" (and "… hr" for a hires pass), Easel's
    "Step cache" (the interval)."""
    params: dict[str, Any] = {}
    if runtime.token_merging > 0:
        params["Token merging ratio"] = runtime.token_merging
    if runtime.token_merging_hr > 0:
        params["Token merging ratio hr"] = runtime.token_merging_hr
    if runtime.step_cache >= 2:
        params["Step cache"] = runtime.step_cache
    return params


def plan_face_restoration(req: Txt2ImgRequest, plan: Plan, services: GenerationServices, opts: OptionsView) -> None:
    """`restore_faces` (or the `face_restoration` option when the request doesn't say): the model and the face
    detector are loaded now, so a missing file fails the request before anything is generated."""
    wanted = req.restore_faces if req.restore_faces is not None else bool(opts.get("face_restoration"))
    if not wanted:
        return
    from webui.faces.restore import FaceRestorers

    faces = services.faces or FaceRestorers(services.models_dir)
    kind = str(opts.get("face_restoration_model"))
    plan.restore_faces = faces.for_job(
        kind,
        weight=float(opts.get("code_former_weight")),
        detector=str(opts.get("face_restoration_detector") or ""),
        confidence=float(opts.get("face_restoration_confidence")),
    )
    plan.extra_params["Face restoration"] = kind


def too_small(unet_config: Any, latent_h: int, latent_w: int, batch: int) -> bool:
    """True when some GroupNorm of the UNet would see a single value per group (torch refuses that): the latent
    halves at each of the UNet's levels (block_out_channels), the first block of a level still has the previous
    level's channels, and a group holds batch × channels/groups × h × w."""
    groups = int(getattr(unet_config, "norm_num_groups", None) or 32)
    h, w = latent_h, latent_w
    previous = None
    for channels in unet_config.block_out_channels:
        if batch * (min(channels, previous or channels) // groups) * h * w <= 1:
            return True
        h, w, previous = (h + 1) // 2, (w + 1) // 2, channels  # a stride-2 convolution with padding 1
    return False


def vae_tiling_params(vae: Any, runtime: RuntimeConfig) -> dict[str, Any]:
    """The infotext field of the VAE tiling the runtime will switch on for this size (vae_tiling.py)."""
    tiled = tiling_wanted(runtime.width, runtime.height, runtime.vae_tiling_min_pixels)
    return {"VAE tiling": True} if tiled and hasattr(vae, "enable_tiling") else {}


def apply_loras(req: Txt2ImgRequest, plan: Plan, services: GenerationServices) -> None:
    """<lora:…> tags of the positive prompt → adapters on plan.model, before anything is encoded (the text
    encoder's part changes the conditioning). No tags: every adapter off, so the output is the base model's."""
    if services.loras is None:
        return
    if req.disable_extra_networks:
        applied = services.loras.prepare(plan.model, [])
    else:
        _, applied = services.loras.apply_prompt(plan.model, req.prompt)
    plan.lora_params.update(applied.infotext_params)
    plan.warnings.extend(applied.warnings)


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
