"""One Easel worker: the body of a Ray actor (webui/workers/pool.py makes it one with `ray.remote`).

It is an Application-lite: from the head's paths and flags it builds its own checkpoint catalog, model manager (with
its RAM cache and device) and generation services, and runs the very code the local worker runs (run_txt2img,
run_img2img). It saves nothing: the images and the saves it would have made go back to the head (remote.py).

The actor runs with max_concurrency > 1, so progress(), interrupt() and skip() are answered by other threads while
run() generates: the head polls progress and forwards an interrupt at once, and the JobControl checks inside the
UNet and VAE stop the work as quickly as they do locally.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, cast

from webui.workers.remote import RecordingOutputs, RemoteTask, SnapshotOptions

if TYPE_CHECKING:
    from webui.settings import OptionsView


class EaselWorker:
    def __init__(self, worker_id: str, ns: Any, paths: Any, demo_dir: Any, threads: int | None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch

        if threads:
            torch.set_num_threads(threads)
        from webui.generation.estimate import StepTimer  # noqa: F401  (imported here: fail early if missing)
        from webui.generation.processing import GenerationServices
        from webui.lora import LoraCatalog, LoraService
        from webui.models.catalog import CheckpointCatalog
        from webui.models.device import choose_policy
        from webui.models.hashing import HashCache
        from webui.models.manager import ModelManager
        from webui.prompts.embeddings import EmbeddingCatalog
        from webui.workers.model_files import ModelFileReceiver

        self.id, self.started_at, self.paths = worker_id, time.time(), paths
        self.options = SnapshotOptions({"sd_checkpoints_limit": 1})
        hashes = HashCache(paths.cache_file)
        catalog = CheckpointCatalog(paths.ckpt_dir, hashes, demo_dir=demo_dir)
        self.policy = choose_policy(
            use_cpu=ns.use_cpu,
            device_id=ns.device_id,
            no_half=ns.no_half,
            no_half_vae=ns.no_half_vae,
            medvram=ns.medvram,
            lowvram=ns.lowvram,
            lowram=getattr(ns, "lowram", False),
        )
        self.models = ModelManager(
            catalog=catalog,
            vae_dir=paths.vae_dir,
            cache_root=paths.data_dir / "cache" / "configs",
            policy=self.policy,
            get_option=lambda key: self.options.get(key),
        )
        self.models.refresh()
        embeddings = EmbeddingCatalog(paths.embeddings_dir, hashes, active_model=lambda: self.models.active)
        loras = LoraService(LoraCatalog([paths.lora_dir, paths.lycoris_dir], hashes))
        loras.refresh()
        self.services = GenerationServices(
            manager=self.models,
            outputs=RecordingOutputs(),
            models_dir=paths.models_dir,
            embeddings=embeddings,
            loras=loras,
        )
        self.files = ModelFileReceiver(paths, hashes, on_change=self._files_changed)
        self._lock = threading.Lock()  # one generation at a time (the other threads only read and signal)
        self.controls: dict[str, Any] = {}
        self.training: dict[str, Any] = {}  # job id → TrainingStatus of a training run here
        self.outboxes: dict[str, Any] = {}  # job id → TrainingOutbox: what the run wrote, for the head to keep
        self.job: str | None = None
        self.jobs_done = 0

    # --- run -----------------------------------------------------------------------------------------------------
    def run(self, task: RemoteTask) -> dict[str, Any]:
        from webui.generation.control import JobControl

        control = JobControl()
        with self._lock:
            self.controls[task.job_id], self.job = control, task.job_id
            try:
                t0 = time.perf_counter()
                answer = self._train(task, control) if task.kind == "train-lora" else self._generate(task, control)
                answer["seconds"] = time.perf_counter() - t0  # the work itself, for the queue overhead's benchmark
                return answer
            finally:
                self.controls.pop(task.job_id, None)
                self.outboxes.pop(task.job_id, None)
                self.job = None
                self.jobs_done += 1

    def _train(self, task: RemoteTask, control) -> dict[str, Any]:
        from webui.workers.remote_training import run_on_worker

        self.options.values = dict(task.options)
        answer = run_on_worker(self, task, control, lambda box: self.outboxes.__setitem__(task.job_id, box))
        active = self.models.active
        return {
            **answer,
            "worker": self.id,
            "checkpoint": active.info.title if active else None,
            "loaded_models": self.models.cached_titles(),
            "file_loads": self.models.file_loads,
            "loaded_loras": self._loras(),
            "lora_file_reads": self.services.loras.file_reads,
            "files_received": list(self.files.received),
        }

    def take_outputs(self, job_id: str) -> list:
        """What a training run here wrote since the last ask (the head keeps the saves on its storage)."""
        box = self.outboxes.get(job_id)
        return box.take() if box is not None else []

    def _generate(self, task: RemoteTask, control) -> dict[str, Any]:
        from webui.generation.img2img import run_img2img
        from webui.generation.txt2img import run_txt2img

        self.options.values = dict(task.options)
        view = SnapshotOptions(self.options.values)
        outputs = RecordingOutputs()
        services = dataclasses.replace(self.services, outputs=outputs)
        if task.checkpoint and task.checkpoint not in self.models.cached_titles():
            try:
                self.models.catalog.find(task.checkpoint)
            except Exception:  # a checkpoint added on the head since this worker scanned the folder
                self.models.refresh()
        opts = cast("OptionsView", view)  # a snapshot with OptionsView's get()
        if task.kind == "img2img":
            result = run_img2img(
                task.request,
                task.images or [],
                task.mask,
                services,
                opts,
                control,
                save=task.save,
                save_grid=task.save_grid,
            )
        else:
            result = run_txt2img(task.request, services, opts, control, save=task.save, save_grid=task.save_grid)
        active = self.models.active
        return {
            "result": result,
            "saves": outputs.saves,
            "worker": self.id,
            "step_samples": list(control.step_samples),
            "checkpoint": active.info.title if active else None,
            "loaded_models": self.models.cached_titles(),
            "file_loads": self.models.file_loads,
            "loaded_loras": self._loras(),
            "lora_file_reads": self.services.loras.file_reads,
            "files_received": list(self.files.received),
        }

    # --- model files the head sends (when this worker does not share the head's models folder) --------------------
    def missing_files(self, files: list) -> list:
        return self.files.missing(files)

    def begin_file(self, file) -> None:
        self.files.begin(file)

    def write_file(self, sha256: str, offset: int, data: bytes) -> int:
        return self.files.write(sha256, offset, data)

    def commit_file(self, sha256: str) -> str:
        return self.files.commit(sha256)

    def abort_file(self, sha256: str) -> None:
        self.files.abort(sha256)

    def _files_changed(self, folders: set[str]) -> None:
        if folders & {"Stable-diffusion", "VAE"}:
            self.models.refresh()
        if folders & {"Lora", "LyCORIS"}:
            self.services.loras.refresh()

    def _loras(self) -> list[str]:
        active = self.models.active
        return self.services.loras.held_names(active) if active is not None else []

    # --- what the head asks while a job runs ---------------------------------------------------------------------
    def progress(self, job_id: str) -> dict[str, Any] | None:
        control = self.controls.get(job_id)
        if control is None:
            return None
        training = self.training.get(job_id)
        return {
            "job_no": control.job_no,
            "job_count": control.job_count,
            "sampling_step": control.sampling_step,
            "sampling_steps": control.sampling_steps,
            "preview_step": control.preview_step,
            "textinfo": control.textinfo,
            "training": training.to_dict() if training is not None else None,
        }

    def preview(self, job_id: str) -> Any:
        """The live preview of the latest offered step, decoded here (the head asks only when a client wants it)."""
        control = self.controls.get(job_id)
        return control.current_image if control is not None else None

    def interrupt(self, job_id: str) -> bool:
        control = self.controls.get(job_id)
        if control is not None:
            control.interrupt()
        return control is not None

    def skip(self, job_id: str) -> bool:
        control = self.controls.get(job_id)
        if control is not None:
            control.skip()
        return control is not None

    def info(self) -> dict[str, Any]:
        """What GET /easel/v1/workers shows (the head adds the id's state and heartbeat time)."""
        try:
            import ray

            node = ray.get_runtime_context().get_node_id()
        except Exception:
            node = socket.gethostname()
        return {
            "id": self.id,
            "node": node,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": str(self.policy.device),
            "loaded_models": self.models.cached_titles(),
            "loaded_loras": self._loras(),
            "lora_file_reads": self.services.loras.file_reads,
            "job": self.job,
            "jobs_done": self.jobs_done,
            "file_loads": self.models.file_loads,
            "files_received": list(self.files.received),
        }
