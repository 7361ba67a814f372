"""The flow-matching families' pipeline calls (SD 3/3.5, FLUX.1) through the extensions' `pipeline_call` hooks, as
the SD families' calls go through them (conditioning.PromptConditioning.run): an extension (ControlNet) may swap the
pipeline for another made with `from_pipe` and change the arguments; the prompt embeddings and the step callback are
added afterwards; `PipelineCall.after` cleanups run when the call ends (also on an error or an interrupt) and
`PipelineCall.on_step` listeners follow the step callback.

The hook sees `call.pipeline.transformer` (no `unet`): an extension that only knows the UNet families must leave
such a call alone or refuse it (ScriptError)."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def hooked_call(
    services: Any, pipe: Any, kind: str, kwargs: dict[str, Any], callback: Callable, *, hires: bool = False
) -> Iterator[tuple[Any, dict[str, Any], Callable]]:
    """(pipeline, kwargs, step callback) for one pipeline call of `kind` (txt2img, img2img or inpaint; `hires`: the
    hires pass of a txt2img job) after the extensions' hooks; without hooks, the ones given."""
    hooks = getattr(services, "hooks", None)
    cleanups: list[Callable[[], None]] = []
    try:
        if hooks is not None and hooks.host.has_hooks("pipeline_call"):
            from webui.extensions.api import PipelineCall
            from webui.generation.conditioning import _with_step_listeners

            call = PipelineCall(kind=kind, pipeline=pipe, kwargs=kwargs, hires=hires, cleanups=cleanups)
            pipe, kwargs = hooks.pipeline_call(call)
            if call.step_listeners:
                callback = _with_step_listeners(callback, call.step_listeners, kind)
        yield pipe, kwargs, callback
    finally:
        for undo in reversed(cleanups):
            undo()
