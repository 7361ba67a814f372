"""The job queue: one worker per device runs jobs in FIFO order. The UI and the API both submit here, so two jobs
never run on the device at once, nothing is dropped, and no global lock is shared between the layers.

Stopping (SIGTERM/SIGINT) refuses new jobs, interrupts the running one and leaves the waiting ones queued in the
history, where the next start finds them again (Application re-queues them from their stored request)."""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from webui.errors import DiskFull, EaselError, Interrupted, NotFound, ShuttingDown, is_disk_full
from webui.generation.control import JobControl
from webui.history import JobHistory

TERMINAL = ("done", "failed", "cancelled", "interrupted")
log = logging.getLogger("easel.jobs")


@dataclass
class Job:
    kind: str
    params: dict[str, Any]
    fn: Callable[["Job"], Any]
    record: bool = True  # written to history (internal jobs such as a model switch are not)
    request: dict[str, Any] | None = None  # the complete request, kept in history until the job ends (re-queue)
    estimate_seconds: float | None = None  # how long it should take on this device, from measured steps
    notice: str | None = None  # that estimate in words, a warning when it is long
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: str = "queued"
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    value: Any = None  # what fn returned
    error: BaseException | None = None
    summary: dict[str, Any] | None = None  # JSON-able result for history
    control: JobControl = field(default_factory=JobControl)
    done: threading.Event = field(default_factory=threading.Event)


class JobQueue:
    def __init__(self, history: JobHistory | None = None, summarize: Callable[[Job], dict | None] | None = None):
        self.history = history
        self.summarize = summarize or (lambda job: None)
        self._queue: deque[Job] = deque()
        self._jobs: dict[str, Job] = {}
        self._cv = threading.Condition()
        self._current: Job | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.completed = 0

    # --- lifecycle -----------------------------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stopping

    def start(self) -> None:
        if self.history:
            self.history.mark_running_interrupted()
        self._thread = threading.Thread(target=self._work, name="easel-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Take no more jobs, interrupt the running one and wait (up to `timeout`) for it to end. Waiting jobs stay
        "queued" in the history for the next start; whoever waits on them here is told the server is stopping."""
        with self._cv:
            self._stopping = True
            if self._current:
                self._current.control.interrupt()
            waiting = list(self._queue)
            self._queue.clear()
            self._cv.notify_all()
        for job in waiting:
            job.error = ShuttingDown("the server is stopping; the job stays queued and runs at the next start")
            job.done.set()
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # --- submitting ----------------------------------------------------------------------------------------------
    def submit(self, kind: str, params: dict[str, Any], fn: Callable[[Job], Any], *, record: bool = True,
               request: dict[str, Any] | None = None, job_id: str | None = None,
               estimate_seconds: float | None = None, notice: str | None = None) -> Job:
        """Queue a job. `request` is what a restart needs to run it again; `job_id` re-queues a job of a previous
        run under its own id."""
        job = Job(kind=kind, params=params, fn=fn, record=record, request=request, estimate_seconds=estimate_seconds,
                  notice=notice)
        job.control.estimate_seconds, job.control.textinfo = estimate_seconds, notice
        if job_id:
            job.id = job_id
        with self._cv:  # created_at, the history row and the queue position agree (lock order: queue → history)
            if self._stopping:
                raise ShuttingDown("the server is stopping and takes no new jobs")
            job.created_at = time.time()
            if record and self.history:
                self.history.queued(job.id, kind, params, job.created_at, request)
            self._jobs[job.id] = job
            self._queue.append(job)
            self._cv.notify_all()
        return job

    def wait(self, job: Job, timeout: float | None = None) -> Any:
        """Block until the job ends; return its value or raise its error."""
        if not job.done.wait(timeout):
            raise TimeoutError(f"job {job.id} did not finish in {timeout} s")
        if job.error is not None and job.status != "interrupted":
            raise job.error
        if job.status == "cancelled":
            raise Interrupted("the job was cancelled before it started")
        return job.value

    def run(self, kind: str, params: dict[str, Any], fn: Callable[[Job], Any], *, record: bool = True) -> Any:
        return self.wait(self.submit(kind, params, fn, record=record))

    # --- control -------------------------------------------------------------------------------------------------
    @property
    def current(self) -> Job | None:
        return self._current

    def queued(self) -> list[Job]:
        with self._cv:
            return list(self._queue)

    def position(self, job_id: str) -> int | None:
        """0 while running, 1.. while waiting, None when finished or unknown."""
        with self._cv:
            if self._current and self._current.id == job_id:
                return 0
            for i, j in enumerate(self._queue):
                if j.id == job_id:
                    return i + 1
        return None

    def get(self, job_id: str) -> Job | None:
        with self._cv:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> str:
        """A queued job is removed; a running one is interrupted. Returns the resulting status."""
        with self._cv:
            job = self._jobs.get(job_id)
            if job is None:
                raise NotFound(f"job {job_id} not found")
            if job in self._queue:
                self._queue.remove(job)
                self._end(job, "cancelled", None)
                return "cancelled"
            if job is self._current:
                job.control.interrupt()
                return "interrupting"
            return job.status

    def interrupt(self) -> None:
        job = self._current
        if job:
            job.control.interrupt()

    def skip(self) -> None:
        job = self._current
        if job:
            job.control.skip()

    # --- worker --------------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stopping:
                    self._cv.wait()
                if self._stopping:
                    return
                job = self._queue.popleft()
                self._current = job
            job.status, job.started_at = "running", time.time()
            job.control.started_at = job.started_at
            try:
                if job.record and self.history:
                    self.history.started(job.id, job.started_at)
                job.value = job.fn(job)
                status = "interrupted" if job.control.interrupted else "done"
            except Interrupted as e:
                job.error, status = e, "interrupted"
            except BaseException as e:  # a job's failure must never stop the worker
                if is_disk_full(e):
                    e = DiskFull(f"disk full: {e}", detail=str(e))
                job.error, status = e, "failed"
                if not isinstance(e, EaselError):
                    traceback.print_exc()
            with self._cv:
                self._current = None
                self._end(job, status, job.error)
                self.completed += 1

    def _end(self, job: Job, status: str, error: BaseException | None) -> None:
        job.status, job.finished_at = status, time.time()
        if job.record and self.history:
            try:
                job.summary = self.summarize(job) if status in ("done", "interrupted") else None
            except Exception:  # a summary is for history only
                job.summary = None
            msg = None if error is None else (getattr(error, "message", None) or str(error) or type(error).__name__)
            try:
                self.history.finished(job.id, status, job.summary, msg, job.finished_at)
            except EaselError as e:  # a full disk: the job's own outcome still reaches whoever waits for it
                log.warning("job %s (%s) not recorded in the history: %s", job.id, status, e.message)
        job.done.set()
        # keep a bounded number of finished jobs in memory; history has the rest
        if len(self._jobs) > 500:
            for jid in [j for j, jj in self._jobs.items() if jj.done.is_set()][:100]:
                self._jobs.pop(jid, None)
