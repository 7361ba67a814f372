"""Easel's extension contract, version 1. Extensions import only this module.

An extension is a folder with `extension.toml` (name, version, api = 1, optional description, requires, min_easel)
and Python modules in `scripts/`. Each module may define `setup(ext)`; `ext` is an `ExtensionHandle`. Everything
an extension can do goes through the handle, by keyword. See docs/extensions.md for a worked example.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

API_VERSION = 1
EVENTS = ("app_started", "model_loaded", "before_generate", "step_end", "after_image", "image_saved", "pipeline_call")
LISTS = ("checkpoints", "vae", "samplers", "schedulers")  # what `ExtensionHandle.choices(kind)` names


class ScriptError(Exception):
    """Raise it from a script or hook to reject its input (bad values, nothing to do): the job fails with this
    message (a 422 from the API, a visible message in the UI), and the extension stays enabled. Any other exception
    is a bug: the extension is reported and disabled for the session."""


class Runner(Protocol):
    """What a dropdown script's `run(runner, request, **args)` receives."""

    def generate(self, request: Any) -> Any:
        """Run one ordinary generation of `request` in this job (hooks, saving and infotext as usual) and return
        its result: `images`, `infotexts`, `paths`, `info` (A1111's info dict), `interrupted`. Make variants with
        `request.model_copy(update={...})`; `override_settings` (checkpoint, VAE, clip skip, ...) apply per call."""

    def save_grid(self, image: Any, *, request: Any, infotext: str) -> str | None:
        """Optional (check with getattr): save a grid image the script made to the grids folder; returns its path,
        or None when grids are not saved for this job."""


@dataclass
class StepInfo:
    """Passed to `step_end` hooks after each denoising step. Return a tensor to replace `latents`, or None."""

    step: int  # 1-based
    total: int
    timestep: Any
    latents: Any  # torch.Tensor [batch, C, h, w]
    kind: str = "txt2img"


@dataclass
class ImageContext:
    """Describes one finished image for `after_image` / `image_saved` hooks and scripts."""

    index: int
    seed: int
    prompt: str
    negative_prompt: str
    infotext: str
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    # (API 1, additive) `inpaint(image, mask, **fields) → image`: one inpaint of this image in this job, on its
    # checkpoint, "only masked" by default; fields override the job's (prompt, negative_prompt, denoising_strength,
    # mask_blur, inpaint_full_res, inpaint_full_res_padding, width, height, steps, cfg_scale, sampler_name,
    # scheduler, seed, inpainting_fill). No script runs on it and nothing is saved. None outside generation.
    inpaint: Callable[..., Any] | None = None


@dataclass(frozen=True)
class AppInfo:
    """Passed to `app_started` hooks, once the server has started: what an extension may know about this Easel
    (not the application object: its internals are not part of the contract)."""

    version: str  # Easel's version, e.g. "0.2.0"
    api_version: int  # the contract version this Easel provides (API_VERSION)
    device: str  # where generations run: "cpu", "cuda:0", …
    models_dir: Path  # A1111's models layout (`ext.models_dir(kind)` gives one kind's folder)
    data_dir: Path  # Easel's data dir (outputs, config.json)


@dataclass
class ModelInfo:
    title: str
    name: str
    hash: str
    family: str
    native_size: int
    cross_attention_dim: int | None = None  # the text-conditioning width (768 SD 1.x, 1024 SD 2.x, 2048 SDXL)


@dataclass
class PipelineCall:
    """Passed to `pipeline_call` hooks just before each diffusers pipeline call of a job (the hires second pass
    too). Return (pipeline, kwargs) to run another pipeline — e.g. `StableDiffusionControlNetPipeline.from_pipe(
    call.pipeline, controlnet=...)` — with other arguments, or None to keep them. The prompt embeddings and the step
    callback are added afterwards, so a replacement pipeline must accept `prompt_embeds` and
    `callback_on_step_end`."""

    kind: str  # "txt2img", "img2img" or "inpaint" (also txt2img on a 9-channel checkpoint)
    pipeline: Any
    kwargs: dict[str, Any]
    hires: bool = False
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    step_listeners: list[Callable[[Any], None]] = field(default_factory=list)

    def after(self, fn: Callable[[], None]) -> None:
        """(API 1, additive) Run `fn()` once this pipeline call has finished, also on an error or an interrupt
        (last registered, first run): undo what the hook switched on the pipeline's models for this call only
        (e.g. diffusers' `unload_ip_adapter` after `load_ip_adapter`)."""
        self.cleanups.append(fn)

    def on_step(self, fn: Callable[["StepInfo"], None]) -> None:
        """(API 1, additive) Call `fn(StepInfo)` after each denoising step of this pipeline call only (e.g. a
        per-step weight schedule). Prefer it to a global `step_end` hook for work that belongs to the calls a
        `pipeline_call` hook changed: a `step_end` listener keeps every job on the head's local worker when jobs
        run on workers (docs/scaling.md), this does not."""
        self.step_listeners.append(fn)

    def follow_offload(self, *modules: Any) -> None:
        """(API 1, additive) Put models the hook adds to this call (e.g. a ControlNet: `pipeline_over(cls,
        call.pipeline, controlnet=net)` shares the checkpoint's parts, not their offloading) in the offloading the
        checkpoint's denoiser has now (--medvram: model CPU offload, --lowvram or the GPU weights budget: group
        offloading), undone when the call ends (the modules leave it in RAM without hooks). Without offloading it
        does nothing: put them on the denoiser's device yourself."""
        from webui.models.offload import follow_offload

        self.after(follow_offload(self.pipeline, list(modules)))

    def refresh_offload(self) -> None:
        """(API 1, additive) After the hook changed the denoiser's layers in place (e.g. diffusers'
        `load_ip_adapter`, or `unload_ip_adapter` in an `after` function): re-make its group offloading over the
        layers it has now (the groups are made from the layers present when offloading was applied)."""
        from webui.models.offload import refresh_group_offload

        refresh_group_offload(self.pipeline)


