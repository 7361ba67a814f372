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


def pipeline_over(cls: Any, pipe: Any, **extra: Any) -> Any:
    """A `cls` pipeline over `pipe`'s modules plus `extra` ones: diffusers' `from_pipe` without its closing
    `.to(dtype)`, which casts every shared module to its dtype argument (float32 by default) in place — upcasting a
    bf16/fp16 checkpoint for good — and raises on a GGUF-quantized transformer ("Casting a quantized model to a new
    dtype is unsupported"). Hand-written for that reason: the constructor is the one from_pipe calls."""
    import inspect

    wanted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    parts = {k: v for k, v in pipe.components.items() if k in wanted and k not in extra}
    config = {k: v for k, v in pipe.config.items() if k in wanted and k not in parts and k not in extra}
    made = cls(**config, **parts, **extra)  # config: constructor arguments such as requires_safety_checker
    made.set_progress_bar_config(disable=True)
    return made
