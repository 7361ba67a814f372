"""A request resolved into a Plan before any compute: model and VAE loaded, the prompt's LoRAs applied, sampler, size
(refused when over the limit or too small for the UNet), seeds, precision, speed presets, face restoration and the
RuntimeConfig. Pure: it switches nothing on the model's objects (the runtime applies `plan.runtime`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from webui.errors import InvalidRequest
from webui.generation.cost import area_text
from webui.generation.cpu_backend import plan_cpu_attention, plan_cpu_backend
from webui.generation.native import native_size
from webui.generation.preview import PreviewSources
from webui.generation.requests import Img2ImgRequest, Txt2ImgRequest, size_or_native
from webui.generation.seeds import fix_seed
from webui.generation.slg import refuse_slg
from webui.models import samplers
from webui.models.manager import LoadedModel, ModelManager
from webui.models.precision import choose_precision
from webui.models.runtime import RuntimeConfig
from webui.models.vae_precision import choose_vae_precision
from webui.models.vae_tiling import tiling_wanted
from webui.settings import OptionsView


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


def make_plan(req: Txt2ImgRequest, services: GenerationServices, opts: OptionsView) -> Plan:
    """Resolve a request (model, sampler, size, seeds, precision, LoRAs, scripts' infotext). Loads the checkpoint
    and its VAE, and applies the prompt's LoRAs, but switches nothing else: the runtime applies `plan.runtime`."""
    model = services.manager.load(opts.get("sd_model_checkpoint") or None)
    services.manager.apply_vae(model, str(opts.get("sd_vae") or "Automatic"))  # a request may override sd_vae
    refuse_slg(req, f"is for SD 3/3.5; the checkpoint is {model.probe.label}")  # generation/slg.py
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
    plan_cpu_backend(req, plan, services, opts)  # after the LoRAs: the OpenVINO model is keyed by their set
    plan_cpu_attention(plan, services, opts)  # after the backend: a UNet on OpenVINO has nothing to route
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
