"""`POST /easel/v1/models/install`: download a model from a URL as a job and return it at once (202).

Every check that needs no network (the exposure lock, fields, URL scheme, a literal internal address, folder, file
name, a name already taken) happens before anything is queued: a bad request is a 4xx with A1111's error body. The
job is on the shared queue: `/easel/v1/jobs/{id}` shows `download.bytes_done`/`bytes_total` while it runs and, when
done, `result.name`/`result.path` and `result.model` (folder, kind, family, sha256, verified, title …); the model is
then listed (/sdapi/v1/sd-models, /sdapi/v1/loras) without a restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter

from webui.api.easel_jobs import JobCreated
from webui.downloads import InstallRequest, submit_install

if TYPE_CHECKING:
    from webui.app import Application


def build_models_install_router(application: Application) -> APIRouter:
    r = APIRouter(prefix="/easel/v1", tags=["models"])

    @r.post("/models/install", response_model=JobCreated, status_code=202)
    def install(body: InstallRequest) -> JobCreated:
        job = submit_install(application, body)
        return JobCreated(id=job.id, status=job.status, position=application.jobs.position(job.id))

    return r
