"""Turning parsed units into a diffusers ControlNet pipeline call: control maps (preprocessed, resized to the
generation's size with the unit's resize mode), the ControlNet (one, or a MultiControlNet), and the pipeline made
from the checkpoint's own via `from_pipe`, with `controlnet_conditioning_scale` and `control_guidance_start/end`."""

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
    res = pixel_perfect_resolution(source, width, height, unit.resize_mode) if unit.pixel_perfect \
        else unit.processor_res
    detected = run(modules[unit.module], source, resolution=res, threshold_a=unit.threshold_a,
                   threshold_b=unit.threshold_b)
    return fit(detected, width, height, unit.resize_mode)


PIPELINES = {  # (kind, sdxl) → diffusers class name
    ("txt2img", False): "StableDiffusionControlNetPipeline",
    ("img2img", False): "StableDiffusionControlNetImg2ImgPipeline",
    ("inpaint", False): "StableDiffusionControlNetInpaintPipeline",
    ("txt2img", True): "StableDiffusionXLControlNetPipeline",
    ("img2img", True): "StableDiffusionXLControlNetImg2ImgPipeline",
    ("inpaint", True): "StableDiffusionXLControlNetInpaintPipeline",
}


def controlled_call(pipe, kwargs: dict[str, Any], kind: str, units: list, *, load_model: Callable,
                    modules: dict, run: Callable) -> tuple[Any, dict[str, Any]]:
    """(pipeline, kwargs) for one pipeline call with `units` applied. `kind` is txt2img, img2img or inpaint;
    `kwargs` are the call's arguments (height/width, and image/mask_image for img2img and inpaint);
    `load_model(unit)` returns the unit's ControlNetModel (family-checked)."""
    import diffusers

    # a unit at weight 0, or with an empty guidance window, contributes nothing: leave it out (diffusers refuses
    # start >= end), so such a generation is exactly the uncontrolled one
    units = [u for u in units if u.weight > 0 and u.guidance_end > u.guidance_start]
    if not units:
        return pipe, kwargs
    if any(u.control_mode == 1 for u in units):
        raise ScriptError("control mode 'My prompt is more important' is not supported yet; use Balanced or "
                          "'ControlNet is more important'")
    guess = {u.control_mode == 2 for u in units}
    if len(guess) > 1:
        raise ScriptError("'ControlNet is more important' applies to the whole generation: set it on every enabled "
                          "unit or on none")
    width = int(kwargs.get("width") or pipe.unet.config.sample_size * pipe.vae_scale_factor)
    height = int(kwargs.get("height") or pipe.unet.config.sample_size * pipe.vae_scale_factor)
    init = kwargs.get("image") if kind != "txt2img" else None
    init = init[0] if isinstance(init, list) else init
    maps = []
    for u in units:
        source = u.image if u.image is not None else init
        if source is None:
            raise ScriptError(f"ControlNet unit {u.index} is enabled without an image")
        maps.append(control_map(u, source, width, height, modules, run))
    nets = [load_model(u) for u in units]
    dtype, device = pipe.unet.dtype, pipe.unet.device
    nets = [n.to(device=device, dtype=dtype) for n in nets]
    controlnet = nets[0] if len(nets) == 1 else diffusers.MultiControlNetModel(nets)
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    cls = getattr(diffusers, PIPELINES[(kind, sdxl)])
    controlled = cls.from_pipe(pipe, controlnet=controlnet)
    controlled.set_progress_bar_config(disable=True)
    one = len(units) == 1
    out = dict(kwargs, height=height, width=width, guess_mode=guess.pop(),
               controlnet_conditioning_scale=units[0].weight if one else [u.weight for u in units],
               control_guidance_start=units[0].guidance_start if one else [u.guidance_start for u in units],
               control_guidance_end=units[0].guidance_end if one else [u.guidance_end for u in units])
    out["image" if kind == "txt2img" else "control_image"] = maps[0] if one else maps
    return controlled, out