@dataclass
class ArgGroup:
    """A `ui()` value that makes one argument out of several components (e.g. a ControlNet unit from a dozen
    controls): the UI passes their values, in order, to `combine(*values)` and sends the result as the argument.
    `describe` (optional) is the argument's value in `/sdapi/v1/script-info`."""

    components: list[Any]
    combine: Callable[..., Any]
    describe: Any = None


class Script:
    """A UI-bearing script for txt2img and/or img2img (A1111's Script, by name instead of by position).

    Set `title`, `visibility` ("txt2img", "img2img" or "both") and `always_on`. `args` declares the argument names
    in order (so API clients that send a list still work); `ui(is_img2img)` returns {name: gradio component}.
    Always-on scripts get `process(request, **args)` (may return a changed request) and
    `postprocess_image(image, ctx, **args)` (may return a new image). A dropdown script (always_on = False)
    implements `run(runner, request, **args)`, which replaces the normal generation: `runner.generate(request)`
    runs one ordinary generation and returns its result (images, infotexts, info); see `Runner`. Give every argument
    a default (clients may send only some), and raise `ScriptError` to reject bad input.

    Infotext (API 1, additive): an always-on script's `infotext_params(request, **args)` returns parameters written
    into every image's infotext (A1111's `extra_generation_params`), after `process`. `paste(params, is_img2img)`
    gets a parsed infotext (PNG Info, Send-to, ↙️) and returns {argument name: value} to restore; for an `ArgGroup`
    argument the value is a list with one value per component (None leaves that component as it is).
    """

    title: str = "script"
    visibility: str = "both"
    always_on: bool = False
    args: tuple[str, ...] = ()

    def ui(self, is_img2img: bool) -> dict[str, Any]:
        return {}

    def process(self, request: Any, **args: Any) -> Any:
        return request

    def postprocess_image(self, image: Any, ctx: ImageContext, **args: Any) -> Any:
        return None

    def infotext_params(self, request: Any, **args: Any) -> Mapping[str, Any]:
        return {}

    def paste(self, params: Mapping[str, str], is_img2img: bool) -> dict[str, Any]:
        return {}

    def run(self, runner: Any, request: Any, **args: Any) -> Any:
        raise NotImplementedError(f"{self.title} is not a dropdown script")

    def planned_requests(self, request: Any, **args: Any) -> list[Any] | None:
        """Optional for a dropdown script (API 1, additive): the requests `run` would pass to `runner.generate`,
        computed without generating anything. Easel calls it before the job is queued and refuses (422) a job whose
        requests together are over the cost limits (sizes, batch memory, grid size, total work). Count before you
        build: raise ScriptError instead of making a huge list. None (the default): only `request` is checked."""
        return None

    def shows_in(self, kind: str) -> bool:
        return self.visibility in ("both", kind)


