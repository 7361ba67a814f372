"""The job queue: one worker per device runs jobs in FIFO order. The UI and the API both submit here, so two jobs
never run on the device at once, nothing is dropped, and no global lock is shared between the layers.

With `--workers ray` an executor (webui/workers/pool.py) is attached: jobs that carry a `remote` part (plain
txt2img/img2img) run on Ray workers, several at once, taken in FIFO order; every other job (checkpoint switches,
merges, extras, training, scripted jobs) still runs on the local worker thread. A job whose worker died is put back
at the head of the queue (Requeue) and its history row counts the retry.

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
from webui.history import History

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
    remote: Any = None  # webui.workers.remote.RemoteWork: what a Ray worker needs to run it (None: here only)
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
    retries: int = 0  # times it was re-queued because its worker died
    worker: str | None = None  # the Ray worker running it (None: the local worker)
    owner: str | None = None  # who submitted it from the UI ("browser:<id>" or "user:<name>"): reconnect finds it
    training: Any = None  # train-lora jobs: their webui.training.plan.TrainingStatus


class Requeue(Exception):
    """Raised by an executor when the job's worker died: the job goes back to the head of the queue."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class JobQueue:
    def __init__(self, history: History | None = None, summarize: Callable[[Job], dict | None] | None = None):
        self.history = history
        self.summarize = summarize or (lambda job: None)
        self._queue: deque[Job] = deque()
        self._jobs: dict[str, Job] = {}
        self._cv = threading.Condition()
        self._current: Job | None = None
        self._running: dict[str, Job] = {}  # jobs running on remote workers
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.completed = 0
        self.executor: Any = None  # runs the jobs that have a `remote` part (webui.workers.pool.RayPool)

    # --- lifecycle -----------------------------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stopping

    def start(self) -> None:
        if self.history:
            self.history.mark_running_interrupted()
        self._thread = threading.Thread(target=self._work, name="easel-worker", daemon=True)
        self._thread.start()
        if self.executor is not None:
            self.executor.start(self)

    def stop(self, timeout: float = 10.0) -> None:
        """Take no more jobs, interrupt the running one and wait (up to `timeout`) for it to end. Waiting jobs stay
        "queued" in the history for the next start; whoever waits on them here is told the server is stopping."""
        with self._cv:
            self._stopping = True
            for job in [self._current, *self._running.values()]:
                if job is not None:
                    job.control.interrupt()
            waiting = list(self._queue)
            self._queue.clear()
            self._cv.notify_all()
        for job in waiting:
            job.error = ShuttingDown("the server is stopping; the job stays queued and runs at the next start")
            job.done.set()
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self.executor is not None:
            self.executor.stop(timeout)

    # --- submitting ----------------------------------------------------------------------------------------------
    def submit(
        self,
        kind: str,
        params: dict[str, Any],
        fn: Callable[[Job], Any],
        *,
        record: bool = True,
        request: dict[str, Any] | None = None,
        job_id: str | None = None,
        estimate_seconds: float | None = None,
        notice: str | None = None,
        remote: Any = None,
    ) -> Job:
        """Queue a job. `request` is what a restart needs to run it again; `job_id` re-queues a job of a previous
        run under its own id."""
        job = Job(
            kind=kind,
            params=params,
            fn=fn,
            record=record,
            request=request,
            estimate_seconds=estimate_seconds,
            notice=notice,
            remote=remote if self.executor is not None else None,
        )
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
        """The running job (with remote workers: the local one, else the oldest running)."""
        running = self.running()
        return running[0] if running else None

    def running(self) -> list[Job]:
        with self._cv:
            jobs = sorted(self._running.values(), key=lambda j: j.started_at or 0)
            return ([self._current] if self._current else []) + jobs

    def queued(self) -> list[Job]:
        with self._cv:
            return list(self._queue)

    def active(self, owner: str) -> list[Job]:
        """`owner`'s running and waiting jobs, in the order they run (a reloaded page finds its jobs here)."""
        with self._cv:
            jobs = ([self._current] if self._current else []) + sorted(
                self._running.values(), key=lambda j: j.started_at or 0
            )
            jobs += list(self._queue)
        return [j for j in jobs if j.owner == owner]

    def owned(self, owner: str, since: float) -> list[Job]:
        """`owner`'s jobs not yet ended, and those created at or after `since` that have ended, oldest first."""
        with self._cv:
            jobs = [
                j for j in self._jobs.values() if j.owner == owner and (not j.done.is_set() or j.created_at >= since)
            ]
        return sorted(jobs, key=lambda j: j.created_at)

    def position(self, job_id: str) -> int | None:
        """0 while running, 1.. while waiting, None when finished or unknown."""
        with self._cv:
            if (self._current and self._current.id == job_id) or job_id in self._running:
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
            if job is self._current or job.id in self._running:
                job.control.interrupt()
                return "interrupting"
            return job.status

    def interrupt(self) -> None:
        """A1111's Interrupt: stop what the server is doing (every running job, when workers run several)."""
        for job in self.running():
            job.control.interrupt()

    def skip(self) -> None:
        for job in self.running():
            job.control.skip()

    # --- worker --------------------------------------------------------------------------------------------------
    def _next_local(self) -> Job | None:
        for job in self._queue:
            if job.remote is None:
                return job
        return None

    def _work(self) -> None:
        while True:
            with self._cv:
                while self._next_local() is None and not self._stopping:
                    self._cv.wait()
                if self._stopping:
                    return
                job = self._next_local()
                assert job is not None  # the wait above ends only with one, or on stopping
                self._queue.remove(job)
                self._current = job
            self._execute(job, job.fn)

    # --- remote workers (the executor's side) --------------------------------------------------------------------
    def wake(self) -> None:
        """A worker became idle (or joined): look at the queue again."""
        with self._cv:
            self._cv.notify_all()

    def detach_executor(self) -> None:
        """The executor could not start: every job, queued or to come, runs on the local worker."""
        with self._cv:
            self.executor = None
            for job in self._queue:
                job.remote = None
            self._cv.notify_all()

    def next_remote(self, choose: Callable[[Job], Any], timeout: float = 0.5) -> tuple[Job, Any] | None:
        """The oldest queued remote job and the worker `choose(job)` gives it (None while none is idle); waits up to
        `timeout` for one. The job is taken off the queue and counted as running."""
        with self._cv:
            if not self._stopping:
                for job in self._queue:
                    if job.remote is not None:
                        target = choose(job)
                        if target is not None:
                            self._queue.remove(job)
                            self._running[job.id] = job
                            return job, target
                        break  # FIFO: the oldest remote job waits for a worker
                self._cv.wait(timeout)
        return None

    def run_remote(self, job: Job, call: Callable[[Job], Any]) -> None:
        """Run a job taken by next_remote(); a Requeue puts it back at the head of the queue."""
        try:
            self._execute(job, call)
        finally:
            with self._cv:
                self._running.pop(job.id, None)
                self._cv.notify_all()

    def _requeue(self, job: Job, reason: str) -> None:
        job.retries += 1
        job.status, job.worker = "queued", None
        log.warning("job %s re-queued (retry %d): %s", job.id, job.retries, reason)
        with self._cv:
            if job.record and self.history:
                try:
                    self.history.retried(job.id, job.retries, reason)
                except EaselError as e:
                    log.warning("retry of job %s not recorded: %s", job.id, e.message)
            self._running.pop(job.id, None)
            if self._stopping:  # it stays queued in the history for the next start
                job.error = ShuttingDown("the server is stopping; the job stays queued and runs at the next start")
                job.done.set()
            else:
                self._queue.appendleft(job)
            self._cv.notify_all()

    def _execute(self, job: Job, call: Callable[[Job], Any]) -> None:
        job.status, job.started_at = "running", time.time()
        job.control.started_at = job.started_at
        try:
            if job.record and self.history:
                self.history.started(job.id, job.started_at, worker=job.worker)
            job.value = call(job)
            status = "interrupted" if job.control.interrupted else "done"
        except Requeue as e:
            self._requeue(job, e.reason)
            return
        except Interrupted as e:
            job.error, status = e, "interrupted"
        except BaseException as e:  # a job's failure must never stop the worker
            if is_disk_full(e):
                e = DiskFull(f"disk full: {e}", detail=str(e))
            job.error, status = e, "failed"
            if not isinstance(e, EaselError):
                traceback.print_exc()
        with self._cv:
            if self._current is job:
                self._current = None
            self._running.pop(job.id, None)
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
