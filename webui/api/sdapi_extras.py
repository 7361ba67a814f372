"""/sdapi/v1/extra-single-image and extra-batch-images: the Extras upscaling service, run through the job queue
(so it never shares the device with a generation)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from webui.api.schemas import ExtrasBatchImagesResponse, ExtrasSingleImageResponse
from webui.generation.extras import ExtrasBatchRequest, ExtrasRequest, ExtrasSingleRequest
from webui.generation.requests import GenerationResult
from webui.outputs import encode_png_base64
from webui.security import load_image_field

if TYPE_CHECKING:
    from webui.app import Application


def run_extras_job(app: Application, images: list[tuple[Any, str]], req: ExtrasRequest) -> GenerationResult:
    """Run the Extras service on the queue (`Application.extras`)."""
    out, texts, paths = app.extras(req, images)
    return GenerationResult(images=out, infotexts=texts, paths=paths, info={"html_info": "<br>".join(texts)})


def _html(result: GenerationResult) -> str:
    return str(result.info.get("html_info", "")) if result.info else ""


def add_extras_routes(r: APIRouter, app: Application) -> None:
    @r.post("/extra-single-image", response_model=ExtrasSingleImageResponse)
    def extra_single_image(req: ExtrasSingleRequest) -> ExtrasSingleImageResponse:
        image = load_image_field(req.image, app, field="image")
        result = run_extras_job(app, [(image, "")], req)
        return ExtrasSingleImageResponse(
            html_info=_html(result), image=encode_png_base64(result.images[0]) if result.images else None
        )

    @r.post("/extra-batch-images", response_model=ExtrasBatchImagesResponse)
    def extra_batch_images(req: ExtrasBatchRequest) -> ExtrasBatchImagesResponse:
        images = [
            (load_image_field(f.data, app, field=f"imageList[{i}].data"), f.name) for i, f in enumerate(req.imageList)
        ]
        result = run_extras_job(app, images, req)
        return ExtrasBatchImagesResponse(html_info=_html(result), images=[encode_png_base64(i) for i in result.images])
