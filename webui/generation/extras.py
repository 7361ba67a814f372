"""The Extras tab's upscaling (A1111's "postprocessing"): scale by or to, upscaler 1 and a blended upscaler 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from webui.errors import InvalidRequest
from webui.generation.cost import area_text
from webui.generation.images import resize_image
from webui.generation.upscalers import find_upscaler, upscale_image
from webui.infotext import read_image_infotext


class ExtrasRequest(BaseModel):
    """A1111's ExtrasBaseRequest fields (face restoration: webui/faces/restore.py)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    resize_mode: int = Field(0, ge=0, le=1)  # 0 scale by, 1 scale to
    show_extras_results: bool = True
    gfpgan_visibility: float = Field(0, ge=0, le=1)
    codeformer_visibility: float = Field(0, ge=0, le=1)
    codeformer_weight: float = Field(0, ge=0, le=1)
    upscaling_resize: float = Field(2, gt=0, le=8)
    upscaling_resize_w: int = Field(512, ge=1, le=16384)
    upscaling_resize_h: int = Field(512, ge=1, le=16384)
    upscaling_crop: bool = True
    upscaler_1: Optional[str] = "None"
    upscaler_2: Optional[str] = "None"
    extras_upscaler_2_visibility: float = Field(0, ge=0, le=1)
    upscale_first: bool = False


class ExtrasSingleRequest(ExtrasRequest):
    image: str = ""


class ImageData(BaseModel):
    data: str
    name: str = ""


class ExtrasBatchRequest(ExtrasRequest):
    imageList: list[ImageData] = Field(default_factory=list)


def upscale_one(
    image: Image.Image, req: ExtrasRequest, models_dir: Path, max_pixels: int, loaded: dict | None = None
) -> tuple[Image.Image, dict]:
    """Returns the processed image and its postprocessing parameters (A1111's "Postprocess …" fields). `loaded` is
    the request's cache of upscaler models (see upscale_image)."""
    w, h = image.size
    if req.resize_mode == 0:
        tw, th = round(w * req.upscaling_resize), round(h * req.upscaling_resize)
    else:
        tw, th = req.upscaling_resize_w, req.upscaling_resize_h
    if tw * th > max_pixels:
        raise InvalidRequest(f"the upscaled size {tw}×{th} is over the limit of {area_text(max_pixels)}")
    up1 = find_upscaler(req.upscaler_1, models_dir)
    params: dict[str, Any] = {}
    if up1.name == "None" and (req.upscaler_2 in (None, "None") or req.extras_upscaler_2_visibility == 0):
        return image.convert("RGB"), params
    if req.resize_mode == 1 and req.upscaling_crop:
        # cover then centre-crop, so "scale to" keeps the aspect ratio
        scale = max(tw / w, th / h)
        big = upscale_image(image, up1, round(w * scale), round(h * scale), loaded)
        out = resize_image(1, big, tw, th)
    else:
        out = upscale_image(image, up1, tw, th, loaded)
    params["Postprocess upscale by" if req.resize_mode == 0 else "Postprocess upscale to"] = (
        req.upscaling_resize if req.resize_mode == 0 else f"{tw}x{th}"
    )
    params["Postprocess upscaler"] = up1.name
    if req.upscaler_2 not in (None, "None") and req.extras_upscaler_2_visibility > 0:
        up2 = find_upscaler(req.upscaler_2, models_dir)
        second = upscale_image(image, up2, tw, th, loaded)
        if second.size != out.size:
            second = second.resize(out.size, Image.LANCZOS)
        out = Image.blend(out, second, req.extras_upscaler_2_visibility)
        params["Postprocess upscaler 2"] = up2.name
        params["Postprocess upscaler 2 visibility"] = req.extras_upscaler_2_visibility
    return out, params


def postprocessing_text(params: dict) -> str:
    from webui.infotext import format_value

    return ", ".join(f"{k}: {format_value(v)}" for k, v in params.items())


def face_steps(req: ExtrasRequest, faces, detector: str, confidence: float) -> list[tuple[Callable, dict]]:
    """A1111's GFPGAN then CodeFormer postprocessing steps with their "… visibility" parameters (none at 0)."""
    steps = []
    if req.gfpgan_visibility > 0:
        steps.append(
            (
                faces.for_job("GFPGAN", visibility=req.gfpgan_visibility, detector=detector, confidence=confidence),
                {"GFPGAN visibility": req.gfpgan_visibility},
            )
        )
    if req.codeformer_visibility > 0:
        steps.append(
            (
                faces.for_job(
                    "CodeFormer",
                    visibility=req.codeformer_visibility,
                    weight=req.codeformer_weight,
                    detector=detector,
                    confidence=confidence,
                ),
                {"CodeFormer visibility": req.codeformer_visibility, "CodeFormer weight": req.codeformer_weight},
            )
        )
    return steps


def run_extras(
    images: list[tuple[Image.Image, str]],
    req: ExtrasRequest,
    *,
    models_dir: Path,
    outputs,
    save: bool,
    max_pixels: int,
    faces=None,
    face_detector: str = "",
    face_confidence: float = 0.3,
) -> tuple[list[Image.Image], list[str], list[str]]:
    """Upscale each (image, name), restoring faces before (or, with upscale_first, after) when asked; keep the
    input's own infotext and add a `postprocessing` text chunk."""
    results, texts, paths = [], [], []
    loaded: dict = {}  # upscaler models read once for the whole batch
    restorers = []
    if req.gfpgan_visibility > 0 or req.codeformer_visibility > 0:
        from webui.faces.restore import FaceRestorers

        restorers = face_steps(req, faces or FaceRestorers(models_dir), face_detector, face_confidence)
    for image, name in images:
        work, face_params = image, {}
        for restore, p in [] if req.upscale_first else restorers:
            work = restore(work)
            face_params.update(p)
        out, params = upscale_one(work, req, models_dir, max_pixels, loaded)
        for restore, p in restorers if req.upscale_first else []:
            out = restore(out)
            face_params.update(p)
        params.update(face_params)
        original = read_image_infotext(image)
        info = postprocessing_text(params)
        if save:
            path = outputs.save_image(
                out,
                kind="extras",
                seed=None,
                prompt="",
                infotext=original,
                extra_text={"postprocessing": info} if info else None,
            )
            paths.append(str(path))
        results.append(out)
        texts.append(info)
    return results, texts, paths
