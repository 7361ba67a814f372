"""What crosses between the head and a worker on Ray, with no Ray in it (so `--workers local` never imports Ray).

A generation job that can run on a worker carries a `RemoteWork`: a picklable `RemoteTask` (the validated request,
its input images, the effective options: the head's persisted values under the request's overrides, and whether to
save) plus head-side `finish`, which the head runs on what comes back. The worker runs the same generation code as
the local worker, with a `RecordingOutputs` in place of the OutputWriter: every `save_image` call is recorded with its
image and arguments and answered with a placeholder path; the head then replays those calls in order through its
own OutputWriter (same names, folders, infotext, atomic writes as today) and puts the real paths in the result.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from webui.app import Application

PLACEHOLDER = "easel-remote://"  # prefix of the paths a worker hands out before the head has saved anything


@dataclass
class RemoteTask:
    """Everything a worker needs to run one generation (pickled to the worker)."""

    job_id: str
    kind: str  # "txt2img" | "img2img"
    request: Any  # Txt2ImgRequest / Img2ImgRequest, already validated and styled on the head
    options: dict[str, Any]  # effective options for this job
    save: bool
    save_grid: bool
    images: list | None = None  # img2img: decoded input images (PIL)
    mask: Any = None
    files: list = field(default_factory=list)  # NeededFile: what the worker must hold (model_files.py)

    @property
    def checkpoint(self) -> str:
        return str(self.options.get("sd_model_checkpoint") or "")


@dataclass
class RemoteWork:
    task: RemoteTask
    finish: Callable[[dict[str, Any]], Any]  # head side: the worker's answer → the job's value


@dataclass
class SnapshotOptions:
    """Options read from a dict (a worker's view of the head's options for one job); same get() as OptionsView."""

    values: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str) -> Any:
        return self.values[key]

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_") or key == "values":
            raise AttributeError(key)
        try:
            return self.values[key]
        except KeyError:
            raise AttributeError(key) from None


class RecordingOutputs:
    """A worker's OutputWriter: records each save (image + arguments) for the head to replay, writes nothing."""

    def __init__(self) -> None:
        self.saves: list[tuple[Any, dict[str, Any]]] = []

    def with_options(self, get_option: Any) -> "RecordingOutputs":
        return self

    def save_image(self, image: Any, **kwargs: Any) -> Path:
        self.saves.append((image, kwargs))
        return Path(f"{PLACEHOLDER}{len(self.saves) - 1}")


# extension events that act on every image or step: a job is kept on the head's local worker while any extension
# listens to one, since extensions are loaded on the head only (before_generate/pipeline_call listeners act through
# a job's always-on scripts, which keep it local too)
LOCAL_ONLY_EVENTS = ("after_image", "step_end", "image_saved")


def remote_work(
    application: Application,
    kind: str,
    req,
    view,
    hooks,
    *,
    save: bool,
    save_grid: bool,
    inputs: tuple | None,
    after: Callable | None,
) -> RemoteWork | None:
    """The remote part of a generation job, or None when it must run here: a batch over folders, img2img with no
    decoded inputs, always-on scripts, extensions listening to images or steps. `save` is already the job's
    do-save (request and samples_save)."""
    if kind not in ("txt2img", "img2img") or (kind == "img2img" and inputs is None):
        return None
    if hooks is not None and (hooks.scripts or any(hooks.host.has_hooks(e) for e in LOCAL_ONLY_EVENTS)):
        return None
    options = {**application.options.all(), **view.overrides}
    images, mask = inputs if inputs is not None else (None, None)
    task = RemoteTask(
        job_id="", kind=kind, request=req, options=options, save=save, save_grid=save_grid, images=images, mask=mask
    )

    def finish(answer: dict[str, Any]) -> Any:
        return finish_on_head(application, view, req, answer, after)

    return RemoteWork(task=task, finish=finish)


def finish_on_head(application: Application, view, req, answer: dict[str, Any], after: Callable | None) -> Any:
    """Replay the worker's saves through the head's OutputWriter, then what the local job does after generating."""
    result = answer["result"]
    writer = application.outputs.with_options(view.get)
    real = {
        f"{PLACEHOLDER}{i}": str(writer.save_image(image, **kwargs))
        for i, (image, kwargs) in enumerate(answer.get("saves") or [])
    }
    result.paths = [real.get(p, p) for p in result.paths]
    if answer.get("step_samples") and answer.get("checkpoint"):
        application.step_timer.record(answer["checkpoint"], answer["step_samples"])
    if after:
        after(result)
    if req.override_settings and not req.override_settings_restore_afterwards:
        application.options.set(req.override_settings)
    return result


def with_job_id(task: RemoteTask, job_id: str) -> RemoteTask:
    return dataclasses.replace(task, job_id=job_id)
