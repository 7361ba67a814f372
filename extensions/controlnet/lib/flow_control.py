"""ControlNet for the flow-matching families on diffusers' own pipelines, one FlowFamily each:

- FLUX.1: FluxControlNetModel (InstantX/Shakker-Labs diffusers folders) through FluxControlNetPipeline,
  FluxControlNetImg2ImgPipeline and FluxControlNetInpaintPipeline; several units as a FluxMultiControlNetModel.
  diffusers' Img2Img/Inpaint ControlNet pipelines take no negative prompt, so real CFG (CFG scale above 1) with a
  ControlNet is txt2img only.
- SD 3/3.5: SD3ControlNetModel through StableDiffusion3ControlNetPipeline (SD3MultiControlNetModel for several units);
  txt2img only: diffusers has no SD 3 ControlNet img2img pipeline, and its inpainting one
  (StableDiffusion3ControlNetInpaintingPipeline) is for inpainting ControlNets on an empty canvas, not for Easel's
  img2img inpainting.

The units are the SD families' (units.py), their control maps made the same way (apply.control_map); ControlNetState
picks this module or apply.py by the pipeline's denoiser. What diffusers can't run is refused with ScriptError (a 422
from the API, a message in the UI) before anything is generated: another kind, a control mode other than Balanced
(diffusers' flow ControlNet pipelines have no guess mode, and a per-unit residual scaling as apply.UnitControlNet
does would be hand-written), union ControlNets (they need a mode index per unit sd-webui-controlnet's API does not
carry), SD 3 inpainting ControlNets, and single files (diffusers 0.42 has no single-file loader for these classes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from webui.extensions.api import ScriptError

from .apply import _on, control_map, generation_size, pipeline_over

FOLDER_HINT = "a diffusers folder (config.json + diffusion_pytorch_model.safetensors) in models/ControlNet/"


@dataclass(frozen=True)
class FlowFamily:
    name: str  # the checkpoint family (webui.models.families.Family value)
    label: str
    transformer_class: str
    model_class: str
    multi_class: str
    pipelines: dict[str, str]  # kind → diffusers pipeline class
    match: tuple[str, ...]  # config fields a ControlNet shares with the transformer (its residuals add to its blocks)
    true_cfg_kinds: tuple[str, ...] = ()  # kinds whose ControlNet pipeline takes a negative prompt (FLUX's real CFG)
    single_file_keys: tuple[str, ...] = ()  # key prefixes that mark a single-file ControlNet of this family


FAMILIES = {
    "flux": FlowFamily(
        name="flux",
        label="FLUX.1",
        transformer_class="FluxTransformer2DModel",
        model_class="FluxControlNetModel",
        multi_class="FluxMultiControlNetModel",
        pipelines={
            "txt2img": "FluxControlNetPipeline",
            "img2img": "FluxControlNetImg2ImgPipeline",
            "inpaint": "FluxControlNetInpaintPipeline",
        },
        match=("patch_size", "in_channels", "joint_attention_dim", "pooled_projection_dim", "axes_dims_rope"),
        true_cfg_kinds=("txt2img",),
        single_file_keys=("controlnet_x_embedder.", "controlnet_single_blocks.", "double_blocks."),
    ),
    "sd3": FlowFamily(
        name="sd3",
        label="SD 3",
        transformer_class="SD3Transformer2DModel",
        model_class="SD3ControlNetModel",
        multi_class="SD3MultiControlNetModel",
        pipelines={"txt2img": "StableDiffusion3ControlNetPipeline"},
        match=("patch_size", "in_channels", "joint_attention_dim", "pooled_projection_dim"),
        single_file_keys=("pos_embed_input.",),
    ),
}
BY_MODEL_CLASS = {f.model_class: f for f in FAMILIES.values()}
BALANCED = 0


def family_of_config(config: dict[str, Any]) -> str | None:
    """ "flux" / "sd3" for a FLUX/SD 3 ControlNet's config.json (its `_class_name`), else None."""
    spec = BY_MODEL_CLASS.get(str(config.get("_class_name") or ""))
    return spec.name if spec else None


def pipeline_family(pipe) -> str | None:
    """ "flux" / "sd3" when `pipe` denoises with a FLUX/SD 3 transformer, None for the UNet families."""
    transformer = getattr(pipe, "transformer", None)
    if transformer is None:
        return None
    name = type(getattr(transformer, "_orig_mod", transformer)).__name__  # also under torch.compile
    return next((f.name for f in FAMILIES.values() if f.transformer_class == name), None)


