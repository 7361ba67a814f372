"""txt2img for the flow-matching families (SD 3/3.5, FLUX.1) on diffusers' own StableDiffusion3Pipeline /
FluxPipeline: seeds → noise (packed 2×2 for FLUX) → the pipeline's denoise loop → decode. The batch loop, infotext
and saving are the same as for SD 1.x (processing.run_batches).

Sampling is Forge's "Euler" with the "Simple", "Normal" or "Beta" schedule type and the checkpoint's shift or the
flow_shift setting (flow_sampling.py). FLUX dev takes "Distilled CFG Scale" (Forge's name; `distilled_cfg_scale` in
the API body) as the guidance embedder's input; a CFG scale above 1 adds real classifier-free guidance with the
negative prompt (FLUX: diffusers' true_cfg_scale), as Forge does. SD 3/3.5 take skip-layer guidance in txt2img
(`slg_scale`, `slg_layers`, `slg_start`, `slg_end`: slg.py). Prompts are encoded by Easel (prompt_kwargs):
A1111 weights on the CLIP branches, the plain text for T5 (webui/prompts/flow_prompts.py, plain.py).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch

from webui.errors import Interrupted, InvalidRequest, Skipped
from webui.generation.control import JobControl
from webui.generation.flow_call import hooked_call
from webui.generation.flow_sampling import SAMPLERS, SCHEDULES, make_scheduler
from webui.generation.cost import area_text
from webui.generation.cpu_backend import plan_cpu_attention, plan_cpu_backend
from webui.generation.native import native_size
from webui.generation.processing import GenerationContext, GenerationServices, Plan, apply_loras, run_batches
from webui.generation.requests import GenerationResult, Img2ImgRequest, Txt2ImgRequest, size_or_native
from webui.generation.seeds import batch_noise, fix_seed
from webui.generation.slg import check_pipeline, plan_slg, refuse_slg
from webui.models import samplers
from webui.models.device import DTYPE_NAMES
from webui.models.families import Family
from webui.models.family_flow import t5_max_length
from webui.prompts.flow_prompts import FlowPrompt, flow_prompt
from webui.prompts.plain import plain_text
from webui.settings import OptionsView

FLOW_FAMILIES = (Family.SD3, Family.FLUX)


def resolve_sampler(req: Txt2ImgRequest, label: str) -> tuple[samplers.SamplerSpec, str]:
    name = (req.sampler or "Euler").strip()
    if name not in SAMPLERS:
        raise InvalidRequest(
            f"{label} samples with {', '.join(SAMPLERS)} (flow matching); {name!r} is not available for it yet"
        )
    schedule = req.scheduler or "Simple"
    if schedule in ("Automatic", ""):
        schedule = "Simple"
    if schedule not in SCHEDULES:
        raise InvalidRequest(
            f"{label} uses the {', '.join(SCHEDULES)} schedule type; {schedule!r} is not available for it yet"
        )
    spec, _ = samplers.resolve("Euler", None)
    return spec, schedule


def make_flow_plan(req: Txt2ImgRequest, services: GenerationServices, opts: OptionsView, model) -> Plan:
    pipe = model.pipeline
    label = model.probe.label
    if isinstance(req, Img2ImgRequest):  # diffusers' SD 3 Img2Img/Inpaint pipelines take no SLG arguments
        refuse_slg(req, "is for SD 3/3.5 txt2img (and its hires fix's first pass): not for img2img or inpainting")
    sampler, schedule = resolve_sampler(req, label)
    width, height = size_or_native(req, native_size(model))
    multiple = pipe.vae_scale_factor * 2  # FLUX packs 2×2 latents, SD3 patches 2×2
    if width % multiple or height % multiple:
        raise InvalidRequest(f"{label} needs a width and height that are multiples of {multiple}; got {width}x{height}")
    if width * height > int(opts.get("max_generation_pixels")):
        raise InvalidRequest(
            f"size {width}×{height} is over the limit of "
            f"{area_text(int(opts.get('max_generation_pixels')))} (setting max_generation_pixels)"
        )
    total = req.batch_size * req.n_iter
    seed, subseed = fix_seed(req.seed), fix_seed(req.subseed)
    plan = Plan(
        model=model,
        sampler=sampler,
        schedule=schedule,
        width=width,
        height=height,
        seeds=[seed + (i if req.subseed_strength == 0 else 0) for i in range(total)],
        subseeds=[subseed + i for i in range(total)],
        clip_skip=1,
        eta=None,
        ensd=int(opts.get("eta_noise_seed_delta")),
        precision=DTYPE_NAMES.get(pipe.transformer.dtype, str(pipe.transformer.dtype)),
    )
    if model.probe.family == Family.FLUX and model.probe.configs["transformer"].get("guidance_embeds"):
        plan.extra_params["Distilled CFG Scale"] = req.distilled_cfg_scale
    shift = float(opts.get("flow_shift") or 0.0)
    if shift > 0:
        plan.extra_params["Shift"] = shift
    t5_length = t5_max_length(model, int(opts.get("t5_max_length") or 0))
    if t5_length != t5_max_length(model):  # only when not the model's own (FLUX dev 512, schnell and SD 3 256)
        plan.extra_params["T5 max length"] = t5_length
    for i, module in enumerate(model.probe.modules, 1):  # Forge's names for the separate parts in use
        plan.extra_params[f"Module {i}"] = module
    apply_loras(req, plan, services)  # <lora:…> tags → diffusers' FLUX/SD3 LoRA loaders, hot-swapped as for SD 1.x
    plan_cpu_backend(req, plan, services, opts)  # cpu_backend openvino: "ran on torch", said as for SD 1.x's fallbacks
    plan_cpu_attention(plan, services, opts)  # OpenVINO's attention kernel under the bf16 transformer (Automatic)
    if services.hooks is not None:  # always-on scripts' infotext fields (e.g. ControlNet 0), as make_plan adds them
        plan.script_params.update(services.hooks.infotext_params(req))
    return plan


def flow_step_callback(control: JobControl) -> Any:
    def on_step_end(pipe, i, t, kwargs):
        control.sampling_steps = getattr(pipe, "_num_timesteps", None) or control.sampling_steps
        control.step(i + 1)
        control.time_step(0, time.perf_counter())
        if control.interrupted:
            raise Interrupted("interrupted")
        if control.skipped:
            raise Skipped()
        return kwargs

    return on_step_end


def guidance_kwargs(req: Txt2ImgRequest, model, opts: OptionsView) -> dict[str, Any]:
    """The pipeline call's guidance arguments: FLUX dev's distilled guidance (schnell: none) plus real CFG with the
    negative prompt above CFG scale 1 (true_cfg_scale); SD3's CFG with the negative prompt; T5's length. Prompts go
    to the encoders as plain text (webui/prompts/plain.py)."""
    flux = model.probe.family == Family.FLUX
    dev = flux and model.probe.configs["transformer"].get("guidance_embeds")
    extra: dict[str, Any] = {"max_sequence_length": t5_max_length(model, int(opts.get("t5_max_length") or 0))}
    negative = plain_text(req.negative_prompt, req.steps)
    if flux:
        extra["guidance_scale"] = req.distilled_cfg_scale if dev else 0.0
        if req.cfg_scale > 1:
            extra.update(true_cfg_scale=req.cfg_scale, negative_prompt=negative or " ")
    else:
        extra.update(guidance_scale=req.cfg_scale, negative_prompt=negative)
    return extra


def prompt_kwargs(
    pipe,
    model,
    opts: OptionsView,
    prompt: str,
    negative: str | None,
    steps: int,
    n: int,
    services: Any = None,
    plan: Plan | None = None,
) -> FlowPrompt:
    """The pipeline call's prompt_embeds/pooled_prompt_embeds (and negatives, when CFG uses `negative`) for `n`
    images: A1111 weights and editing on the CLIP branches, plain text for T5 (webui/prompts/flow_prompts.py). With
    --lowram the encoders' weights are read from their files for this encoding only (webui/models/lowram.py). Run
    the pipeline inside `prompt_steps(pipe, result)` so an edited prompt's text changes at its steps. With
    `services`, SD 3's CLIP branches take textual-inversion embeddings and `plan` gets their "TI hashes"."""
    from webui.generation.conditioning import embeddings_for

    flux = model.probe.family == Family.FLUX
    embeddings = embeddings_for(services, pipe) if services is not None and not flux else None
    lowram = model.extra.get("lowram")
    with lowram.loaded() if lowram is not None else contextlib.nullcontext():
        out = flow_prompt(
            pipe,
            flux=flux,
            prompt=prompt,
            negative=negative,
            steps=steps,
            max_length=t5_max_length(model, int(opts.get("t5_max_length") or 0)),
            batch=n,
            emphasis=str(opts.get("emphasis") or "Original"),
            comma_padding_backtrack=int(opts.get("comma_padding_backtrack") or 0),
            embeddings=embeddings,
        )
    if out.used_embeddings and plan is not None:
        plan.extra_params["TI hashes"] = services.embeddings.ti_hashes(out.used_embeddings)
    return out


