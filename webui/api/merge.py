"""`POST /easel/v1/merge`: queue a checkpoint merge (A1111's Checkpoint Merger) and return the job at once.

Every check that needs no tensor data (fields, checkpoints, VAE, output name, discard pattern) and, for
.safetensors inputs, the families and shapes happen before anything is queued: a bad request is a 4xx with A1111's
error body. The job is on the shared queue: `/easel/v1/jobs/{id}` shows its progress (tensors written / total) and,
when done, `result.name`/`result.path` of the new checkpoint, which /sdapi/v1/sd-models then lists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter

from webui.api.easel_jobs import JobCreated
from webui.merge import MergeRequest, submit_merge

if TYPE_CHECKING:
    from webui.app import Application


def build_merge_router(application: Application) -> APIRouter:
    r = APIRouter(prefix="/easel/v1", tags=["merge"])

    @r.post("/merge", response_model=JobCreated, status_code=202)
    def merge(body: MergeRequest) -> JobCreated:
        job = submit_merge(application, body)
        return JobCreated(id=job.id, status=job.status, position=application.jobs.position(job.id))

    return r
