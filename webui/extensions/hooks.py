"""Per-job hook dispatch: the events generation emits, plus the job's always-on scripts with their named args."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from webui.errors import InvalidRequest
from webui.extensions.api import ImageContext, Script, StepInfo
from webui.extensions.host import ExtensionHost, ExtensionRecord


@dataclass
class JobHooks:
    host: ExtensionHost
    kind: str
    scripts: list[tuple[ExtensionRecord, Script, dict[str, Any]]] = field(default_factory=list)

    def before_generate(self, request: Any) -> Any:
        for rec in self.host.active():
            for fn in rec.handle.hooks["before_generate"]:
                changed = self.host.call(rec, "hook before_generate", fn, request)
                request = changed if changed is not None else request
        for rec, script, args in self.scripts:
            changed = self.host.call(rec, f"{script.title}.process", script.process, request, **args)
            request = changed if changed is not None else request
        return request

    def step_end(self, info: StepInfo) -> Any:
        latents = None
        for value in self.host.emit("step_end", info):
            if value is not None:
                latents = value
                info.latents = value
        return latents

    def after_image(self, image: Any, ctx: ImageContext) -> Any:
        for value in self.host.emit("after_image", image, ctx):
            if value is not None:
                image = value
        for rec, script, args in self.scripts:
            value = self.host.call(rec, f"{script.title}.postprocess_image", script.postprocess_image, image, ctx,
                                   **args)
            if value is not None:
                image = value
        return image

    def image_saved(self, path: str, ctx: ImageContext) -> None:
        self.host.emit("image_saved", path, ctx)

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
            raise InvalidRequest(f"script {script.title!r}: unknown argument(s) {sorted(unknown)}; "
                                 f"it takes {list(script.args)}")
        return dict(args)
    if isinstance(args, (list, tuple)):
        if len(args) > len(script.args):
            raise InvalidRequest(f"script {script.title!r} takes {len(script.args)} arguments "
                                 f"({list(script.args)}), got {len(args)}")
        return dict(zip(script.args, args))
    raise InvalidRequest(f"script {script.title!r}: args must be an object or a list")


def job_hooks(host: ExtensionHost | None, kind: str, alwayson: dict[str, Any]) -> JobHooks | None:
    if host is None:
        if alwayson:
            raise InvalidRequest(f"unknown always-on script(s): {sorted(alwayson)}")
        return None
    chosen = []
    for title, value in (alwayson or {}).items():
        found = host.find_script(title, kind)
        if found is None or not found[1].always_on:
            raise InvalidRequest(f"unknown always-on script {title!r} for {kind}")
        chosen.append((found[0], found[1], named_args(found[1], value)))
    return JobHooks(host=host, kind=kind, scripts=chosen)
