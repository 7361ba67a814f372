"""Workers on Ray (`--workers ray`): the JobQueue's executor for jobs with a remote part.

The head keeps the queue, the history and the outputs. Each worker is a Ray actor (webui/workers/actor.py) with its
own model manager. A dispatcher thread takes the oldest remote job when a worker is idle and picks the worker:

Checkpoint affinity, on Ray Core rather than Ray Serve's model multiplexing: Serve routes *requests* to replicas by a
model id and evicts with its own LRU, but Easel's unit of work is a queued job that must stay in the head's FIFO
queue and history, be re-queued when its worker dies, be interrupted mid-step and report per-step progress; Serve
would add its HTTP proxy/controller and a second queue we can't see into. On Core the head sees each worker's RAM
cache (`loaded_models`) and chooses: an idle worker with the checkpoint loaded; else one whose cache has room (no
eviction); else the one that has done the fewest jobs. Among equals, the one already holding more of the job's LoRAs
on that checkpoint.

Failover: a worker whose process dies mid-job (ActorDiedError and kin) is dropped, and the job goes back to the head
of the queue (retry counted in the history) up to --ray-max-retries times, then fails with WorkerLost. A job ends
once: the head saves images only from the answer of the attempt it is waiting for.

A worker's slot: webui/workers/slots.py; a job's files, progress and answer while it runs: webui/workers/follow.py.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from webui.errors import EaselError, WorkerLost
from webui.jobs import Job, JobQueue, Requeue
from webui.workers.actor import EaselWorker
from webui.workers.follow import follow, send_files
from webui.workers.model_files import needed_files
from webui.workers.remote import with_job_id
from webui.workers.slots import WorkerSlot, _lora_names, worker_paths

if TYPE_CHECKING:
    from webui.app import Application

__all__ = ["RayPool", "WorkerSlot", "worker_paths"]

log = logging.getLogger("easel.workers")

HEARTBEAT_SECONDS = 2.0
LOCAL_NODE_IP = "127.0.0.2"  # the private runtime's node address (see _init_ray)


class RayPool:
    def __init__(
        self,
        application: Application,
        *,
        address: str | None,
        num_workers: int | None,
        threads: int | None,
        max_retries: int,
    ):
        self.app, self.address, self.max_retries = application, address, max_retries
        self.num_workers, self.threads = num_workers, threads
        self.queue: JobQueue | None = None
        self.slots: dict[str, WorkerSlot] = {}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._owns_ray = False
        self.ready = threading.Event()  # Ray is up and the first workers were asked for
        self.work_seconds: dict[str, float] = {}  # job id → seconds the worker spent on it (benchmarks/workers.py)
        self.worker_paths = worker_paths(application.ns)  # None: the workers share the head's folders

    # --- lifecycle -----------------------------------------------------------------------------------------------
    def _queue(self) -> JobQueue:
        assert self.queue is not None  # set by start(), before any worker or dispatch thread runs
        return self.queue

    def start(self, queue: JobQueue) -> None:
        self.queue = queue
        threading.Thread(target=self._boot, name="easel-ray-dispatch", daemon=True).start()

    def _boot(self) -> None:
        try:
            self._init_ray()
            count = self.num_workers or max(1, int(ray.cluster_resources().get("GPU", 0))) or 1
            for _ in range(count):
                self.add_worker()
        except Exception:
            log.exception("Ray workers could not start: jobs run on the local worker")
            self._queue().detach_executor()
            return
        finally:
            self.ready.set()
        threading.Thread(target=self._heartbeat, name="easel-ray-heartbeat", daemon=True).start()
        # Ray's own processes (GCS, raylet) die with the *thread* that started them (PR_SET_PDEATHSIG): this thread
        # started them, so it stays alive as the dispatcher
        self._dispatch()

    def _worker_env(self) -> dict[str, str]:
        """Set on each worker: offline, and Easel importable (the same checkout path on every node)."""
        path = [str(self.app.paths.repo_dir)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        return {"HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": os.pathsep.join(path)}

    def _init_ray(self) -> None:
        if ray.is_initialized():  # a runtime this process already joined (tests, an embedding program)
            return
        common = dict(log_to_driver=False, namespace="easel", runtime_env={"env_vars": self._worker_env()})
        if self.address:
            ray.init(address=self.address, **common)  # token auth: see workers/__init__.py (before Ray's import)
        else:  # a private local runtime: no dashboard, node address on loopback
            # Ray turns "127.0.0.1"/"localhost" into the machine's network address (resolve_ip_for_localhost), so its
            # processes would talk over the LAN address; any other loopback address is kept as given (Linux routes
            # all of 127/8 to lo). Its ports still listen on every interface, behind Ray's token auth.
            ray.init(num_cpus=self.num_workers or 1, include_dashboard=False, _node_ip_address=LOCAL_NODE_IP, **common)
        self._owns_ray = True

    def stop(self, timeout: float = 10.0) -> None:
        """Take no more jobs; give the running ones (the queue has interrupted them) up to `timeout` to bring back
        what they made, then end the workers (and the Ray runtime this head started). With timeout 0 (the first
        SIGTERM) the workers are left running for the stop that follows."""
        self._stopping.set()
        if timeout <= 0:
            return
        deadline = time.time() + timeout
        while any(s.state == "busy" for s in list(self.slots.values())) and time.time() < deadline:
            time.sleep(0.05)
        with self._lock:
            slots = list(self.slots.values())
        for slot in slots:
            self._kill(slot)
        if self._owns_ray:
            ray.shutdown()

    # --- workers -------------------------------------------------------------------------------------------------
    def add_worker(self) -> str:
        """Start one more worker; it takes jobs as soon as its models are scanned (a few seconds)."""
        worker_id = uuid.uuid4().hex[:8]
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        threads = self.threads or max(1, (os.cpu_count() or 1) // max(1, self.num_workers or 1))
        app = self.app
        # a GPU worker holds one GPU; CPU workers hold no logical CPU (their threads are --threads, and the count is
        # --ray-num-workers, so a worker added later is never refused for want of Ray CPUs) and spread over nodes
        actor = ray.remote(EaselWorker).options(
            name=f"easel-worker-{worker_id}",
            num_cpus=0,
            num_gpus=gpus,
            scheduling_strategy="DEFAULT" if gpus else "SPREAD",
            max_concurrency=4,
            max_restarts=0,
            runtime_env={"env_vars": self._worker_env()},
        )
        handle = actor.remote(worker_id, app.ns, self.worker_paths or app.paths, app.catalog.demo_dir, threads)
        slot = WorkerSlot(id=worker_id, handle=handle)
        with self._lock:
            self.slots[worker_id] = slot
        threading.Thread(target=self._await_ready, args=(slot,), daemon=True).start()
        return worker_id

    def _await_ready(self, slot: WorkerSlot) -> None:
        try:
            self._update(slot, ray.get(slot.handle.info.remote(), timeout=300))
        except BaseException as e:  # SystemExit when Ray shuts down meanwhile
            if not self._stopping.is_set():
                log.warning("worker %s did not start: %s", slot.id, e)
            self._drop(slot)
            return
        with self._lock:
            if slot.state == "starting":
                slot.state = "idle"
        log.info("worker %s ready (pid %s, %s)", slot.id, slot.info.get("pid"), slot.info.get("device"))
        self._queue().wake()

    def drain(self, worker_id: str) -> dict[str, Any]:
        """Take no more jobs on this worker; it leaves when its running job ends (at once when idle)."""
        with self._lock:
            slot = self.slots.get(worker_id)
            if slot is None:
                from webui.errors import NotFound

                raise NotFound(f"worker {worker_id} not found")
            idle = slot.state in ("idle", "starting")
            slot.state = "draining"
            view = slot.view()
        if idle:
            self._kill(slot)
        return view

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [s.view() for s in self.slots.values()]

    def _update(self, slot: WorkerSlot, info: dict[str, Any]) -> None:
        with self._lock:
            slot.info, slot.last_heartbeat = info, time.time()
            if slot.state != "busy" and info.get("job") is None:  # mid-job its cache is changing: the answer says
                slot.loaded = list(info.get("loaded_models") or [])
                slot.loras = list(info.get("loaded_loras") or [])

    def _drop(self, slot: WorkerSlot) -> None:
        with self._lock:
            slot.state = "gone"
            self.slots.pop(slot.id, None)

    def _kill(self, slot: WorkerSlot) -> None:
        self._drop(slot)
        try:
            ray.kill(slot.handle, no_restart=True)
        except Exception:
            pass

    def _heartbeat(self) -> None:
        while not self._stopping.wait(HEARTBEAT_SECONDS):
            with self._lock:
                slots = [s for s in self.slots.values() if s.state != "starting"]
            refs = {s.id: s.handle.info.remote() for s in slots}
            for slot in slots:
                try:
                    self._update(slot, ray.get(refs[slot.id], timeout=HEARTBEAT_SECONDS * 2))
                except RayActorError:
                    log.warning("worker %s is gone", slot.id)
                    self._drop(slot)
                except Exception:  # slow to answer: keep it, its heartbeat just ages
                    pass

    # --- dispatch ------------------------------------------------------------------------------------------------
    def _title(self, job: Job) -> str:
        wanted = job.remote.task.checkpoint
        try:
            return self.app.catalog.find(wanted).title if wanted else ""
        except EaselError:
            return wanted

    def choose(self, job: Job) -> WorkerSlot | None:
        """Affinity: an idle worker with the checkpoint loaded; else one with room in its RAM cache; else the idle
        worker with the fewest jobs done. None while no worker is idle."""
        title = self._title(job)
        with self._lock:
            idle = [s for s in self.slots.values() if s.state == "idle"]
            if not idle:
                return None
            limit = max(1, int(job.remote.task.options.get("sd_checkpoints_limit") or 1))
            loras = _lora_names(job.remote.task)

            def cost(s: WorkerSlot) -> tuple:
                held = len(loras & set(s.loras)) if s.loaded and s.loaded[-1] == title else 0
                return (0 if title in s.loaded else 1 if len(s.loaded) < limit else 2, -held, s.jobs_done)

            best = min(idle, key=cost)
            best.state, best.job = "busy", job.id
            if title and title not in best.loaded:  # what it will hold once the job ran (heartbeats correct it)
                best.loaded = (best.loaded + [title])[-limit:]
            job.worker = best.id
            return best

    def _dispatch(self) -> None:
        while not self._stopping.is_set():
            got = self._queue().next_remote(self.choose)
            if got is None:
                continue
            job, slot = got
            threading.Thread(
                target=self._run, args=(job, slot), name=f"easel-ray-job-{job.id[:8]}", daemon=True
            ).start()

    def _run(self, job: Job, slot: WorkerSlot) -> None:
        self._queue().run_remote(job, lambda j: self._call(slot, j))
        if slot.state == "draining":  # its job is over and recorded: the drained worker leaves
            self._kill(slot)

    def _call(self, slot: WorkerSlot, job: Job) -> Any:
        attempt = job.retries
        task = with_job_id(job.remote.task, job.id)
        try:
            if self.worker_paths is not None:  # workers keep their own models: send what this job needs and they lack
                task = dataclasses.replace(task, files=needed_files(self.app, task))
                send_files(slot, task.files)
            answer = follow(
                self.app, slot, job, slot.handle.run.remote(task), own_folders=self.worker_paths is not None
            )
            with self._lock:  # before the worker is idle again, so the next choice sees its cache
                slot.jobs_done += 1
                slot.loaded = list(answer.get("loaded_models") or slot.loaded)
                slot.loras = list(answer.get("loaded_loras") or [])
                slot.info["lora_file_reads"] = answer.get("lora_file_reads", 0)
                slot.info["file_loads"] = answer.get("file_loads", slot.info.get("file_loads", 0))
                slot.info["files_received"] = answer.get("files_received", slot.info.get("files_received", []))
                if len(self.work_seconds) > 1000:
                    self.work_seconds.clear()
                self.work_seconds[job.id] = float(answer.get("seconds") or 0.0)
        except RayActorError as e:
            self._drop(slot)
            reason = f"worker {slot.id} (pid {slot.info.get('pid')}) died during the job: {type(e).__name__}"
            if job.retries < self.max_retries and not self._stopping.is_set():
                raise Requeue(reason) from None
            raise WorkerLost(f"{reason}; not retried again (retried {job.retries} time(s))") from None
        except RayTaskError as e:  # the job's own error (InvalidRequest, …), raised again as itself
            cause = getattr(e, "cause", None)
            raise (cause if isinstance(cause, BaseException) else e) from None
        finally:
            self._released(slot)
        if job.retries != attempt or job.done.is_set():  # a late answer of an attempt already given up
            raise Requeue("duplicate answer discarded")
        return job.remote.finish(answer)

    def _released(self, slot: WorkerSlot) -> None:
        with self._lock:
            slot.job = None
            if slot.state == "busy":
                slot.state = "idle"
        self._queue().wake()
