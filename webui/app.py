"""The Application: one object that owns every service, and the FastAPI server the UI and the API hang off."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path, PureWindowsPath
from typing import TYPE_CHECKING, Any, TypeVar

from webui import VERSION
from webui.errors import EaselError, InvalidRequest
from webui.extensions.api import API_VERSION, AppInfo
from webui.extensions.hooks import ScriptCatalog, job_hooks, named_args
from webui.extensions.host import ExtensionHost
from webui.faces.restore import FaceRestorers
from webui.flags import Paths, parse_args, resolve_paths
from webui.generation.estimate import StepTimer, estimate_request
from webui.generation.img2img import run_img2img
from webui.generation.prepare import prepare_request
from webui.generation.processing import GenerationServices
from webui.generation.requests import GenerationResult, Img2ImgRequest, Txt2ImgRequest
from webui.generation.txt2img import run_txt2img
from webui.history import open_history
from webui.interrogate.service import Interrogator
from webui.jobs import Job, JobQueue
from webui.lifecycle import img2img_record, request_record, requeue_waiting, serve
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
from webui.workers import attach_workers, remote_work

if TYPE_CHECKING:
    from webui.api.ui_reload import UiReloader
    from webui.extensions.manager import ExtensionManager

R = TypeVar("R", bound=Txt2ImgRequest)
log = logging.getLogger("easel")


class Application:
    """Owns the options, model manager, job queue, history and outputs. Nothing here is module-level state:
    tests build as many Applications as they like, each on its own data dir."""

    scripts: ScriptCatalog | None = None  # made on first use (webui/api/extensions.py script_catalog)
    extension_manager: ExtensionManager | None = None  # made on first use (webui/extensions/manager.py manager_for)
    ui_reloader: UiReloader | None = None  # Settings → "Reload UI": set by the server mounting the UI (api/server.py)

    def __init__(self, ns: argparse.Namespace | None = None, *, paths: Paths | None = None, owns_process: bool = False):
        self.ns = ns if ns is not None else parse_args([])
        self.owns_process = owns_process  # launched as the server: Easel may set process-wide things (threads)
        self.threads_source = ""
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

    def _initial_candidates(self) -> list[str]:
        """--ckpt, else the last used checkpoint, else every one found (user checkpoints before the demo)."""
        infos = self.catalog.list()
        candidates = [q for q in (self.ns.ckpt, self.options.get("sd_model_checkpoint")) if q]
        return candidates + [i.title for i in infos if not i.is_demo] + [i.title for i in infos if i.is_demo]

    def _select_initial(self) -> None:
        """Name the selected checkpoint before the server answers (the load itself runs as the first job), so
        /sdapi/v1/options and a training job posted at once see --ckpt, not "" or the first file in the folder.
        If that file then fails to load, _load_initial names the one that did."""
        for query in self._initial_candidates():
            try:
                title = self.catalog.find(query).title
            except EaselError:
                continue
            if self.options.get("sd_model_checkpoint") != title:
                self.options.set({"sd_model_checkpoint": title})
            return

    def _configure_threads(self) -> None:
        from webui.models.device import apply_threads, choose_threads

        plan = choose_threads(getattr(self.ns, "threads", None), os.environ, owns_process=self.owns_process)
        count = apply_threads(plan)
        self.threads_source = plan.source
        log.info("torch threads: %d (%s)", count, plan.source)

    def stop(self) -> None:
        self.jobs.stop()
        self.history.close()

    def _load_initial(self) -> LoadedModel | None:
        """--ckpt, else the last used checkpoint, else the first one that loads (user checkpoints before the demo).
        A corrupt file is skipped with a warning rather than leaving the app without a model."""
        tried: set[str] = set()
        for query in self._initial_candidates():
            if query in tried:
                continue
            tried.add(query)
            try:
                model = self.models.load(query, self.additional_modules())
            except EaselError as e:
                log.warning("could not load %s: %s", query, e.message)
                continue
            self.options.set({"sd_model_checkpoint": model.info.title})
            return model
        return self.models.active

    # --- services the UI and the API share -----------------------------------------------------------------------
    def additional_modules(self) -> tuple[str, ...]:
        """Forge's top-bar "VAE / Text Encoder" choice (forge_additional_modules): the files an SD3/FLUX transformer
        uses; empty means each part is picked automatically."""
        return tuple(self.options.get("forge_additional_modules") or ())

    def switch_checkpoint(self, query: str, modules: tuple[str, ...] | None = None) -> LoadedModel:
        """Switch through the queue, so a switch never happens under a running generation. `modules`: the
        VAE / Text Encoder files to load an SD3/FLUX transformer with (None: the option in force)."""
        chosen = self.additional_modules() if modules is None else modules

        def work(job: Job) -> LoadedModel:
            model = self.models.load(query, chosen)
            self.options.set({"sd_model_checkpoint": model.info.title})
            return model

        return self.jobs.run("load-checkpoint", {"checkpoint": query}, work, record=False)

    def set_options(self, changes: dict[str, Any]) -> None:
        clean = self.options.validate(dict(changes))  # the one check (422/403) for every key, before anything changes
        if clean.get("forge_additional_modules"):  # only files that are there: a name is kept, never a path
            from webui.models.parts import module_files

            files = module_files(self.models.vae_dir.parent)
            names = [PureWindowsPath(m).name for m in clean["forge_additional_modules"]]
            unknown = [
                m
                for m, n in zip(clean["forge_additional_modules"], names)
                if n not in files and n + ".safetensors" not in files
            ]
            if unknown:
                raise InvalidRequest(
                    "option forge_additional_modules: no such file in models/VAE/, "
                    f"models/text_encoder/ or models/clip/: {', '.join(unknown)[:300]}"
                )
            clean["forge_additional_modules"] = [n if n in files else n + ".safetensors" for n in names]
        title = clean.pop("sd_model_checkpoint", None)
        active = self.models.active
        # as in A1111, an unchanged value triggers nothing (clients post every option back with one edit)
        if title and not (active is not None and title == active.info.title):
            # a checkpoint and its VAE / Text Encoder files posted together load together
            self.switch_checkpoint(title, tuple(clean.get("forge_additional_modules", self.additional_modules())))
        if clean.get("sd_vae", None) == self.options.get("sd_vae"):
            clean.pop("sd_vae")
        if "sd_vae" in clean:
            vae = clean["sd_vae"]
            if vae not in ("Automatic", "None", ""):
                self.models.find_vae(vae)
            self.options.set({"sd_vae": vae})

            def apply_vae(job: Job) -> None:
                if self.models.active is not None:
                    self.models.apply_vae(self.models.active)

            self.jobs.run("apply-vae", {}, apply_vae, record=False)
            clean.pop("sd_vae")
        if clean:
            self.options.set(clean)

    def submit_txt2img(self, req: Txt2ImgRequest, *, from_api: bool, job_id: str | None = None) -> Job:
        """Queue a txt2img job. The API saves only with save_images (A1111's default); the UI always saves."""

        def run(r, services, view, control, save, save_grid):
            return run_txt2img(r, services, view, control, save=save, save_grid=save_grid)

        record = request_record("txt2img", req.model_dump(mode="json"), from_api=from_api)
        return self._submit_generation("txt2img", req, run, from_api=from_api, request=record, job_id=job_id)

    def prepare(self, req: R, kind: str) -> R:
        """The one request preparation of the UI, /sdapi/v1 and /easel/v1/jobs (webui/generation/prepare.py):
        infotext fill, then the script checks (a 422 before queueing). `kind`: "txt2img" or "img2img"."""
        return prepare_request(req, self.extensions, kind)

    def _submit_generation(
        self,
        kind: str,
        req: Txt2ImgRequest,
        run,
        *,
        from_api: bool,
        params: dict | None = None,
        after=None,
        request: dict | None = None,
        job_id: str | None = None,
        inputs: tuple | None = None,
    ) -> Job:
        """The one path for every generation: validate what can be validated now (so bad input is a 4xx before
        queueing), then run in the worker with the request's options overlay and the extensions' hooks."""
        req = self.prepare(req, kind)
        req = self.styles.apply_to_request(req)  # styles first, as A1111; an unknown one is a 422 before queueing
        save = (req.save_images if from_api else True) and not req.do_not_save_samples
        save_grid = (req.save_images if from_api else True) and not req.do_not_save_grid
        view = self.options.view(req.override_settings)  # the one option check: 422/403 before anything runs
        hooks = job_hooks(self.extensions, kind, req.alwayson_scripts)
        script = self._dropdown_script(kind, req)
        planned = self._check_cost(req, script, view, grid=save_grid and bool(view.get("grid_save")))
        cells = [0] if planned > 1 else []  # a plot's cells run so far: its progress counts cells (X/Y/Z)

        def work(job: Job) -> GenerationResult:
            services = dataclasses.replace(self.generation, hooks=hooks)
            r = hooks.before_generate(req) if hooks else req
            do_save = save and bool(view.get("samples_save"))

            def generate(rq):
                if cells:
                    job.control.start_cell(cells[0], max(planned, cells[0] + 1))
                    cells[0] += 1
                # a script's cell may bring its own overrides (checkpoint, VAE, clip skip …) on top of the request's
                v = (
                    view
                    if rq.override_settings == req.override_settings
                    else self.options.view({**req.override_settings, **rq.override_settings})
                )
                # saving follows the job's overrides too (samples_format, outdir_*, …: checked by options.view)
                return run(
                    rq,
                    dataclasses.replace(services, outputs=self.outputs.with_options(v.get)),
                    v,
                    job.control,
                    do_save,
                    save_grid,
                )

            def save_script_grid(image, *, request, infotext):
                if not (save_grid and view.get("grid_save")):
                    return None
                model = self.models.active
                return str(
                    self.outputs.with_options(view.get).save_image(
                        image,
                        kind=kind,
                        seed=request.seed,
                        prompt=request.prompt,
                        infotext=infotext,
                        grid=True,
                        model_name=model.info.infotext_name if model else "",
                    )
                )

            runner = ScriptRunner(generate, save_grid=save_script_grid)
            result = None
            if script is not None:
                rec, s, args = script
                result = self.extensions.call(rec, f"{s.title}.run", s.run, runner, r, **args)
                if result is None:
                    raise InvalidRequest(f"script {s.title!r} failed: {rec.error}")
            else:
                result = runner.generate(r)
            if after:
                after(result)
            if req.override_settings and not req.override_settings_restore_afterwards:
                self.options.set(req.override_settings)
            return result

        seconds, notice = estimate_request(self.step_timer, req, view.get, self.models.active, self.catalog.find)
        remote = (
            None
            if self.workers is None or script
            else remote_work(
                self,
                kind,
                req,
                view,
                hooks,
                save=save and bool(view.get("samples_save")),
                save_grid=save_grid,
                inputs=inputs,
                after=after,
            )
        )  # the same job on a Ray worker (webui/workers/remote.py); the head saves
        return self.jobs.submit(
            kind,
            params if params is not None else req.model_dump(mode="json"),
            work,
            request=request,
            job_id=job_id,
            estimate_seconds=seconds,
            notice=notice,
            remote=remote,
        )

    def _check_cost(self, req: Txt2ImgRequest, script, view, *, grid: bool) -> int:
        """The cost guard (webui/generation/cost.py) over the request, or the cells its dropdown script plans;
        returns the number of cells planned (0 without a script that plans them)."""
        from webui.generation.cost import check_job_cost
        from webui.generation.native import UNKNOWN_NATIVE, model_for_job, native_size

        cells = None
        if script is not None:
            rec, s, args = script
            cells = self.extensions.call(rec, f"{s.title}.planned_requests", s.planned_requests, req, **args)
        active = self.models.active

        def native_for(rq) -> int:  # the checkpoint the cell runs on, as the worker loads it
            wanted = {**req.override_settings, **rq.override_settings}.get("sd_model_checkpoint")
            model = model_for_job(active, str(wanted or view.get("sd_model_checkpoint") or ""), self.catalog.find)
            return native_size(model, unknown=UNKNOWN_NATIVE)

        check_job_cost(cells or [req], view.get, native_for, grid_for=lambda rq: grid)
        return len(cells or [])

    def _dropdown_script(self, kind: str, req: Txt2ImgRequest):
        if not req.script_name:
            return None
        found = self.extensions.find_script(req.script_name, kind)
        assert found is not None and not found[1].always_on  # prepare() refused anything else
        return found[0], found[1], named_args(found[1], req.script_args)

    def submit_img2img_batch(
        self,
        req: Img2ImgRequest,
        *,
        input_dir: str,
        output_dir: str,
        mask_dir: str | None = None,
        scale: float | None = None,
        job_id: str | None = None,
    ) -> Job:
        """img2img over a folder (the UI's Batch tab). Folders are checked before queueing."""
        from webui.generation.batch import check_batch_dirs, run_batch
        from webui.pathguard import user_path

        if input_dir and output_dir:  # when exposed, only folders inside the data/models dir (pathguard)
            input_dir, output_dir = (
                str(user_path(self, input_dir, what="input folder")),
                str(user_path(self, output_dir, what="output folder")),
            )
            mask_dir = str(user_path(self, mask_dir, what="mask folder")) if mask_dir else None
        src, dst, masks = check_batch_dirs(input_dir, output_dir, mask_dir)

        def run(r, services, view, control, save, save_grid):
            return run_batch(r, src, dst, masks, services, view, control, scale=scale)

        params = req.model_dump(mode="json", exclude={"init_images", "mask"})
        params.update(input_dir=str(src), output_dir=str(dst), mask_dir=str(masks) if masks else None)
        record = request_record(
            "img2img-batch",
            req.model_dump(mode="json", exclude={"init_images", "mask"}),
            from_api=False,
            input_dir=str(src),
            output_dir=str(dst),
            mask_dir=str(masks) if masks else None,
            scale=scale,
        )
        return self._submit_generation(
            "img2img", req, run, from_api=False, params=params, request=record, job_id=job_id
        )

    def extras(self, req, images: list) -> tuple[list, list[str], list[str]]:
        """Extras upscaling of (PIL image, name) pairs; saved to outputs/extras-images when the option says so."""
        from webui.generation.extras import run_extras

        def work(job: Job):
            return run_extras(
                images,
                req,
                models_dir=self.paths.models_dir,
                outputs=self.outputs,
                save=bool(self.options.get("samples_save")),
                max_pixels=int(self.options.get("max_generation_pixels")),
                faces=self.generation.faces,
                face_detector=str(self.options.get("face_restoration_detector") or ""),
                face_confidence=float(self.options.get("face_restoration_confidence")),
            )

        return self.jobs.run("extras", {"upscaler_1": req.upscaler_1, "count": len(images)}, work)

    def interrogate(self, image, model: str = "clip") -> str:
        """A prompt for `image` (A1111's Interrogate), run on the job queue."""
        return self.jobs.run(
            "interrogate",
            {"model": str(model)[:64]},
            lambda job: self.interrogator.interrogate(image, model),
            record=False,
        )

    def decode_image(self, data: str, field: str):
        """An image field of a request (base64 or data: URL) → PIL, within the pixel limit; errors name the field."""
        from webui.outputs import decode_base64_image

        try:
            return decode_base64_image(data, max_pixels=int(self.options.get("max_image_pixels")))
        except InvalidRequest as e:
            raise InvalidRequest(f"{field}: {e.message}") from None

    def submit_img2img(
        self, req: Img2ImgRequest, *, from_api: bool, images: list | None = None, mask=None, job_id: str | None = None
    ) -> Job:
        """Queue an img2img/inpaint job. Images are decoded here, before queueing, so bad input is a 4xx at once."""
        if images is None:
            images = [self.decode_image(s, f"init_images[{i}]") for i, s in enumerate(req.init_images)]
            mask = self.decode_image(req.mask, "mask") if req.mask else None
        if not images:
            raise InvalidRequest("init_images is empty: img2img needs an input image")

        def run(r, services, view, control, save, save_grid):
            return run_img2img(r, images, mask, services, view, control, save=save, save_grid=save_grid)

        def include_inputs(result: GenerationResult) -> None:
            if req.include_init_images:
                result.images = result.images + [im.convert("RGB") for im in images]
                result.infotexts = result.infotexts + [""] * len(images)

        params = req.model_dump(mode="json", exclude={"init_images", "mask"})
        return self._submit_generation(
            "img2img",
            req,
            run,
            from_api=from_api,
            params=params,
            after=include_inputs,
            request=img2img_record(req, images, mask, from_api),
            job_id=job_id,
            inputs=(images, mask),
        )


class ScriptRunner:
    """What a dropdown script's run() receives: `generate(request)` runs one ordinary generation in this job, and
    `save_grid(image, request=, infotext=)` saves a grid the script made (when grids are saved)."""

    def __init__(self, generate, save_grid=None):
        self.generate = generate
        if save_grid is not None:
            self.save_grid = save_grid


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
