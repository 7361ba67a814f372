"""`POST /easel/v1/prompt/token-count`: the prompt box's token counts for the loaded checkpoint — CLIP as A1111's
counter ("80/150", chunks of 75) and, for FLUX.1 and SD 3/3.5, T5's count of the plain text against its max length
(the t5_max_length setting or the model's own). Counting never loads a checkpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from webui.app import Application

MAX_PROMPT_CHARS = 100_000  # a prompt longer than this is not a prompt


class TokenCountRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    steps: int = Field(20, ge=1, le=10_000, description="prompt editing makes the count depend on the steps")
    negative: bool = Field(False, description="count as the negative prompt (no extra-network tags, no AND)")


class Count(BaseModel):
    tokens: int
    max: int


class TokenCountAnswer(BaseModel):
    clip: Count
    t5: Count | None = Field(None, description="only for checkpoints with a T5 encoder (FLUX.1, SD 3/3.5)")


def build_token_count_router(application: Application) -> APIRouter:
    r = APIRouter(prefix="/easel/v1", tags=["easel"])

    @r.post("/prompt/token-count", response_model=TokenCountAnswer)
    def token_count(body: TokenCountRequest) -> TokenCountAnswer:
        from webui.prompts.plain import token_counts
        from webui.models.tokenizer import load_clip_tokenizer

        model = application.models.active
        counts = application.embeddings.vector_counts(model) if model is not None else None
        return TokenCountAnswer(
            **token_counts(
                model,
                body.prompt,
                body.steps,
                negative=body.negative,
                t5_max_length=int(application.options.get("t5_max_length") or 0),
                embeddings=counts,
                clip_tokenizer=None
                if model is not None
                else load_clip_tokenizer(cache_dir=application.paths.data_dir / "cache" / "configs" / "tok-counter"),
            )
        )

    return r
