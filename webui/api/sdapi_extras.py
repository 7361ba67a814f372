"""/sdapi/v1/extra-single-image and extra-batch-images: the Extras upscaling service, run through the job queue
(so it never shares the device with a generation)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from webui.api.schemas import ExtrasBatchImagesResponse, ExtrasSingleImageResponse
from webui.generation.extras import ExtrasBatchRequest, ExtrasRequest, ExtrasSingleRequest, run_extras
from webui.generation.requests import GenerationResult
from webui.outputs import encode_png_base64
from webui.security import load_image_field


def run_extras_job(app, images: list[tuple[Any, str]], req: ExtrasRequest) -> GenerationResult:
    """Run the Extras service on the queue: `application.extras(req, images)` when the Application offers it,
    otherwise the service function in a queued job of kind "extras"."""
    service = getattr(app, "extras", None)
    if callable(service):
        out, texts, paths = service(req, images)
    else:
        def work(job):
            return run_extras(images, req, models_dir=app.paths.models_dir, outputs=app.outputs, save=False,
                              max_pixels=int(app.options.get("max_generation_pixels")))

        out, texts, paths = app.jobs.run("extras", {"upscaler_1": req.upscaler_1, "count": len(images)}, work)
    return GenerationResult(images=out, infotexts=texts, paths=paths, info={"html_info": "<br>".join(texts)})


def _html(result: GenerationResult) -> str:
    return str(result.info.get("html_info", "")) if result.info else ""


def add_extras_routes(r: APIRouter, app) -> None:
    @r.post("/extra-single-image", response_model=ExtrasSingleImageResponse)
    def extra_single_image(req: ExtrasSingleRequest) -> ExtrasSingleImageResponse:
        image = load_image_field(req.image, app, field="image")
        result = run_extras_job(app, [(image, "")], req)
        return ExtrasSingleImageResponse(html_info=_html(result),
                                         image=encode_png_base64(result.images[0]) if result.images else None)

    @r.post("/extra-batch-images", response_model=ExtrasBatchImagesResponse)
    def extra_batch_images(req: ExtrasBatchRequest) -> ExtrasBatchImagesResponse:
        images = [(load_image_field(f.data, app, field=f"imageList[{i}].data"), f.name)
                  for i, f in enumerate(req.imageList)]
        result = run_extras_job(app, images, req)
        return ExtrasBatchImagesResponse(html_info=_html(result),
                                         images=[encode_png_base64(i) for i in result.images])
