"""Easel's own async jobs API (/easel/v1/jobs): submit and return at once, then poll, list or cancel.

Jobs go through the same queue as the UI and /sdapi, and every one is in the SQLite history, so a job id stays
valid after it finishes and after a restart. Over this API images are always saved: the result lists file paths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Optional

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from webui.api.params import decode_img2img_inputs
from webui.errors import NotFound
from webui.generation.requests import GenerationResult, Img2ImgRequest, Txt2ImgRequest

if TYPE_CHECKING:
    from webui.app import Application

JobKind = Literal["txt2img", "img2img"]
JobStatus = Literal["queued", "running", "done", "failed", "cancelled", "interrupted"]
REQUEST_MODELS: dict[str, type[Txt2ImgRequest]] = {"txt2img": Txt2ImgRequest, "img2img": Img2ImgRequest}


class JobSubmit(BaseModel):
    kind: JobKind
    params: dict[str, Any] = Field(default_factory=dict, description="the A1111 txt2img/img2img request body")


class JobCreated(BaseModel):
    id: str
    status: JobStatus
    position: Optional[int] = Field(None, description="0 running, 1.. waiting, null finished")


class JobResult(BaseModel):
    images: list[str] = Field(default_factory=list, description="paths of the saved images")
    infotexts: list[str] = Field(default_factory=list)
    name: Optional[str] = Field(None, description="train-lora: the LoRA's name; merge: the new checkpoint's name")
    path: Optional[str] = Field(None, description="train-lora, merge: the saved .safetensors")
    model: Optional[dict[str, Any]] = Field(
        None, description="install-model: folder, kind, family, sha256, verified, title, notes … of the installed file"
    )


class JobView(BaseModel):
    id: str
    kind: str
    status: JobStatus
    progress: float
    params: dict[str, Any]
    result: Optional[JobResult]
    error: Optional[str]
    created_at: float
    started_at: Optional[float]
    finished_at: Optional[float]
    position: Optional[int]
    estimate_seconds: Optional[float] = Field(
        None,
        description="expected duration on this device, from measured "
        "step times (null: nothing measured yet for this model)",
    )
    training: Optional[dict[str, Any]] = Field(None, description="train-lora jobs: step, total_steps, losses, ...")
    worker: Optional[str] = Field(None, description="--workers ray: the worker that runs (or ran) it")
    retries: int = Field(0, description="times it was re-queued because its worker died")
    retry_log: list[str] = Field(default_factory=list, description="why, one line per retry")
    step: Optional[int] = Field(None, description="train-lora: steps done")
    total_steps: Optional[int] = None
    loss: Optional[float] = Field(None, description="train-lora: the latest step's loss")
    losses: Optional[list[float]] = Field(None, description="train-lora: every step's loss, in order")
    download: Optional[dict[str, Any]] = Field(
        None,
        description="install-model: bytes_done, bytes_total (null: not announced), resumed_from, attempts, filename",
    )


class JobList(BaseModel):
    jobs: list[JobView]


def _error_text(error: BaseException | None) -> str | None:
    if error is None:
        return None
    return getattr(error, "message", None) or str(error) or type(error).__name__


def _result(value: Any) -> JobResult | None:
    if isinstance(value, GenerationResult):
        return JobResult(images=list(value.paths), infotexts=list(value.infotexts))
    if isinstance(value, dict) and "name" in value and "path" in value:  # a trained LoRA
        return JobResult(name=value["name"], path=value.get("path"), model=value.get("model"))
    if isinstance(value, dict):
        return JobResult(images=list(value.get("images") or []), infotexts=list(value.get("infotexts") or []))
    return None


def live_view(app: Application, job) -> JobView:
    training = getattr(job, "training", None)  # a train-lora job's live TrainingStatus
    status = job.status
    progress = 1.0 if status == "done" else job.control.progress if status in ("running", "interrupted") else 0.0
    t = training.to_dict() if training is not None and hasattr(training, "to_dict") else None
    return JobView(
        id=job.id,
        kind=job.kind,
        status=status,
        progress=progress,
        params=job.params,
        result=_result(job.value if job.value is not None else (t or {}).get("result") or job.summary),
        error=_error_text(job.error),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        position=app.jobs.position(job.id),
        training=t,
        estimate_seconds=job.estimate_seconds,
        worker=job.worker,
        retries=job.retries,
        retry_log=_retry_log(app, job),
        download=_download(job),
        **_training_fields(t),
    )


def _download(job) -> dict[str, Any] | None:
    status = getattr(job, "download", None)  # an install-model job's live DownloadStatus
    return status.to_dict() if status is not None else None


def _retry_log(app: Application, job) -> list[str]:
    if not job.retries:
        return []
    row = app.history.get(job.id) if job.record else None
    return list((row or {}).get("retry_log") or [])


def _training_fields(t: dict[str, Any] | None) -> dict[str, Any]:
    if not t:
        return {}
    losses = t.get("losses") or None
    loss = t.get("loss") if t.get("loss") is not None else (losses[-1] if losses else None)
    return {"step": t.get("step"), "total_steps": t.get("total_steps"), "loss": loss, "losses": losses}


def history_view(app: Application, row: dict[str, Any]) -> JobView:
    live = app.jobs.get(row["id"])
    if live is not None and live.record:
        return live_view(app, live)
    status = row["status"]
    return JobView(
        id=row["id"],
        kind=row["kind"],
        status=status,
        progress=1.0 if status == "done" else 0.0,
        params=row.get("params") or {},
        result=_result(row.get("result")),
        error=row.get("error"),
        created_at=row["created_at"],
        started_at=row.get("started_at"),
        finished_at=row.get("finished_at"),
        position=None,
        worker=row.get("worker"),
        retries=row.get("retries") or 0,
        retry_log=row.get("retry_log") or [],
        training=row.get("result") if row["kind"] == "train-lora" else None,
        **_training_fields(row.get("result") if row["kind"] == "train-lora" else None),
    )


def find_job(app: Application, job_id: str) -> JobView:
    live = app.jobs.get(job_id)
    if live is not None and live.record:
        return live_view(app, live)
    row = app.history.get(job_id)
    if row is None:
        raise NotFound(f"job {job_id} not found")
    return history_view(app, row)


def _validate(kind: str, params: dict[str, Any]) -> Txt2ImgRequest:
    try:
        return REQUEST_MODELS[kind].model_validate(params)
    except ValidationError as e:
        errors = [{**err, "loc": ("body", "params", *err.get("loc", ()))} for err in e.errors()]
        raise RequestValidationError(errors) from None


def submit_job(app: Application, kind: str, params: dict[str, Any]):
    """Validate, prepare and queue one job with save-the-images semantics; return the queue's Job."""
    req = _validate(kind, params)
    req = app.prepare(req, kind)
    req = req.model_copy(update={"save_images": True, "send_images": False})
    if isinstance(req, Img2ImgRequest):  # kind "img2img"
        images, mask = decode_img2img_inputs(req, app)
        return app.submit_img2img(req, from_api=True, images=images, mask=mask)
    return app.submit_txt2img(req, from_api=True)


