"""Training jobs ("train-lora") on a Ray worker, with the run's saves kept on the head's storage. No Ray in here.

The head queues the job with a remote part (`training_work`) whose task carries the checked TrainingPlan. The worker
runs the very `run_training` the local worker runs, on its own model manager, with the plan's paths moved into its
own folders (`plan_on_worker`; the same paths when it shares the head's). While it runs, the head asks the worker
every second for what its run wrote since the last ask (`TrainingOutbox`: the resume state, the exported or partial
LoRA, sample images) and writes those files into its own folders, atomically. So when the worker is lost the job is
re-queued, the next worker receives the head's last resume state with the checkpoint and the dataset
(model_files.training_files), and the run continues from that save instead of from step 0.

A worker that shares the head's folders writes them itself, and nothing is copied.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, cast

from webui.workers.model_files import folder_roots, safe_target
from webui.workers.remote import RemoteTask, RemoteWork

if TYPE_CHECKING:
    from webui.app import Application

KIND = "train-lora"
DATASET_DIR = "dataset"  # under <data-dir>/training/<name>/ on a worker with its own folders


def training_work(application: Any, plan: Any, status: Any) -> RemoteWork:
    """The remote part of a training job: the plan goes to a worker, its saves and status come back."""
    options = {**application.options.all(), "sd_model_checkpoint": plan.checkpoint.title}
    task = RemoteTask(job_id="", kind=KIND, request=plan, options=options, save=False, save_grid=False)

    def finish(answer: dict[str, Any]) -> Any:
        return finish_training(application, plan, status, answer)

    return RemoteWork(task=task, finish=finish)


def copy_status(status: Any, remote: dict[str, Any] | None) -> None:
    """The worker's TrainingStatus (as to_dict) into the head's, which the jobs API and the Train tab read."""
    if not remote:
        return
    for key in ("step", "loss", "losses", "phase", "resumed_from", "result"):
        if key in remote:
            setattr(status, key, remote[key])
    if remote.get("phase") == "training" and status._t0 is None:
        status._t0, status._s0 = time.time(), int(remote.get("step") or 0)


def write_outputs(application: Any, status: Any, outputs: list[tuple[str, str, bytes]]) -> None:
    """Files a worker's run wrote, into the head's folders (temp file, then rename); samples keep their order."""
    from webui.fsutil import atomic_write_bytes

    roots = folder_roots(application.paths)
    for folder, rel, data in outputs:
        target = safe_target(roots, folder, rel)
        atomic_write_bytes(target, data)
        if folder == "training" and "/samples/" in f"/{rel}" and str(target) not in status.samples:
            status.samples.append(str(target))


def finish_training(application: Any, plan: Any, status: Any, answer: dict[str, Any]) -> Any:
    pool = getattr(application, "workers", None)
    own = getattr(pool, "worker_paths", None) is not None
    copy_status(status, answer.get("status"))
    if own:
        write_outputs(application, status, answer.get("outputs") or [])
        if status.phase == "done":  # what run_training removes at the end of a completed run, on the head too
            plan.state_file.unlink(missing_ok=True)
            if plan.replaces:
                plan.partial_output.unlink(missing_ok=True)
    result = dict(status.result or {})
    result["path"] = str(plan.output) if plan.output.exists() else None
    if result.get("partial"):
        partial = plan.partial_output if plan.replaces else plan.output
        result["partial"] = str(partial) if partial.exists() else None
    status.result = result
    application.loras.refresh()  # the new LoRA is in the head's list at once
    return result


# --- worker side -------------------------------------------------------------------------------------------------


def plan_on_worker(plan: Any, paths: Any, job_id: str) -> Any:
    """The plan with its output, run folder and (when sent) dataset in this worker's folders."""
    from webui.training.dataset import load_dataset

    work_dir = Path(paths.data_dir) / "training" / plan.req.name
    dataset = plan.dataset
    sent = work_dir / f"{DATASET_DIR}-{job_id[:12]}"
    if sent.is_dir():
        dataset = load_dataset(sent, plan.req.caption)
    return dataclasses.replace(plan, output=Path(paths.lora_dir) / plan.output.name, work_dir=work_dir, dataset=dataset)


class TrainingOutbox:
    """What a run on this worker wrote since the head last asked: (folder, rel, bytes) for the head to keep."""

    def __init__(self, plan: Any, paths: Any):
        self.plan, self.roots = plan, folder_roots(paths)
        self._sent: dict[Path, tuple[int, int]] = {}

    def _files(self) -> list[tuple[str, Path]]:
        found = [("Lora", p) for p in (self.plan.output, self.plan.partial_output)]
        work = self.plan.work_dir
        if work.is_dir():
            for p in sorted(work.rglob("*")):
                rel = p.relative_to(work).parts
                if p.is_file() and not rel[0].startswith(DATASET_DIR) and not p.name.startswith("."):
                    found.append(("training", p))
        return found

    def take(self) -> list[tuple[str, str, bytes]]:
        out = []
        for folder, path in self._files():
            try:
                st = path.stat()
                if self._sent.get(path) == (st.st_mtime_ns, st.st_size):
                    continue
                data = path.read_bytes()
            except OSError:  # not written yet, or being replaced right now: the next ask gets it
                continue
            self._sent[path] = (st.st_mtime_ns, st.st_size)
            out.append((folder, path.relative_to(self.roots[folder]).as_posix(), data))
        return out


def run_on_worker(
    worker: Any, task: RemoteTask, control: Any, outbox_ready: Callable[[TrainingOutbox], None]
) -> dict[str, Any]:
    """A worker's body for a training task: run_training on its own models, in its own folders."""
    from types import SimpleNamespace

    from webui.training import TrainingStatus
    from webui.training.run import run_training

    plan = plan_on_worker(task.request, worker.paths, task.job_id)
    status = TrainingStatus(total_steps=plan.config.steps)
    outbox = TrainingOutbox(plan, worker.paths)
    worker.training[task.job_id] = status
    outbox_ready(outbox)
    try:
        app = SimpleNamespace(models=worker.models, loras=worker.services.loras)
        # a stand-in with the two services run_training uses on a worker
        run_training(cast("Application", app), plan, SimpleNamespace(control=control), status)
    finally:
        worker.training.pop(task.job_id, None)
    return {"status": status.to_dict(), "outputs": outbox.take()}
