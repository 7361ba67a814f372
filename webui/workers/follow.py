"""One remote job seen from the head, while it runs on a Ray worker: the model files the worker lacks streamed to it,
then its answer awaited while interrupt/skip are forwarded at once and its progress, live previews and a training
run's saves are copied to the head."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import RayTaskError

from webui.jobs import Job
from webui.workers.model_files import NeededFile, read_chunks
from webui.workers.remote_training import copy_status, write_outputs
from webui.workers.slots import WorkerSlot

if TYPE_CHECKING:
    from webui.app import Application

log = logging.getLogger("easel.workers")

POLL_SECONDS = 0.05  # how often a running job's interrupt/skip is forwarded and its progress asked for
SAVES_SECONDS = 1.0  # how often a training run's new saves are fetched from its worker
PREVIEW_TIMEOUT = 10.0  # a full-VAE preview of a large image on a slow worker


def send_files(slot: WorkerSlot, files: list[NeededFile]) -> None:
    """Stream each file the worker lacks, one chunk in flight (a threaded actor does not keep call order); the
    worker verifies size and sha256 before the file takes its name (model_files.py)."""
    for f in ray.get(slot.handle.missing_files.remote(files)):
        log.info("sending %s (%d MB) to worker %s", f.key, f.size >> 20, slot.id)
        ray.get(slot.handle.begin_file.remote(f))
        try:
            for offset, data in read_chunks(f):
                ray.get(slot.handle.write_file.remote(f.sha256, offset, data))
            ray.get(slot.handle.commit_file.remote(f.sha256))
        except RayTaskError:
            slot.handle.abort_file.remote(f.sha256)
            raise


def follow(application: Application, slot: WorkerSlot, job: Job, ref, *, own_folders: bool) -> Any:
    """Wait for the answer, forwarding interrupt/skip at once and copying the worker's progress. `own_folders`: the
    worker keeps its own data dir (--ray-worker-data-dir), so a training run's saves are fetched as they are made."""
    control, sent_interrupt, progress_ref, preview_step = job.control, False, None, -1
    # a training run on a worker with its own folders: its saves come to the head's storage as they are made
    keep_saves = job.remote.task.kind == "train-lora" and own_folders
    saves_ref, asked_saves = None, time.time()
    while True:
        ready, _ = ray.wait([ref], timeout=POLL_SECONDS)
        if ready:
            return ray.get(ref)
        if control.interrupted and not sent_interrupt:
            slot.handle.interrupt.remote(job.id)
            sent_interrupt = True
        if control.skipped:
            control.clear_skip()
            slot.handle.skip.remote(job.id)
        if saves_ref is not None and ray.wait([saves_ref], timeout=0)[0]:
            try:
                write_outputs(application, job.training, ray.get(saves_ref))
            except Exception as e:  # this ask's files are lost; the final answer or a later save brings them
                log.warning("saves of job %s not kept: %s", job.id, e)
            saves_ref = None
        if keep_saves and saves_ref is None and time.time() - asked_saves >= SAVES_SECONDS:
            saves_ref, asked_saves = slot.handle.take_outputs.remote(job.id), time.time()
        if progress_ref is None:
            progress_ref = slot.handle.progress.remote(job.id)
        elif ray.wait([progress_ref], timeout=0)[0]:
            try:
                p = ray.get(progress_ref)
            except Exception:
                p = None
            progress_ref = None
            if p:
                control.job_count = p["job_count"]
                control.start_batch(p["job_no"], p["sampling_steps"]) if p["job_no"] != control.job_no else None
                control.sampling_steps = p["sampling_steps"]
                control.step(p["sampling_step"])
                control.textinfo = p.get("textinfo") or control.textinfo
                if p.get("training") and getattr(job, "training", None) is not None:
                    copy_status(job.training, p["training"])
                if p.get("preview_step", -1) > preview_step:  # lazily, as locally: decoded when a client asks
                    preview_step = p["preview_step"]
                    control.offer_preview(preview_step, (job.id, preview_step), remote_preview(slot, job.id))


def remote_preview(slot: WorkerSlot, job_id: str):
    def make(_token: Any) -> Any:
        try:
            return ray.get(slot.handle.preview.remote(job_id), timeout=PREVIEW_TIMEOUT)
        except Exception:  # the job ended or the worker is busy: no preview this time
            return None

    return make