def build_easel_jobs_router(app: Application) -> APIRouter:
    r = APIRouter(prefix="/easel/v1", tags=["easel"])

    @r.post("/jobs", response_model=JobCreated, status_code=202)
    def create_job(body: JobSubmit) -> JobCreated:
        job = submit_job(app, body.kind, body.params)
        return JobCreated(id=job.id, status=job.status, position=app.jobs.position(job.id))

    @r.get("/jobs", response_model=JobList)
    def list_jobs(
        status: Optional[JobStatus] = None,
        limit: int = Query(50, ge=1, le=1000),
        search: Optional[str] = Query(None, max_length=500),
    ) -> JobList:
        rows = app.history.list(status=status, search=search, limit=limit)
        return JobList(jobs=[history_view(app, row) for row in rows])

    @r.get("/jobs/{job_id}", response_model=JobView)
    def get_job(job_id: str) -> JobView:
        return find_job(app, job_id)

    @r.post("/jobs/{job_id}/cancel", response_model=JobView)
    def cancel_job(job_id: str) -> JobView:
        """A queued job is removed (status cancelled); a running one is interrupted; a finished one is unchanged."""
        live = app.jobs.get(job_id)
        if live is not None and live.record and not live.done.is_set():
            app.jobs.cancel(job_id)
        return find_job(app, job_id)

    return r
