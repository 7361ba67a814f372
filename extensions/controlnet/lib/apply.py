"""Turning parsed units into a diffusers ControlNet pipeline call: control maps (preprocessed, resized to the
generation's size with the unit's resize mode), the ControlNet (one, or a MultiControlNet), and the pipeline made
over the checkpoint's own modules (`pipeline_over`, as `from_pipe` makes it), with `controlnet_conditioning_scale`
and `control_guidance_start/end`."""

from __future__ import annotations

from typing import Any, Callable

from PIL import Image

from webui.extensions.api import ScriptError


def pixel_perfect_resolution(image: Image.Image, width: int, height: int, resize_mode: int) -> int:
    """sd-webui-controlnet's pixel perfect: the preprocessor resolution at which the map needs no rescaling."""
    k_h, k_w = height / image.height, width / image.width
    k = min(k_h, k_w) if resize_mode == 2 else max(k_h, k_w)
    return max(64, round(k * min(image.width, image.height)))


def fit(image: Image.Image, width: int, height: int, resize_mode: int) -> Image.Image:
    """0 Just Resize (stretch), 1 Crop and Resize (cover, centre crop), 2 Resize and Fill (fit, black bars)."""
    if image.size == (width, height):
        return image
    if resize_mode == 0:
        return image.resize((width, height), Image.BICUBIC)
    k = (max if resize_mode == 1 else min)(width / image.width, height / image.height)
    scaled = image.resize((max(1, round(image.width * k)), max(1, round(image.height * k))), Image.BICUBIC)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(scaled, ((width - scaled.width) // 2, (height - scaled.height) // 2))
    return canvas


def control_map(unit, source: Image.Image, width: int, height: int, modules: dict, run: Callable) -> Image.Image:
    res = (
        pixel_perfect_resolution(source, width, height, unit.resize_mode) if unit.pixel_perfect else unit.processor_res
    )
    detected = run(
        modules[unit.module], source, resolution=res, threshold_a=unit.threshold_a, threshold_b=unit.threshold_b
    )
    return fit(detected, width, height, unit.resize_mode)


PIPELINES = {  # (kind, sdxl) → diffusers class name
    ("txt2img", False): "StableDiffusionControlNetPipeline",
    ("img2img", False): "StableDiffusionControlNetImg2ImgPipeline",
    ("inpaint", False): "StableDiffusionControlNetInpaintPipeline",
    ("txt2img", True): "StableDiffusionXLControlNetPipeline",
    ("img2img", True): "StableDiffusionXLControlNetImg2ImgPipeline",
    ("inpaint", True): "StableDiffusionXLControlNetInpaintPipeline",
}
BALANCED, PROMPT, CONTROL = 0, 1, 2  # control modes, as units.CONTROL_MODES


def soft_scales(n: int) -> list[float]:
    """sd-webui-controlnet's soft injection: residual i of n (the mid block last) scaled by 0.825**(n-1-i), which
    is diffusers' guess-mode `torch.logspace(-1, 0, n)` (10**(-1/12) = 0.8254) — so the deep layers keep the
    control and the shallow ones give way to the prompt."""
    return [10 ** (-1 + i / (n - 1)) for i in range(n)] if n > 1 else [1.0]


def _unit_net_class():
    """A per-unit view of a (shared, cached) ControlNetModel that applies the unit's control mode to its residuals.
    diffusers has guess mode for the whole call only; sd-webui-controlnet sets the mode per unit, so mixed modes and
    "My prompt is more important" need this. Made lazily so importing this module needs no torch."""
    import torch
    from diffusers.models.modeling_utils import ModelMixin

    class UnitControlNet(ModelMixin):
        def __init__(self, net, *, control_mode: int, cfg: bool):
            super().__init__()
            self.net, self.control_mode, self.cfg = net, control_mode, cfg

        @property
        def config(self):  # the pipeline reads e.g. global_pool_conditions from each net's config
            return self.net.config

        def forward(self, *args, **kwargs):
            down, mid = self.net(*args, **{**kwargs, "return_dict": False})
            residuals = [*down, mid]
            scales = soft_scales(len(residuals))
            residuals = [r * s for r, s in zip(residuals, scales)]
            if self.control_mode == CONTROL and self.cfg:
                # cfg injection: the unconditional half (first in diffusers' CFG batch) gets no control, so CFG
                # amplifies it
                half = residuals[0].shape[0] // 2
                residuals = [torch.cat([torch.zeros_like(r[:half]), r[half:]]) for r in residuals]
            return tuple(residuals[:-1]), residuals[-1]

    return UnitControlNet


def _on(net, device, dtype):
    """`net` on the UNet's device and dtype, moved only when it isn't already (a no-op `.to()` still logs)."""
    return net if (net.device, net.dtype) == (device, dtype) else net.to(device=device, dtype=dtype)


def generation_size(pipe, kwargs: dict[str, Any], kind: str) -> tuple[int, int]:
    """(width, height) in pixels of this call: the explicit size, else the init image's (a PIL image or, in the
    hires pass with a latent upscaler, latents), else the model's native size."""
    if kwargs.get("width") and kwargs.get("height"):
        return int(kwargs["width"]), int(kwargs["height"])
    init = kwargs.get("image") if kind != "txt2img" else None
    init = init[0] if isinstance(init, (list, tuple)) and init else init
    if isinstance(init, Image.Image):
        return init.width, init.height
    if init is not None and hasattr(init, "shape") and len(init.shape) >= 3:
        return int(init.shape[-1]) * pipe.vae_scale_factor, int(init.shape[-2]) * pipe.vae_scale_factor
    native = pipe.unet.config.sample_size * pipe.vae_scale_factor
    return native, native


def controlled_call(
    pipe,
    kwargs: dict[str, Any],
    kind: str,
    units: list,
    *,
    load_model: Callable,
    modules: dict,
    run: Callable,
    hires: bool = False,
    offload: Callable[..., None] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """(pipeline, kwargs) for one pipeline call with `units` applied. `kind` is txt2img, img2img or inpaint;
    `kwargs` are the call's arguments (height/width, and image/mask_image for img2img and inpaint); in the hires
    pass (`hires`, an img2img call of a txt2img job) the control maps are remade at the hires size.
    `load_model(unit)` returns the unit's ControlNetModel (family-checked); `offload` (PipelineCall.follow_offload)
    puts the ControlNets in the checkpoint's offloading for this call."""
    import diffusers

    if hires and kind == "txt2img":
        kind = "img2img"
    # a unit at weight 0, or with an empty guidance window, contributes nothing: leave it out (diffusers refuses
    # start >= end), so such a generation is exactly the uncontrolled one
    units = [u for u in units if u.weight > 0 and u.guidance_end > u.guidance_start]
    if not units:
        return pipe, kwargs
    width, height = generation_size(pipe, kwargs, kind)
    init = kwargs.get("image") if kind != "txt2img" else None
    init = init[0] if isinstance(init, list) else init
    maps = []
    for u in units:
        source = u.image if u.image is not None else init
        if not isinstance(source, Image.Image):
            raise ScriptError(f"ControlNet unit {u.index} is enabled without an image")
        maps.append(control_map(u, source, width, height, modules, run))
    nets = [_on(load_model(u), pipe.unet.device, pipe.unet.dtype) for u in units]
    if offload is not None:
        offload(*nets)
    modes = [u.control_mode for u in units]
    guess = all(m == CONTROL for m in modes)  # diffusers' guess mode is exactly this, and skips the uncond half
    if guess or all(m == BALANCED for m in modes):
        controlnet = nets[0] if len(nets) == 1 else diffusers.MultiControlNetModel(nets)
    else:
        cfg = float(kwargs.get("guidance_scale", 7.5)) > 1
        view = _unit_net_class()
        controlnet = diffusers.MultiControlNetModel(
            [n if m == BALANCED else view(n, control_mode=m, cfg=cfg) for n, m in zip(nets, modes)]
        )
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    cls = getattr(diffusers, PIPELINES[(kind, sdxl)])
    controlled = pipeline_over(cls, pipe, controlnet=controlnet)
    single = not isinstance(controlnet, diffusers.MultiControlNetModel)

    def per_unit(values: list):
        return values[0] if single else values

    out = dict(
        kwargs,
        height=height,
        width=width,
        guess_mode=guess,
        controlnet_conditioning_scale=per_unit([u.weight for u in units]),
        control_guidance_start=per_unit([u.guidance_start for u in units]),
        control_guidance_end=per_unit([u.guidance_end for u in units]),
    )
    out["image" if kind == "txt2img" else "control_image"] = per_unit(maps)
    return controlled, out


def pipeline_over(cls, pipe, **extra):
    """A `cls` pipeline over `pipe`'s modules (and its config's constructor arguments) plus `extra` modules: diffusers'
    `from_pipe` without its closing `.to(dtype)`, which casts every shared module to its dtype argument (float32
    unless told) in place — upcasting a half-precision checkpoint for good — and raises on a GGUF-quantized transformer
    ("Casting a quantized model to a new dtype is unsupported"). Hand-written for that reason: the constructor is the
    one from_pipe calls."""
    import inspect

    wanted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    parts = {k: v for k, v in pipe.components.items() if k in wanted and k not in extra}
    config = {k: v for k, v in pipe.config.items() if k in wanted and k not in parts and k not in extra}
    made = cls(**config, **parts, **extra)
    made.set_progress_bar_config(disable=True)
    return made
