"""/easel/v1/workers: the Ray workers behind this head (an empty list with the local worker)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from fastapi import APIRouter
from pydantic import BaseModel, Field

from webui.errors import InvalidRequest

if TYPE_CHECKING:
    from webui.app import Application


class WorkerView(BaseModel):
    id: str
    node: Optional[str] = Field(None, description="the Ray node id the worker runs on")
    host: Optional[str] = None
    pid: Optional[int] = Field(None, description="the worker's process id")
    device: Optional[str] = None
    state: str = Field(..., description="starting, idle, busy or draining")
    loaded_models: list[str] = Field(default_factory=list, description="checkpoint titles in its RAM cache")
    job: Optional[str] = Field(None, description="the running job's id")
    jobs_done: int = 0
    loaded_loras: list[str] = Field(default_factory=list, description="LoRA files held on its active checkpoint")
    file_loads: int = Field(0, description="checkpoint files it read from disk")
    files_received: list[str] = Field(
        default_factory=list,
        description="model files the head sent it by sha256 (--ray-worker-data-dir), as 'folder/path'",
    )
    last_heartbeat: Optional[float] = None


class WorkerList(BaseModel):
    mode: str = Field(..., description="local or ray")
    workers: list[WorkerView]


def _pool(app: Application) -> Any:
    pool = app.jobs.executor
    if pool is None:
        raise InvalidRequest("this server runs jobs on its local worker (start it with --workers ray)")
    return pool


def build_workers_router(app: Application) -> APIRouter:
    r = APIRouter(prefix="/easel/v1", tags=["easel"])

    @r.get("/workers", response_model=WorkerList)
    def list_workers() -> WorkerList:
        pool = app.jobs.executor
        if pool is None:
            return WorkerList(mode="local", workers=[])
        return WorkerList(mode="ray", workers=[WorkerView(**w) for w in pool.list()])

    @r.post("/workers", response_model=WorkerView, status_code=202)
    def add_worker() -> WorkerView:
        """Start one more worker; it takes queued jobs as soon as it is ready."""
        pool = _pool(app)
        worker_id = pool.add_worker()
        return WorkerView(**next(w for w in pool.list() if w["id"] == worker_id))

    @r.post("/workers/{worker_id}/drain", response_model=WorkerView)
    def drain_worker(worker_id: str) -> WorkerView:
        """No more jobs for this worker; it leaves when its running job ends."""
        return WorkerView(**_pool(app).drain(worker_id))

    return r