def single_file_family(keys) -> str | None:
    """The flow family a single file's tensor names belong to (any of them), else None."""
    for spec in FAMILIES.values():
        if any(k.startswith(spec.single_file_keys) for k in keys):
            return spec.name
    return None


def single_file_reason(name: str, family: str) -> str:
    label = FAMILIES[family].label
    return (
        f"{name} is a {label} ControlNet in a single file: diffusers loads {label} ControlNets only from {FOLDER_HINT}"
    )


def unsupported_reason(config: dict[str, Any]) -> str | None:
    """Why a FLUX/SD 3 ControlNet can't be used at all (whatever the checkpoint), else None."""
    family = family_of_config(config)
    if family == "flux" and config.get("num_mode") is not None:
        return "FLUX union ControlNets (a mode per unit) are not supported yet"
    if family == "sd3" and int(config.get("extra_conditioning_channels") or 0) > 0:
        return "SD 3 inpainting ControlNets are not supported yet (diffusers runs them on an empty canvas only)"
    return None


def _inner(config: Any) -> int:
    return int(config.get("num_attention_heads") or 0) * int(config.get("attention_head_dim") or 0)


def check_fits(name: str, config: dict[str, Any], transformer_config: Any, family: str) -> None:
    """Refuse a ControlNet whose residuals can't add to this transformer's blocks: another family, or the same
    family at other widths (a FLUX ControlNet of another size, a SD 3.5 Large one on Medium)."""
    spec = FAMILIES[family]
    cn_family = family_of_config(config)
    if cn_family != family:
        raise ScriptError(
            f"ControlNet {name!r} is for {cn_family or 'an SD 1.x/2.x/SDXL UNet'}, but the loaded checkpoint is "
            f"{spec.label}: pick a ControlNet made for {spec.label} ({spec.model_class})"
        )
    reason = unsupported_reason(config)
    if reason:
        raise ScriptError(f"ControlNet {name!r}: {reason}")

    def norm(v):
        return list(v) if isinstance(v, (list, tuple)) else v

    wrong = [
        f"{k} {norm(config.get(k))} ≠ {norm(transformer_config.get(k))}"
        for k in spec.match
        if config.get(k) is not None and norm(config.get(k)) != norm(transformer_config.get(k))
    ]
    if _inner(config) != _inner(transformer_config):
        wrong.append(f"width {_inner(config)} ≠ {_inner(transformer_config)}")
    if wrong:
        raise ScriptError(
            f"ControlNet {name!r} does not fit the loaded {spec.label} checkpoint ({', '.join(wrong)}): pick a "
            f"ControlNet made for this model size"
        )


def check_request(family: str, kind: str, units: list, *, hires: bool = False, true_cfg: bool = False) -> None:
    """Refuse, before the job runs, what diffusers has no pipeline for. `kind` is txt2img, img2img or inpaint;
    `hires`: a txt2img job with Hires. fix (its second pass is an img2img call); `true_cfg`: FLUX with CFG above 1."""
    spec = FAMILIES[family]
    units = [u for u in units if u.weight > 0 and u.guidance_end > u.guidance_start]
    if not units:
        return
    kinds = [kind, *(["img2img"] if hires else [])]
    for k in kinds:
        what = "the hires fix pass" if hires and k == "img2img" else k
        if k not in spec.pipelines:
            raise ScriptError(
                f"ControlNet with {spec.label} is available for {', '.join(spec.pipelines)} only: diffusers has no "
                f"{spec.label} ControlNet pipeline for {what}"
            )
        if true_cfg and k not in spec.true_cfg_kinds:
            raise ScriptError(
                f"ControlNet with {spec.label} {what} takes no negative prompt in diffusers: set CFG scale to 1 "
                f"(Distilled CFG Scale still applies)"
            )
    for u in units:
        if u.control_mode != BALANCED:
            raise ScriptError(
                f"ControlNet unit {u.index}: control mode {u.control_mode_name!r} is not available for {spec.label}; "
                f"use 'Balanced'"
            )


