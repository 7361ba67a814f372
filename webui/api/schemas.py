"""Pydantic response (and small request) models of /sdapi/v1, with A1111 v1.10's field names and shapes.
They are what /docs and /openapi.json show."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, Field


class ImageResponse(BaseModel):
    images: Optional[list[str]] = Field(None, description="base64 PNGs, each with its infotext in 'parameters'")
    parameters: dict[str, Any]
    info: str = Field(..., description="a JSON string: prompt, all_seeds, infotexts, ...")


class PngInfoRequest(BaseModel):
    image: str = Field("", description="base64 image or data: URL (or an http(s) URL with api_enable_requests)")


class PngInfoResponse(BaseModel):
    info: str
    items: dict[str, Any]
    parameters: dict[str, Any]
    missing_models: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Easel: models the infotext names "
        "(Model hash, Lora hashes) that aren't installed: {type, name, hash}",
    )


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
    current_image: Optional[str]
    textinfo: Optional[str]


class SDModelItem(BaseModel):
    title: str
    model_name: str
    hash: Optional[str]
    sha256: Optional[str]
    filename: str
    config: Optional[str]


class SDVaeItem(BaseModel):
    model_name: str
    filename: str


class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, str]


class SchedulerItem(BaseModel):
    name: str
    label: str
    aliases: Optional[list[str]]
    default_rho: Optional[float]
    need_inner_model: Optional[bool]


class UpscalerItem(BaseModel):
    name: str
    model_name: Optional[str] = None
    model_path: Optional[str] = None
    model_url: Optional[str] = None
    scale: Optional[float] = None
    error: Optional[str] = Field(None, description="Easel: why a listed model file can't be used (never hidden)")


class LatentUpscalerModeItem(BaseModel):
    name: str


class LoraItem(BaseModel):
    name: str
    alias: str
    path: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    family: Optional[str] = Field(
        None,
        description="Easel: the base the LoRA was made for, from its keys: flux, "
        "sd3, sd (SD 1.x/2.x/SDXL UNet), or null when they don't tell",
    )


class PromptStyleItem(BaseModel):
    name: str
    prompt: Optional[str]
    negative_prompt: Optional[str]


class EmbeddingItem(BaseModel):
    step: Optional[int] = None
    sd_checkpoint: Optional[str] = None
    sd_checkpoint_name: Optional[str] = None
    shape: int
    vectors: int


class EmbeddingsResponse(BaseModel):
    loaded: dict[str, EmbeddingItem]
    skipped: dict[str, EmbeddingItem]


class MemoryResponse(BaseModel):
    ram: dict[str, Any] = Field(..., description="free, used, total (bytes)")
    cuda: dict[str, Any] = Field(..., description="system/active/allocated/reserved/inactive/events, or {error}")


class FaceRestorerItem(BaseModel):
    name: str
    cmd_dir: Optional[str] = None


class RealesrganItem(BaseModel):
    name: str
    path: Optional[str] = None
    scale: Optional[int] = None


class HypernetworkItem(BaseModel):
    name: str
    path: Optional[str] = None


class ExtrasSingleImageResponse(BaseModel):
    html_info: str
    image: Optional[str] = None


class ExtrasBatchImagesResponse(BaseModel):
    html_info: str
    images: list[str]
