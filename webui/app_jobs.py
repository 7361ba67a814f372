"""The Application's job entry points, the same for the UI and the API: txt2img, img2img (and its folder batch),
extras and interrogate. Each request is checked before it is queued (a 4xx, not a failed job), then runs in the
worker with the request's option overlay and the extensions' hooks."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, TypeVar, cast

from webui.errors import InvalidRequest
from webui.app_models import check_model_files
from webui.extensions.hooks import job_hooks, named_args
from webui.generation.estimate import estimate_request
from webui.generation.img2img import run_img2img
from webui.generation.prepare import prepare_request
from webui.generation.requests import GenerationResult, Img2ImgRequest, Txt2ImgRequest
from webui.generation.txt2img import run_txt2img
from webui.jobs import Job
from webui.lifecycle import img2img_record, request_record
from webui.workers import remote_work

if TYPE_CHECKING:
    from webui.app import Application
    from webui.extensions.host import ExtensionHost
    from webui.flags import Paths
    from webui.generation.estimate import StepTimer
    from webui.generation.processing import GenerationServices
    from webui.interrogate.service import Interrogator
    from webui.jobs import JobQueue
    from webui.models.catalog import CheckpointCatalog
    from webui.models.manager import ModelManager
    from webui.outputs import OutputWriter
    from webui.prompts.styles import StyleStore
    from webui.settings import Options

R = TypeVar("R", bound=Txt2ImgRequest)


class ApplicationJobs:
    """Mixed into webui.app.Application (its attributes below are set by Application.__init__)."""

    paths: Paths
    options: Options
    catalog: CheckpointCatalog
    models: ModelManager
    outputs: OutputWriter
    jobs: JobQueue
    workers: Any
    styles: StyleStore
    step_timer: StepTimer
    generation: GenerationServices
    interrogator: Interrogator
    extensions: ExtensionHost

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
        view.overrides.update(check_model_files(self.models, view.overrides))  # unknown VAE / module files: 422
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
                cast("Application", self),
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

        for rq in cells or []:  # a cell's own options (X/Y/Z's Shift, Clip skip …): the same check, before queueing
            if rq.override_settings != req.override_settings:
                self.options.validate({**req.override_settings, **rq.override_settings})
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
                str(user_path(cast("Application", self), input_dir, what="input folder")),
                str(user_path(cast("Application", self), output_dir, what="output folder")),
            )
            mask_dir = str(user_path(cast("Application", self), mask_dir, what="mask folder")) if mask_dir else None
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
