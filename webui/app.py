"""The Application: one object that owns every service, and the FastAPI server the UI and the API hang off."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webui import VERSION
from webui.app_jobs import ApplicationJobs
from webui.app_models import ApplicationModels
from webui.extensions.api import API_VERSION, AppInfo
from webui.extensions.hooks import ScriptCatalog
from webui.extensions.host import ExtensionHost
from webui.faces.restore import FaceRestorers
from webui.flags import Paths, parse_args, resolve_paths
from webui.generation.estimate import StepTimer
from webui.generation.processing import GenerationServices
from webui.generation.requests import GenerationResult
from webui.history import open_history
from webui.interrogate.service import Interrogator
from webui.jobs import Job, JobQueue
from webui.lifecycle import requeue_waiting, serve
from webui.lora import LoraCatalog, LoraService
from webui.models.catalog import CheckpointCatalog
from webui.models.device import choose_policy
from webui.models.folder_watch import FolderWatch
from webui.models.hashing import HashCache
from webui.models.lists import model_folders, named_choices
from webui.models.manager import LoadedModel, ModelManager
from webui.option_policy import OptionPolicy
from webui.outputs import OutputWriter
from webui.prompts.embeddings import EmbeddingCatalog
from webui.prompts.styles import StyleStore
from webui.settings import Options
from webui.workers import attach_workers

if TYPE_CHECKING:
    from webui.api.ui_reload import UiReloader
    from webui.extensions.manager import ExtensionManager

log = logging.getLogger("easel")


class Application(ApplicationModels, ApplicationJobs):
    """Owns the options, model manager, job queue, history and outputs. Nothing here is module-level state:
    tests build as many Applications as they like, each on its own data dir. Which checkpoint is active and option
    changes: ApplicationModels (webui/app_models.py); the jobs the UI and the API queue: ApplicationJobs
    (webui/app_jobs.py)."""

    scripts: ScriptCatalog | None = None  # made on first use (webui/api/extensions.py script_catalog)
    extension_manager: ExtensionManager | None = None  # made on first use (webui/extensions/manager.py manager_for)
    ui_reloader: UiReloader | None = None  # Settings → "Reload UI": set by the server mounting the UI (api/server.py)

    def __init__(self, ns: argparse.Namespace | None = None, *, paths: Paths | None = None, owns_process: bool = False):
        self.ns = ns if ns is not None else parse_args([])
        self.owns_process = owns_process  # launched as the server: Easel may set process-wide things (threads)
        self.threads_source = ""
        self.inductor_cache: str | None = None  # where cpu_compile's graphs are cached (set when owning the process)
        self.paths = paths or resolve_paths(self.ns)
        self.paths.data_dir.mkdir(parents=True, exist_ok=True)
        self.options = Options(self.paths.config_file, policy=self._option_policy())
        self.hashes = HashCache(self.paths.cache_file)
        self.catalog = CheckpointCatalog(self.paths.ckpt_dir, self.hashes, demo_dir=self.paths.demo_dir)
        self.policy = choose_policy(
            use_cpu=self.ns.use_cpu,
            device_id=self.ns.device_id,
            no_half=self.ns.no_half,
            no_half_vae=self.ns.no_half_vae,
            medvram=self.ns.medvram,
            lowvram=self.ns.lowvram,
            lowram=self.ns.lowram,
        )
        self.models = ModelManager(
            catalog=self.catalog,
            vae_dir=self.paths.vae_dir,
            cache_root=self.paths.data_dir / "cache" / "configs",
            policy=self.policy,
            get_option=self.options.get,
        )
        self.outputs = OutputWriter(self.paths.data_dir, self.options.get)
        self.history = open_history(getattr(ns, "database_url", None), self.paths.db_file)
        self.jobs = JobQueue(self.history, summarize=_summarize)
        self.workers = attach_workers(self)  # --workers ray: a RayPool runs generations (webui/workers/)
        self.embeddings = EmbeddingCatalog(
            self.paths.embeddings_dir, self.hashes, active_model=lambda: self.models.active
        )
        self.styles = StyleStore(self.paths.styles_files)
        self.lora_catalog = LoraCatalog([self.paths.lora_dir, self.paths.lycoris_dir], self.hashes)
        self.loras = LoraService(self.lora_catalog)
        self.step_timer = StepTimer()  # measured step times: "about N min on this device" before a job runs
        self.generation = GenerationServices(
            manager=self.models,
            outputs=self.outputs,
            models_dir=self.paths.models_dir,
            embeddings=self.embeddings,
            loras=self.loras,
            timer=self.step_timer,
            faces=FaceRestorers(self.paths.models_dir),
        )
        self.interrogator = Interrogator(self.paths.models_dir, self.options.get)
        self.extensions = self._extension_host()
        self.models.on_loaded = self._on_model_loaded
        # a file added to a model folder shows in every list without 🔄: pages poll the token (#19 item 7)
        self.model_watch = FolderWatch(self._watched_folders, self.rescan_models)
        self.model_watch.token()  # the listing before start()'s scan: a file added after it is a change
        self.share_url: str | None = None
        self.started = False

    @property
    def extensions_locked(self) -> bool:
        from webui.flags import is_network_exposed

        return is_network_exposed(self.ns) and not self.ns.enable_insecure_extension_access

    def _option_policy(self) -> OptionPolicy:
        """What remote users may change (webui/option_policy.py): on loopback everything well-typed."""
        from webui.flags import is_network_exposed

        exposed = is_network_exposed(self.ns)
        return OptionPolicy(
            exposed=exposed,
            extensions_locked=self.extensions_locked,
            allow_path_options=bool(getattr(self.ns, "allow_path_options", False)),
            roots=(self.paths.data_dir, self.paths.models_dir),
        )

    def _extension_host(self) -> ExtensionHost:
        dirs = [(self.paths.repo_dir / "extensions", True)]
        if self.paths.extensions_dir.resolve() != dirs[0][0].resolve():
            dirs.append((self.paths.extensions_dir, False))
        host = ExtensionHost(
            dirs=dirs,
            options=self.options,
            disable_all=self.ns.disable_all_extensions,
            disable_extra=self.ns.disable_extra_extensions,
            models_dir=self.paths.models_dir,
            lists=lambda kind: named_choices(self.models, kind),
        )
        host.discover()
        host.load_all()
        return host

    def _watched_folders(self) -> list[Path]:
        configured = (
            str(self.options.get("control_net_models_path") or "").strip()
            if "control_net_models_path" in self.options.defs
            else ""
        )
        return [*model_folders(self.paths), *([Path(configured).expanduser()] if configured else [])]

    def rescan_models(self) -> None:
        """What 🔄 rescans, for a change `model_watch` saw: checkpoints and VAEs, LoRAs, embeddings."""
        self.models.refresh()
        self.loras.refresh()
        self.embeddings.refresh(force=False)

    def _on_model_loaded(self, model: LoadedModel) -> None:
        from webui.extensions.api import ModelInfo

        denoiser = getattr(model.pipeline, "unet", None) or model.pipeline.transformer  # SD3/FLUX: a transformer
        text_dim = denoiser.config.get("cross_attention_dim") or denoiser.config.get("joint_attention_dim")
        self.extensions.emit(
            "model_loaded",
            ModelInfo(
                title=model.info.title,
                name=model.info.model_name,
                hash=model.info.shorthash,
                family=model.probe.family.value,
                native_size=model.native_size,
                cross_attention_dim=text_dim,
            ),
        )

    # --- lifecycle -----------------------------------------------------------------------------------------------
    def start(self, *, wait_for_model: bool = False) -> None:
        if self.ns.ckpt and Path(self.ns.ckpt).expanduser().exists():
            self.catalog.add_file(Path(self.ns.ckpt))
        self._configure_threads()
        from webui.models.openvino_cache import clean_interrupted

        clean_interrupted(self.models.cache_root.parent / "openvino")  # conversions a killed process left half-written
        self.models.refresh()
        self.loras.refresh()
        self._select_initial()
        self.jobs.start()
        self.started = True
        self.extensions.emit(
            "app_started",
            AppInfo(
                version=VERSION,
                api_version=API_VERSION,
                device=str(self.policy.device),
                models_dir=self.paths.models_dir,
                data_dir=self.paths.data_dir,
            ),
        )
        # the load is the queue's first job: whatever needs the model (re-queued jobs included) waits behind it
        job = self.jobs.submit("load-checkpoint", {}, lambda j: self._load_initial(), record=False)
        requeue_waiting(self)
        if wait_for_model:
            self.jobs.wait(job)

    def _configure_threads(self) -> None:
        from webui.models.device import apply_threads, choose_threads

        plan = choose_threads(getattr(self.ns, "threads", None), os.environ, owns_process=self.owns_process)
        count = apply_threads(plan)
        self.threads_source = plan.source
        log.info("torch threads: %d (%s)", count, plan.source)
        if self.owns_process:  # compiled graphs (cpu_compile) survive a restart: models/compile.py
            from webui.models.compile import use_cache_dir

            self.inductor_cache = use_cache_dir(self.paths.data_dir / "cache" / "inductor", os.environ)

    def stop(self) -> None:
        self.jobs.stop()
        self.history.close()


def _summarize(job: Job) -> dict[str, Any] | None:
    if job.kind == "train-lora":
        from webui.training.jobs import training_summary

        return training_summary(job)
    value = job.value
    if isinstance(value, GenerationResult):
        return {"images": value.paths, "infotexts": value.infotexts, "info": value.info}
    return value if job.kind in ("merge", "install-model") else None  # {name, path, …} of the new file


def create_server(application: Application):
    """The FastAPI app with the API routers and (unless --nowebui) the Gradio UI mounted at /."""
    from webui.api.server import build_fastapi

    return build_fastapi(application)


def main(ns: argparse.Namespace | None = None) -> None:
    from webui.flags import bind_host

    ns = ns if ns is not None else parse_args(sys.argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _quiet_libraries()
    application = Application(ns, owns_process=True)
    application.start()
    server = create_server(application)
    host = bind_host(ns)
    print(f"Easel {VERSION}: http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{ns.port}", flush=True)
    serve(
        application,
        server,
        host=host,
        port=ns.port,
        log_level="warning",
        ssl_keyfile=ns.tls_keyfile,
        ssl_certfile=ns.tls_certfile,
    )  # SIGTERM: interrupt, keep the queue, exit


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        from diffusers.utils import logging as dlog
        from transformers.utils import logging as tlog

        dlog.set_verbosity_error()
        tlog.set_verbosity_error()
        tlog.disable_progress_bar()  # LoRA loads print "Loading weights" bars otherwise
    except ImportError:
        pass
