"""/sdapi/v1/interrogate (A1111): `{"image": base64, "model": "clip" | "deepdanbooru"}` → `{"caption": ...}`, run on
the job queue so it never shares the device with a generation (webui/interrogate/service.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from webui.security import load_image_field

if TYPE_CHECKING:
    from webui.app import Application


class InterrogateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    image: str = ""
    model: str = Field("clip", max_length=64)


class InterrogateResponse(BaseModel):
    caption: str


def add_interrogate_routes(r: APIRouter, app: Application) -> None:
    @r.post("/interrogate", response_model=InterrogateResponse)
    def interrogate(req: InterrogateRequest) -> InterrogateResponse:
        image = load_image_field(req.image, app, field="image")
        return InterrogateResponse(caption=app.interrogate(image, req.model))
