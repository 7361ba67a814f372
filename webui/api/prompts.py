"""A1111's prompt-related routes: textual-inversion embeddings and prompt styles.

GET  /sdapi/v1/embeddings          {loaded: {name: {step, sd_checkpoint, sd_checkpoint_name, shape, vectors}},
                                    skipped: {name: {…the same keys, reason}}}, for the active checkpoint
POST /sdapi/v1/refresh-embeddings  rescan the embeddings folder (A1111 answers null)
GET  /sdapi/v1/prompt-styles       [{name, prompt, negative_prompt}]

These are the only routes at these paths (build_sdapi_router has none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from webui.app import Application


class EmbeddingInfo(BaseModel):
    step: int | None = Field(None, description="training steps, when the file records them")
    sd_checkpoint: str | None = Field(None, description="hash of the checkpoint it was trained on, if recorded")
    sd_checkpoint_name: str | None = Field(None, description="name of that checkpoint, if recorded")
    shape: int = Field(..., description="width of one vector (both encoders' widths added for SDXL)")
    vectors: int = Field(..., description="number of vectors (tokens) the word stands for")


class SkippedEmbeddingInfo(EmbeddingInfo):
    reason: str = Field(..., description="why it is not usable with the active checkpoint")


class EmbeddingsAnswer(BaseModel):
    loaded: dict[str, EmbeddingInfo]
    skipped: dict[str, SkippedEmbeddingInfo]


class PromptStyleInfo(BaseModel):
    name: str
    prompt: str | None = None
    negative_prompt: str | None = None


def build_prompts_router(application: Application) -> APIRouter:
    r = APIRouter(prefix="/sdapi/v1", tags=["sdapi"])

    @r.get("/embeddings", response_model=EmbeddingsAnswer)
    def embeddings() -> EmbeddingsAnswer:
        return EmbeddingsAnswer(**application.embeddings.api(application.models.active))

    @r.post("/refresh-embeddings", response_model=None)
    def refresh_embeddings() -> None:
        application.embeddings.refresh()

    @r.get("/prompt-styles", response_model=list[PromptStyleInfo])
    def prompt_styles() -> list[PromptStyleInfo]:
        return [PromptStyleInfo(**s) for s in application.styles.api()]

    return r