class ExtensionHandle:
    """What `setup(ext)` receives. The host fills in the registries; an extension only calls these methods."""

    def __init__(
        self,
        *,
        name: str,
        path: Path,
        settings: "ExtensionSettings",
        log: logging.Logger,
        models_dir: Path | None = None,
        lists: Callable[[str], list[str]] | None = None,
    ):
        self.name, self.path, self.settings, self.log = name, path, settings, log
        self._models_dir, self._lists = models_dir, lists
        self.routes: list[tuple[str, Callable, tuple[str, ...]]] = []
        self.tabs: list[tuple[str, Callable[[], Any]]] = []
        self.hooks: dict[str, list[Callable]] = {e: [] for e in EVENTS}
        self.scripts: list[Script] = []

    def models_dir(self, kind: str) -> Path:
        """<models dir>/<kind> (A1111's layout), e.g. ext.models_dir("ControlNet")."""
        if self._models_dir is None:
            raise RuntimeError("this host gives extensions no models folder")
        return self._models_dir / kind

    def choices(self, kind: str) -> list[str]:
        """(API 1, additive) The names the UI's lists offer now: "checkpoints" (titles, as `sd_model_checkpoint`
        takes them), "vae" (`sd_vae` values: Automatic, None, each file), "samplers", "schedulers" (schedule type
        labels). Ask each time: files come and go. Empty when the host keeps no lists."""
        if kind not in LISTS:
            raise ValueError(f"unknown list {kind!r}; lists: {', '.join(LISTS)}")
        return list(self._lists(kind)) if self._lists is not None else []

    def add_api_route(self, path: str, endpoint: Callable, *, methods: tuple[str, ...] | list[str] = ("GET",)) -> None:
        """Served at /ext/<name><path>, behind the same auth as the API."""
        if not path.startswith("/"):
            raise ValueError("path must start with '/'")
        self.routes.append((path, endpoint, tuple(m.upper() for m in methods)))

    def add_tab(self, *, title: str, build: Callable[[], Any]) -> None:
        """`build()` creates Gradio components inside a new top-level tab."""
        self.tabs.append((title, build))

    def add_setting(
        self,
        *,
        key: str,
        default: Any,
        label: str,
        section: str | None = None,
        choices: tuple | None = None,
        minimum: float | None = None,
        maximum: float | None = None,
        path: bool = False,
    ) -> None:
        """Shown in Settings (section defaults to the extension's name) and persisted to config.json. Values are
        checked against the default's type and `minimum`/`maximum`; `path=True` (or a key ending in _path/_dir)
        marks a server path, read-only while the server is exposed."""
        self.settings.define(
            key=key,
            default=default,
            label=label,
            section=section or self.name,
            choices=choices,
            minimum=minimum,
            maximum=maximum,
            path=path,
        )

    def on(self, event: str, fn: Callable) -> None:
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; events: {', '.join(EVENTS)}")
        self.hooks[event].append(fn)

    def add_script(self, script: Script) -> None:
        if not isinstance(script, Script):
            raise TypeError("add_script expects a webui.extensions.api.Script instance")
        self.scripts.append(script)


class ExtensionSettings:
    """An extension's view of the options: `get(key)` and `define(...)` (used by add_setting)."""

    def __init__(self, get: Callable[[str], Any], define: Callable[..., None]):
        self._get, self._define = get, define

    def get(self, key: str) -> Any:
        return self._get(key)

    def define(self, **kw: Any) -> None:
        self._define(**kw)


def open_image(fp: Any) -> Any:
    """Open a user's image bytes (a path or a binary file object) as Easel does for its own fields: only PNG, JPEG,
    WEBP, BMP, GIF and TIFF are decoded; anything else raises PIL.UnidentifiedImageError (an OSError). Lazy like
    PIL's Image.open: check the size, then call load(). (API 1, additive.)"""
    from webui.outputs import open_user_image

    return open_user_image(fp)


@dataclass(frozen=True)
class RegionDetector:
    """A detector file of models/adetailer (API 1, additive): usable when `error` is None."""

    name: str
    error: str | None = None


def region_detectors(models_dir: Path) -> list[RegionDetector]:
    """The detectors in <models_dir>/adetailer: YOLOv8 ONNX exports (run by OpenCV, nothing unpickled); a `.pt`
    is listed with the `.onnx` file it needs. (API 1, additive.)"""
    from webui.faces.detect import list_detectors

    return [RegionDetector(d.name, d.error) for d in list_detectors(models_dir)]


def detect_regions(
    models_dir: Path, name: str, image: Any, confidence: float
) -> list[tuple[int, int, int, int, float]]:
    """Boxes (x0, y0, x1, y1, score) the detector `name` of <models_dir>/adetailer finds in a PIL image, best first;
    ScriptError naming the file when it is missing or unusable. (API 1, additive.)"""
    from webui.faces.detect import Detector, DetectorError, find_detector

    try:
        found = Detector(find_detector(name, models_dir)).detect(image, confidence)
    except DetectorError as e:
        raise ScriptError(e.message) from None
    return [(b.x0, b.y0, b.x1, b.y1, b.score) for b in found]


def detect_region_masks(
    models_dir: Path, name: str, image: Any, confidence: float, grow: int = 0
) -> list[tuple[tuple[int, int, int, int, float], Any]]:
    """Like `detect_regions`, each region with its inpaint mask (a PIL "L" image of the image's size): the region's
    segment for a YOLOv8 segmentation model (`*-seg`), else its box; grown (`grow` > 0) or shrunk (< 0) by that many
    pixels on every side. (API 1, additive.)"""
    from webui.faces.detect import Detector, DetectorError, find_detector, region_mask

    try:
        found = Detector(find_detector(name, models_dir)).detect(image, confidence)
    except DetectorError as e:
        raise ScriptError(e.message) from None
    return [((b.x0, b.y0, b.x1, b.y1, b.score), region_mask(image.size, b, int(grow))) for b in found]
