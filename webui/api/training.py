"""`POST /easel/v1/train/lora` (queue a LoRA training job) and `GET /easel/v1/train/lora/{job_id}` (its progress).

Validation (fields, dataset, checkpoint, name) happens before anything is queued or written: a bad request is a
4xx with A1111's error body. The job is on the shared queue, so `/easel/v1/jobs/{id}` lists and cancels it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from fastapi import APIRouter
from pydantic import BaseModel, Field

from webui.errors import NotFound
from webui.training.jobs import JOB_KIND, TrainLoraRequest, start_training

if TYPE_CHECKING:
    from webui.app import Application


class TrainJobCreated(BaseModel):
    job_id: str
    status: str
    total_steps: int


class TrainResult(BaseModel):
    name: str
    path: Optional[str] = Field(None, description="the .safetensors in the LoRA folder (null if nothing was saved)")


class TrainJobView(BaseModel):
    job_id: str
    status: str
    phase: Optional[str] = None
    step: int = 0
    total_steps: int = 0
    loss: Optional[float] = None
    losses: list[float] = Field(default_factory=list, description="every step's loss, in order")
    eta: Optional[float] = Field(None, description="seconds left, estimated")
    samples: list[str] = Field(default_factory=list, description="paths of the sample images so far")
    result: Optional[TrainResult] = None
    error: Optional[str] = None


def training_fields(job) -> dict[str, Any]:
    """The training part of a live job's view (for `/easel/v1/jobs/{id}` too): step, total_steps, loss, losses,
    result {name, path}, plus phase, eta and samples. Empty for other kinds of job."""
    status = getattr(job, "training", None)
    if status is None:
        return {}
    return status.to_dict()


def _error(job) -> str | None:
    e = job.error
    return None if e is None else (getattr(e, "message", None) or str(e) or type(e).__name__)


def build_training_router(application: Application) -> APIRouter:
    r = APIRouter(prefix="/easel/v1", tags=["training"])

    @r.post("/train/lora", response_model=TrainJobCreated, status_code=202)
    def train_lora(body: TrainLoraRequest) -> TrainJobCreated:
        job = start_training(application, body)
        return TrainJobCreated(job_id=job.id, status=job.status, total_steps=job.training.total_steps)

    @r.get("/train/lora/{job_id}", response_model=TrainJobView)
    def training_status(job_id: str) -> TrainJobView:
        job = application.jobs.get(job_id)
        if job is not None and job.kind == JOB_KIND:
            return TrainJobView(job_id=job.id, status=job.status, error=_error(job), **training_fields(job))
        row = application.history.get(job_id)
        if row is None or row.get("kind") != JOB_KIND:
            raise NotFound(f"training job {job_id} not found")
        summary = row.get("result") or {}
        result = {"name": summary["name"], "path": summary.get("path")} if summary.get("name") else None
        return TrainJobView(
            job_id=job_id,
            status=row["status"],
            step=summary.get("step", 0),
            total_steps=summary.get("total_steps", 0),
            losses=summary.get("losses", []),
            loss=(summary.get("losses") or [None])[-1],
            samples=summary.get("samples", []),
            result=result,
            error=row.get("error"),
        )

    return r
