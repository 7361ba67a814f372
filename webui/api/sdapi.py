"""A1111-compatible routes under /sdapi/v1 (names, fields and shapes as A1111 v1.10).

This module holds the generation routes (txt2img, img2img, extras, png-info, progress, interrupt, skip); the model
and option routes live in sdapi_models.py, the read-only lists in sdapi_info.py. All of them are thin: they
validate at the edge and call the Application's services.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from pydantic import BaseModel

from webui.api.params import decode_img2img_inputs
from webui.api.schemas import ImageResponse, PngInfoRequest, PngInfoResponse, ProgressResponse, ProgressState
from webui.api.interrogate import add_interrogate_routes
from webui.api.sdapi_extras import add_extras_routes
from webui.api.sdapi_info import add_info_routes
from webui.api.sdapi_models import add_model_routes
from webui.downloads.missing import missing_models
from webui.errors import InvalidRequest
from webui.generation.requests import GenerationResult, Img2ImgRequest, Txt2ImgRequest
from webui.infotext import parse_infotext, read_image_infotext
from webui.outputs import encode_png_base64
from webui.security import load_image_field

if TYPE_CHECKING:
    from webui.app import Application

__all__ = [
    "ImageResponse",
    "PngInfoRequest",
    "PngInfoResponse",
    "ProgressResponse",
    "ProgressState",
    "build_sdapi_router",
    "image_response",
]


def image_response(
    req: BaseModel, result: GenerationResult | None, send_images: bool, parameters: dict[str, Any] | None = None
) -> ImageResponse:
    """A1111's {images, parameters, info}. An interrupted job answers with whatever it finished (maybe nothing)."""
    if parameters is None:
        parameters = req.model_dump(mode="json")
    if result is None:
        stopped: dict[str, Any] = {"interrupted": True, "images": 0}
        return ImageResponse(images=[], parameters=parameters, info=json.dumps(stopped))
    images = [encode_png_base64(img, text) for img, text in zip(result.images, result.infotexts)] if send_images else []
    info = dict(result.info)
    if result.warnings:
        info["warnings"] = result.warnings
    return ImageResponse(images=images, parameters=parameters, info=json.dumps(info, default=str))


def _img2img_parameters(req: Img2ImgRequest) -> dict[str, Any]:
    """A1111 leaves the (large) input images out of the echoed parameters unless include_init_images is set."""
    exclude = None if req.include_init_images else {"init_images", "mask"}
    data = req.model_dump(mode="json", exclude=exclude)
    if exclude:
        data.update({"init_images": None, "mask": None})
    return data


def build_sdapi_router(app: Application) -> APIRouter:
    r = APIRouter(prefix="/sdapi/v1", tags=["sdapi"])

    @r.post("/txt2img", response_model=ImageResponse)
    def txt2img(req: Txt2ImgRequest) -> ImageResponse:
        req = app.prepare(req, "txt2img")
        job = app.submit_txt2img(req, from_api=True)
        result = app.jobs.wait(job)
        return image_response(req, result, req.send_images)

    @r.post("/img2img", response_model=ImageResponse)
    def img2img(req: Img2ImgRequest) -> ImageResponse:
        req = app.prepare(req, "img2img")
        images, mask = decode_img2img_inputs(req, app)
        result = app.jobs.wait(app.submit_img2img(req, from_api=True, images=images, mask=mask))
        return image_response(req, result, req.send_images, _img2img_parameters(req))

    @r.post("/png-info", response_model=PngInfoResponse)
    def png_info(req: PngInfoRequest) -> PngInfoResponse:
        if not req.image:
            raise InvalidRequest("image is empty")
        image = load_image_field(req.image, app, field="image")
        text = read_image_infotext(image) or ""
        items = {k: v for k, v in image.info.items() if k != "parameters" and isinstance(v, (str, int, float))}
        parameters = parse_infotext(text) if text else {}
        return PngInfoResponse(
            info=text, items=items, parameters=parameters, missing_models=missing_models(app, parameters)
        )

    @r.get("/progress", response_model=ProgressResponse)
    def progress(skip_current_image: bool = False) -> ProgressResponse:
        job = app.jobs.current
        queued = len([j for j in app.jobs.queued() if j.kind in ("txt2img", "img2img", "extras")])
        if job is None or job.kind not in ("txt2img", "img2img"):
            state = ProgressState(
                skipped=False,
                interrupted=False,
                job="",
                job_count=queued,
                job_timestamp="0",
                job_no=0,
                sampling_step=0,
                sampling_steps=0,
            )
            return ProgressResponse(progress=0.0, eta_relative=0.0, state=state, current_image=None, textinfo=None)
        c = job.control
        # job_count/job_no count batches as A1111 does (an X/Y/Z plot's cells × batches), plus the jobs waiting
        state = ProgressState(
            skipped=c.skipped,
            interrupted=c.interrupted,
            job=job.id,
            job_count=queued + max(1, c.batch_count),
            job_timestamp=str(int(job.started_at or job.created_at)),
            job_no=c.batch_no,
            sampling_step=c.sampling_step,
            sampling_steps=c.sampling_steps,
        )
        image = None
        if not skip_current_image and c.current_image is not None:
            image = encode_png_base64(c.current_image)
        return ProgressResponse(
            progress=c.progress, eta_relative=c.eta(), state=state, current_image=image, textinfo=c.textinfo
        )

    @r.post("/interrupt", response_model=dict[str, Any])
    def interrupt() -> dict[str, Any]:
        app.jobs.interrupt()
        return {}

    @r.post("/skip", response_model=dict[str, Any])
    def skip() -> dict[str, Any]:
        app.jobs.skip()
        return {}

    add_extras_routes(r, app)
    add_interrogate_routes(r, app)
    add_model_routes(r, app)
    add_info_routes(r, app)
    return r
