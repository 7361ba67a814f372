"""FLUX.1 Fill checkpoints (variant "flux-fill", webui/models/family_flux.py): an inpainting model that runs on
diffusers' FluxFillPipeline, made over the checkpoint's own modules (flow_img2img.flow_pipeline → pipeline_over,
not from_pipe). The rest of the inpaint job (masks, "fill"/"original", the composite that keeps unmasked pixels) is
flow_img2img's.

What Fill does with each request, as a Forge user would expect of an inpainting model:
- img2img/inpaint with a mask: FluxFillPipeline with the mask; guidance is "Distilled CFG Scale" (BFL recommends 30
  for Fill; the request's value is used as it is, as for FLUX dev).
- img2img without a mask: inpainting of the whole image at the request's denoising strength, as A1111/Easel run an
  SD inpainting model's img2img (webui/generation/img2img.py: a white mask). Fill then sees nothing of the input but
  the noised latents it starts from, which is what "img2img" means at that strength; a 422 would only make users
  paint a full mask by hand.
- txt2img: refused (422). The plain FluxPipeline cannot run the 384-channel transformer, and Fill completes a
  picture around a mask rather than making one from nothing; whoever wants that anyway can send a blank image with
  a white mask to img2img (A1111's own trick for SD inpainting models, which stays visible that way).
- CFG scale above 1: FLUX dev adds real CFG with the negative prompt (true_cfg_scale); FluxFillPipeline has no such
  argument, so for Fill it is not used and the job says so in its warnings.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from webui.errors import InvalidRequest

VARIANT = "flux-fill"


def is_fill(model: Any) -> bool:
    return getattr(model.probe, "variant", "") == VARIANT


def refuse_txt2img(model: Any) -> None:
    if is_fill(model):
        raise InvalidRequest(f"{model.probe.label} inpaints: use img2img/inpaint with a mask")


def whole_image_mask(size: tuple[int, int]) -> Image.Image:
    """img2img without a mask on Fill: repaint everything (see the module docstring)."""
    return Image.new("L", size, 255)


def fill_guidance(extra: dict[str, Any], cfg_scale: float) -> list[str]:
    """Drops FLUX dev's real-CFG arguments FluxFillPipeline does not take; the warnings to report."""
    extra.pop("true_cfg_scale", None)
    extra.pop("negative_prompt", None)
    if cfg_scale > 1:
        return [
            f"CFG scale {cfg_scale:g} is not used by FLUX.1 Fill (diffusers' FluxFillPipeline has no real CFG); "
            "Distilled CFG Scale guides it"
        ]
    return []
