"""Per-job hook dispatch: the events generation emits, plus the job's always-on scripts with their named args."""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Mapping

from webui.errors import InvalidRequest
from webui.extensions.api import ImageContext, Script, StepInfo
from webui.extensions.host import ExtensionHost, ExtensionRecord


@dataclass
class JobHooks:
    host: ExtensionHost
    kind: str
    scripts: list[tuple[ExtensionRecord, Script, dict[str, Any]]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # what failed during this job, as warnings for its result

    def _call(self, rec: ExtensionRecord, what: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """host.call, noting when the call disabled the extension: the job carries on without it, and its result
        says so instead of the user finding out from the server log."""
        was_active = rec.active
        out = self.host.call(rec, what, fn, *args, **kwargs)
        if was_active and not rec.active:
            self.failed.append(
                f"extension {rec.name}: {what} failed ({rec.error}); it is disabled until restart and this job ran "
                "without it"
            )
        return out

    def take_failures(self) -> list[str]:
        """The failures noted since the last call (each reported once, also when one job runs several batches)."""
        out, self.failed[:] = list(self.failed), []
        return out

    def _emit(self, event: str, *args: Any) -> list[Any]:
        return [
            self._call(rec, f"hook {event}", fn, *args)
            for rec in self.host.active()
            for fn in list(rec.running.hooks[event])
        ]

    def before_generate(self, request: Any) -> Any:
        for rec in self.host.active():
            for fn in rec.running.hooks["before_generate"]:
                changed = self._call(rec, "hook before_generate", fn, request)
                request = changed if changed is not None else request
        for rec, script, args in self.scripts:
            changed = self._call(rec, f"{script.title}.process", script.process, request, **args)
            request = changed if changed is not None else request
        return request

    def infotext_params(self, request: Any) -> dict[str, Any]:
        """The always-on scripts' infotext parameters for this job (after `process`)."""
        out: dict[str, Any] = {}
        for rec, script, args in self.scripts:
            value = self._call(rec, f"{script.title}.infotext_params", script.infotext_params, request, **args)
            out.update(value or {})
        return out

    def pipeline_call(self, call):
        """Let `pipeline_call` hooks swap the pipeline or its arguments (e.g. ControlNet)."""
        for rec in self.host.active():
            for fn in rec.running.hooks["pipeline_call"]:
                changed = self._call(rec, "hook pipeline_call", fn, call)
                if changed is not None:
                    call.pipeline, call.kwargs = changed
        return call.pipeline, call.kwargs

    def step_end(self, info: StepInfo) -> Any:
        latents = None
        for value in self._emit("step_end", info):
            if value is not None:
                latents = value
                info.latents = value
        return latents

    def after_image(self, image: Any, ctx: ImageContext) -> Any:
        for value in self._emit("after_image", image, ctx):
            if value is not None:
                image = value
        for rec, script, args in self.scripts:
            value = self._call(rec, f"{script.title}.postprocess_image", script.postprocess_image, image, ctx, **args)
            if value is not None:
                image = value
        return image

    def image_saved(self, path: str, ctx: ImageContext) -> None:
        self._emit("image_saved", path, ctx)

    @property
    def wants_steps(self) -> bool:
        return self.host.has_hooks("step_end")


def named_args(script: Script, value: Any) -> dict[str, Any]:
    """A1111 clients send `{"args": [...]}`; Easel scripts take arguments by name. A dict is taken as it is; a
    list is mapped onto the script's declared `args` names, in order."""
    args = value.get("args", value) if isinstance(value, dict) and "args" in value else value
    if args is None:
        return {}
    if isinstance(args, dict):
        unknown = set(args) - set(script.args) if script.args else set()
        if unknown:
            raise InvalidRequest(
                f"script {script.title!r}: unknown argument(s) {sorted(unknown)}; it takes {list(script.args)}"
            )
        return dict(args)
    if isinstance(args, (list, tuple)):
        if len(args) > len(script.args):
            raise InvalidRequest(
                f"script {script.title!r} takes {len(script.args)} arguments ({list(script.args)}), got {len(args)}"
            )
        return dict(zip(script.args, args))
    raise InvalidRequest(f"script {script.title!r}: args must be an object or a list")


def job_hooks(host: ExtensionHost | None, kind: str, alwayson: dict[str, Any]) -> JobHooks | None:
    """The job's hooks and always-on scripts (their names were checked by Application.prepare)."""
    if host is None:
        assert not alwayson  # prepare() refuses always-on scripts without an extension host
        return None
    chosen = []
    for title, value in (alwayson or {}).items():
        found = host.find_script(title, kind)
        assert found is not None and found[1].always_on  # prepare() refused anything else
        chosen.append((found[0], found[1], named_args(found[1], value)))
    return JobHooks(host=host, kind=kind, scripts=chosen)


@dataclass
class ScriptEntry:
    """One script as the API lists it (`GET /sdapi/v1/scripts`, `/script-info`, the request checks)."""

    name: str
    is_alwayson: bool
    args: list[dict[str, Any]]


class ScriptCatalog:
    """The active extensions' scripts, with their arguments described from `args` and `ui()` (built once, inside
    `ui_context()`: the UI layer passes gradio's Blocks, as layouts can't be built outside one)."""

    def __init__(self, host: ExtensionHost, ui_context: Callable[[], ContextManager] | None = None):
        self.host = host
        self.ui_context = ui_context
        self._described: dict[tuple[int, bool], list[dict[str, Any]]] = {}

    def list(self, is_img2img: bool) -> list[ScriptEntry]:
        kind = "img2img" if is_img2img else "txt2img"
        return [
            ScriptEntry(name=s.title, is_alwayson=s.always_on, args=self.describe(rec, s, is_img2img))
            for rec, s in self.host.scripts(kind)
        ]

    def describe(self, rec: ExtensionRecord, script: Script, is_img2img: bool) -> builtins.list[dict[str, Any]]:
        key = (id(script), is_img2img)
        if key not in self._described:
            components: dict[str, Any] = {}
            if self.ui_context is not None:
                with self.ui_context():
                    components = self.host.call(rec, f"{script.title}.ui", script.ui, is_img2img) or {}
            self._described[key] = describe_args(script, components)
        return self._described[key]


def describe_args(script: Script, components: dict[str, Any]) -> list[dict[str, Any]]:
    """A1111's script-info args ({label, value, minimum, maximum, step, choices}) plus Easel's `name`, in the
    declared order; details come from the ui() component of the same name, else from the signature's default. An
    ArgGroup argument is described by its `describe` value."""
    import inspect

    from webui.extensions.api import ArgGroup

    fn = script.process if script.always_on else script.run
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    out = []
    for name in script.args or tuple(components):
        comp = components.get(name)
        if isinstance(comp, ArgGroup):  # several components make this argument: the script describes its value
            out.append(
                {
                    "name": name,
                    "label": name,
                    "value": comp.describe,
                    "minimum": None,
                    "maximum": None,
                    "step": None,
                    "choices": None,
                }
            )
            continue
        default = params[name].default if name in params else None
        value = getattr(comp, "value", default) if comp is not None else default
        choices = getattr(comp, "choices", None)
        if choices is not None:
            choices = [c[1] if isinstance(c, (tuple, list)) else c for c in choices]
        out.append(
            {
                "name": name,
                "label": getattr(comp, "label", None) or name,
                "value": None if value is inspect.Parameter.empty or callable(value) else value,
                "minimum": getattr(comp, "minimum", None),
                "maximum": getattr(comp, "maximum", None),
                "step": getattr(comp, "step", None),
                "choices": choices,
            }
        )
    return out