def prompt_steps(pipe, prompt: FlowPrompt) -> Any:
    """The context a pipeline call runs in: the per-step text inputs of an edited prompt (nothing for one text)."""
    from webui.models.runtime import replaced_inputs

    return contextlib.nullcontext() if prompt.static else replaced_inputs(pipe.transformer, prompt.replace)


def run_flow_txt2img(
    req: Txt2ImgRequest,
    services: GenerationServices,
    opts: OptionsView,
    control: JobControl,
    model,
    *,
    save: bool,
    save_grid: bool,
) -> GenerationResult:
    plan = make_flow_plan(req, services, opts, model)
    slg = plan_slg(req, model, plan)  # {} when off: the call is the one without SLG
    pipe = model.pipeline
    flux = model.probe.family == Family.FLUX

    def new_scheduler(steps: int):
        return make_scheduler(model.scheduler_config, plan.schedule, float(opts.get("flow_shift") or 0.0), steps)

    pipe.scheduler, sched_kwargs = new_scheduler(req.steps)
    scale = pipe.vae_scale_factor
    channels = pipe.transformer.config.in_channels // (4 if flux else 1)
    lat_h, lat_w = plan.height // scale, plan.width // scale
    resize_from = None
    if req.seed_resize_from_w > 0 and req.seed_resize_from_h > 0:
        resize_from = (req.seed_resize_from_h // scale, req.seed_resize_from_w // scale)
    extra = guidance_kwargs(req, model, opts)
    callback = flow_step_callback(control)
    device, dtype = pipe.transformer.device, pipe.transformer.dtype
    hires = None
    if req.enable_hr:
        from webui.generation.flow_hires import flow_second_pass, plan_flow_hires
        from webui.generation.hires import FirstPass

        hires = plan_flow_hires(
            req, plan, services.models_dir, int(opts.get("max_generation_pixels")), model.probe.label, SAMPLERS
        )

    def denoise(lo: int, hi: int) -> list:
        seeds = plan.seeds[lo:hi]
        n = len(seeds)
        latents = batch_noise(seeds, plan.subseeds[lo:hi], req.subseed_strength, (channels, lat_h, lat_w), resize_from)
        if flux:
            latents = pipe._pack_latents(latents, n, channels, lat_h, lat_w)
        generators = [torch.Generator("cpu").manual_seed(s + plan.ensd) for s in seeds]
        batch = dict(extra, **sched_kwargs)
        negative = req.negative_prompt if batch.pop("negative_prompt", None) is not None else None
        encoded = prompt_kwargs(pipe, model, opts, req.prompt, negative, req.steps, n, services, plan)
        call = dict(
            batch,
            num_inference_steps=req.steps,
            height=plan.height,
            width=plan.width,
            latents=latents.to(device, dtype),
            generator=generators,
            output_type="latent" if hires else "pil",
            **slg,
        )
        with prompt_steps(pipe, encoded), hooked_call(services, pipe, "txt2img", call, callback) as (run, kw, cb):
            check_pipeline(run, kw)
            out = run(callback_on_step_end=cb, **kw, **encoded.kwargs).images
        if hires is None:
            return out
        return flow_second_pass(ctx, FirstPass(pipe, out, seeds), extra, new_scheduler)

    ctx = GenerationContext(
        "txt2img", req, plan, services, opts, control, save, save_grid, callback=callback, hires=hires
    )
    return run_batches(ctx, denoise)
