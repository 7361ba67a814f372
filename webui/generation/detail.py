"""One inpaint of a finished image inside the job that made it: what `ImageContext.inpaint` gives an extension's
`postprocess_image` (the detailer, extensions/adetailer, as A1111's ADetailer runs a nested img2img there).

The inpaint is an ordinary img2img of this job's checkpoint ("only masked" by default: the mask's region is cut
out, inpainted at the job's size, scaled back and composited, so pixels outside the blurred mask are the input's),
with the job's request fields (prompt, sampler, steps, CFG, seed of this image) overridden by the caller's. No
extension script runs on it (no recursion, no ControlNet units), nothing is saved and faces are not restored twice.
Afterwards the job's LoRAs are put back (the inner prompt may name others) and the job's runtime parts are applied
again to its open session (the inner run's session switched them back to fp32 when it closed)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from PIL import Image
from pydantic import ValidationError

from webui.errors import InvalidRequest

INHERITED = (
    "prompt",
    "negative_prompt",
    "steps",
    "cfg_scale",
    "sampler_name",
    "scheduler",
    "subseed",
    "subseed_strength",
    "eta",
    "disable_extra_networks",
    "denoising_strength",
)
ALLOWED = {
    "prompt",
    "negative_prompt",
    "steps",
    "cfg_scale",
    "sampler_name",
    "scheduler",
    "denoising_strength",
    "mask_blur",
    "inpaint_full_res",
    "inpaint_full_res_padding",
    "width",
    "height",
    "seed",
    "inpainting_fill",
}


def inpaint_in_job(ctx: Any, index: int) -> Callable[..., Image.Image]:
    """`inpaint(image, mask, **fields) → image` for image `index` of the job `ctx` (a GenerationContext)."""

    def inpaint(image: Image.Image, mask: Image.Image, **fields: Any) -> Image.Image:
        from webui.generation.img2img import run_img2img
        from webui.generation.requests import Img2ImgRequest

        unknown = set(fields) - ALLOWED
        if unknown:
            raise InvalidRequest(f"inpaint: unknown field(s) {sorted(unknown)}; allowed: {sorted(ALLOWED)}")
        req, plan = ctx.req, ctx.plan
        values: dict[str, Any] = {k: getattr(req, k) for k in INHERITED if getattr(req, k, None) is not None}
        values.update(
            seed=plan.seeds[index],
            width=plan.width,
            height=plan.height,
            inpaint_full_res=True,
            batch_size=1,
            n_iter=1,
            restore_faces=False,
            save_images=False,
        )
        values.update({k: v for k, v in fields.items() if v is not None})
        try:
            sub = Img2ImgRequest(**values)
        except ValidationError as e:
            first = e.errors()[0]
            raise InvalidRequest(
                f"inpaint: {'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg')}"
            ) from None
        services = dataclasses.replace(ctx.services, hooks=None)
        try:
            result = run_img2img(sub, [image], mask, services, ctx.opts, ctx.control, save=False, save_grid=False)
        finally:
            _restore_loras(ctx)
            if ctx.session is not None:  # the inner job's runtime left its parts (bf16 switch, VAE memory) on
                ctx.session.add(ctx.plan.model, ctx.plan.runtime)  # exit: the outer job's again, undone at its end
        if not result.images:  # interrupted before anything was made: keep the image as it was
            return image
        return result.images[0]

    return inpaint


def _restore_loras(ctx: Any) -> None:
    loras = ctx.services.loras
    if loras is None:
        return
    if ctx.req.disable_extra_networks:
        loras.prepare(ctx.plan.model, [])
    else:
        loras.apply_prompt(ctx.plan.model, ctx.req.prompt)
