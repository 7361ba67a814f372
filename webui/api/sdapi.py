"""A1111-compatible routes under /sdapi/v1 (names, fields and shapes as A1111 v1.10)."""

from __future__ import annotations

import io
import json
from typing import Any

from fastapi import APIRouter, Body
from pydantic import BaseModel

from webui.errors import InvalidRequest
from webui.generation.requests import GenerationResult, Txt2ImgRequest
from webui.infotext import parse_infotext, read_image_infotext
from webui.models import samplers
from webui.outputs import decode_base64_image, encode_png_base64


class ImageResponse(BaseModel):
    images: list[str] | None
    parameters: dict[str, Any]
    info: str


class PngInfoRequest(BaseModel):
    image: str = ""


class PngInfoResponse(BaseModel):
    info: str
    items: dict[str, Any]
    parameters: dict[str, Any]


class ProgressState(BaseModel):
    skipped: bool
    interrupted: bool
    job: str
    job_count: int
    job_timestamp: str
    job_no: int
    sampling_step: int
    sampling_steps: int


class ProgressResponse(BaseModel):
    progress: float
    eta_relative: float
    state: ProgressState
    current_image: str | None
    textinfo: str | None


def image_response(req: BaseModel, result: GenerationResult, send_images: bool) -> ImageResponse:
    images = [encode_png_base64(img, text) for img, text in zip(result.images, result.infotexts)] if send_images else []
    info = dict(result.info)
    if result.warnings:
        info["warnings"] = result.warnings
    return ImageResponse(images=images, parameters=req.model_dump(mode="json"), info=json.dumps(info))


def build_sdapi_router(app) -> APIRouter:
    r = APIRouter(prefix="/sdapi/v1", tags=["sdapi"])

    @r.post("/txt2img", response_model=ImageResponse)
    def txt2img(req: Txt2ImgRequest) -> ImageResponse:
        job = app.submit_txt2img(req, from_api=True)
        result = app.jobs.wait(job)
        return image_response(req, result, req.send_images)

    @r.get("/progress", response_model=ProgressResponse)
    def progress(skip_current_image: bool = False) -> ProgressResponse:
        job = app.jobs.current
        queued = len(app.jobs.queued())
        if job is None or job.kind not in ("txt2img", "img2img"):
            state = ProgressState(skipped=False, interrupted=False, job="", job_count=queued, job_timestamp="0",
                                  job_no=0, sampling_step=0, sampling_steps=0)
            return ProgressResponse(progress=0.0, eta_relative=0.0, state=state, current_image=None, textinfo=None)
        c = job.control
        state = ProgressState(skipped=c.skipped, interrupted=c.interrupted, job=job.id, job_count=queued + 1,
                              job_timestamp=str(int(job.started_at or job.created_at)), job_no=c.job_no,
                              sampling_step=c.sampling_step, sampling_steps=c.sampling_steps)
        image = None
        if not skip_current_image and c.current_image is not None:
            image = encode_png_base64(c.current_image)
        return ProgressResponse(progress=c.progress, eta_relative=c.eta(), state=state, current_image=image,
                                textinfo=c.textinfo)

    @r.post("/interrupt")
    def interrupt() -> None:
        app.jobs.interrupt()

    @r.post("/skip")
    def skip() -> None:
        app.jobs.skip()

    @r.get("/options")
    def get_options() -> dict[str, Any]:
        return app.options.all()

    @r.post("/options")
    def set_options(changes: dict[str, Any] = Body(...)) -> None:
        app.set_options(changes)

    @r.get("/sd-models")
    def sd_models() -> list[dict[str, Any]]:
        return [{"title": i.title, "model_name": i.model_name, "hash": i.shorthash, "sha256": i.sha256,
                 "filename": str(i.path), "config": None} for i in app.catalog.list()]

    @r.post("/refresh-checkpoints")
    def refresh_checkpoints() -> None:
        app.models.refresh()

    @r.get("/sd-vae")
    def sd_vae() -> list[dict[str, Any]]:
        return [{"model_name": v.model_name, "filename": str(v.path)} for v in app.models.vaes]

    @r.post("/refresh-vae")
    def refresh_vae() -> None:
        app.models.refresh()

    @r.get("/samplers")
    def get_samplers() -> list[dict[str, Any]]:
        return samplers.api_samplers()

    @r.get("/schedulers")
    def get_schedulers() -> list[dict[str, Any]]:
        return samplers.api_schedulers()

    @r.post("/png-info", response_model=PngInfoResponse)
    def png_info(req: PngInfoRequest) -> PngInfoResponse:
        if not req.image:
            raise InvalidRequest("image is empty")
        image = decode_base64_image(req.image, max_pixels=int(app.options.get("max_image_pixels")))
        text = read_image_infotext(image) or ""
        items = {k: v for k, v in image.info.items() if k != "parameters" and isinstance(v, (str, int, float))}
        return PngInfoResponse(info=text, items=items, parameters=parse_infotext(text) if text else {})

    return r