def controlled_call(
    pipe,
    kwargs: dict[str, Any],
    kind: str,
    units: list,
    *,
    family: str,
    load_model: Callable,
    modules: dict,
    run: Callable,
    hires: bool = False,
    after: Callable[[Callable[[], None]], None] | None = None,
    offload: Callable[..., None] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """(pipeline, kwargs) for one FLUX/SD 3 pipeline call with `units` applied, as apply.controlled_call does for
    the UNet families: units at weight 0 or with an empty window are left out (so they change nothing), the control
    maps are made at the call's size, and the family's ControlNet pipeline is made over the call's modules
    (apply.pipeline_over). `after` (PipelineCall.after) undoes what this call needs only; `offload`
    (PipelineCall.follow_offload) puts the ControlNets in the checkpoint's offloading for this call."""
    import diffusers

    if hires and kind == "txt2img":
        kind = "img2img"
    spec = FAMILIES[family]
    check_request(family, kind, units, true_cfg="true_cfg_scale" in kwargs)
    units = [u for u in units if u.weight > 0 and u.guidance_end > u.guidance_start]
    if not units:
        return pipe, kwargs
    if kind == "img2img" and _is_latent(pipe, kwargs.get("image")):
        kwargs = dict(kwargs, image=_pixels(pipe, kwargs["image"]))
    width, height = generation_size(pipe, kwargs, kind)
    init = kwargs.get("image") if kind != "txt2img" else None
    init = init[0] if isinstance(init, list) else init
    maps = []
    for u in units:
        source = u.image if u.image is not None else init
        if source is None or not hasattr(source, "convert"):
            raise ScriptError(f"ControlNet unit {u.index} is enabled without an image")
        maps.append(control_map(u, source, width, height, modules, run))
    transformer = pipe.transformer
    nets = [_on(load_model(u), transformer.device, transformer.dtype) for u in units]
    if offload is not None:
        offload(*nets)
    controlnet = nets[0] if len(nets) == 1 else getattr(diffusers, spec.multi_class)(nets)
    controlled = pipeline_over(getattr(diffusers, spec.pipelines[kind]), pipe, controlnet=controlnet)
    if pipe.vae.dtype != transformer.dtype:
        undo = cast_condition(nets)
        if after is not None:
            after(undo)  # PipelineCall.after: removed once this call ends

    def per_unit(values: list):
        return values[0] if len(nets) == 1 else values

    out = dict(
        kwargs,
        height=height,
        width=width,
        control_image=per_unit(maps),
        controlnet_conditioning_scale=per_unit([u.weight for u in units]),
        control_guidance_start=per_unit([u.guidance_start for u in units]),
        control_guidance_end=per_unit([u.guidance_end for u in units]),
    )
    return controlled, out


def _is_latent(pipe, image) -> bool:
    shape = getattr(image, "shape", None)
    return shape is not None and len(shape) == 4 and shape[1] == pipe.vae.config.latent_channels


def _pixels(pipe, latents):
    """Latents (a "Latent" hires upscaler's output) as the [0, 1] pixels diffusers' FLUX ControlNet img2img pipeline
    takes: unlike FluxImg2ImgPipeline it always VAE-encodes `image`. Hand-written for that gap: the FLUX VAE's own
    decode, undoing the pipeline's scaling and shift as FluxPipeline does before decoding."""
    import torch

    vae = pipe.vae
    with torch.no_grad():
        scaled = latents.to(vae.dtype) / vae.config.scaling_factor + (vae.config.shift_factor or 0.0)
        return pipe.image_processor.postprocess(vae.decode(scaled).sample, output_type="pt")


def cast_condition(nets: list) -> Callable[[], None]:
    """diffusers' FLUX/SD 3 ControlNet pipelines VAE-encode the control image at the VAE's dtype and hand the latents
    to the ControlNet as they are, which fails ("mat1 and mat2 must have the same dtype") when the VAE is float32
    beside a bf16 transformer (Easel's CPU policy for these families). A forward pre-hook on each ControlNet casts
    `controlnet_cond` to its dtype; returns the function that removes the hooks."""

    def cast(module, args, kwargs):
        cond = kwargs.get("controlnet_cond")
        if cond is None or cond.dtype == module.dtype:
            return None
        return args, {**kwargs, "controlnet_cond": cond.to(module.dtype)}

    handles = [net.register_forward_pre_hook(cast, with_kwargs=True) for net in nets]

    def undo() -> None:
        for handle in handles:
            handle.remove()

    return undo
