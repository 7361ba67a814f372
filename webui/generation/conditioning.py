"""Prompts → per-step conditioning for one pipeline call (A1111 syntax, see webui/prompts/), and the call itself.

The schedule reaches diffusers' own denoise loop through `callback_on_step_end`, which hands the loop the next
step's joined [negative, positive] embeddings when prompt editing or alternation changes them; AND (composable
diffusion) widens each UNet call with forward hooks (webui/prompts/guidance.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from webui.models.precision import bf16_weights, follow_unet_precision
from webui.prompts.conditioning import Conditioner, Schedule, build_schedule
from webui.prompts.guidance import GuidedConditioning, schedule_steps
from webui.settings import OptionsView


@dataclass
class PromptConditioning:
    positive: Schedule
    negative: Schedule
    conditioner: Conditioner

    @property
    def extra_networks(self) -> list:
        """The `<kind:…>` tags found in the prompt (e.g. LoRAs), already removed from the encoded text."""
        return [tag for tags in self.positive.extra_networks for tag in tags]

    def run(
        self,
        pipe,
        n: int,
        callback: Callable,
        *,
        hooks: Any = None,
        kind: str = "txt2img",
        hires: bool = False,
        **kwargs: Any,
    ):
        cleanups: list = []  # what pipeline_call hooks undo after this call (PipelineCall.after)
        try:
            if hooks is not None and hooks.host.has_hooks("pipeline_call"):
                from webui.extensions.api import PipelineCall

                call = PipelineCall(kind=kind, pipeline=pipe, kwargs=kwargs, hires=hires, cleanups=cleanups)
                pipe, kwargs = hooks.pipeline_call(call)
                follow_unet_precision(pipe)  # an added ControlNet runs at the UNet's precision (the CPU fast path)
                if call.step_listeners:
                    callback = _with_step_listeners(callback, call.step_listeners, kind)
            guided = GuidedConditioning(self.positive, self.negative, batch_size=n)
            with guided.composable(pipe.unet), bf16_weights(pipe):
                return pipe(**guided.pipeline_kwargs(), callback_on_step_end=guided.callback(callback), **kwargs)
        finally:
            for undo in reversed(cleanups):
                undo()


def _with_step_listeners(callback: Callable, listeners: list, kind: str) -> Callable:
    """The step callback, then this call's own listeners (PipelineCall.on_step) with the step's StepInfo."""
    from webui.extensions.api import StepInfo

    def on_step_end(pipe, i, t, kwargs):
        kwargs = callback(pipe, i, t, kwargs)
        total = int(getattr(pipe, "_num_timesteps", 0) or 0)
        for fn in listeners:
            fn(StepInfo(step=i + 1, total=total, timestep=t, latents=kwargs["latents"], kind=kind))
        return kwargs

    return on_step_end


def prepare(
    pipe,
    prompt: str,
    negative: str,
    steps: int,
    clip_skip: int,
    opts: OptionsView,
    *,
    embeddings: dict | None = None,
    hires_steps: int | None = None,
    conditioner: Conditioner | None = None,
) -> PromptConditioning:
    """Encode once per job: each distinct text of the schedule is encoded a single time (the conditioner caches)."""
    cond = conditioner or Conditioner(
        pipe,
        clip_skip,
        embeddings,
        emphasis=str(opts.get("emphasis")),
        comma_padding_backtrack=int(opts.get("comma_padding_backtrack")),
    )
    n_steps = schedule_steps(pipe.scheduler, steps)
    hires = schedule_steps(pipe.scheduler, hires_steps) if hires_steps else None
    old = bool(opts.get("use_old_scheduling"))
    positive = build_schedule(pipe, [prompt], n_steps, conditioner=cond, hires_steps=hires, use_old_scheduling=old)
    negative_s = build_schedule(
        pipe, [negative], n_steps, negative=True, conditioner=cond, hires_steps=hires, use_old_scheduling=old
    )
    return PromptConditioning(positive, negative_s, cond)


def embeddings_for(services, pipe) -> dict | None:
    """The textual-inversion vectors that fit `pipe`'s text encoder(s) (the others are skipped: another family)."""
    catalog = getattr(services, "embeddings", None)
    return catalog.load_for(pipe)[0] if catalog is not None else None


def record_ti_hashes(plan, services, *conds: PromptConditioning) -> None:
    """The infotext's `TI hashes` ("name: <sha256[:12]>, …") for the embeddings the prompts used."""
    catalog = getattr(services, "embeddings", None)
    used = set().union(*(c.conditioner.used_embeddings for c in conds))
    if catalog is not None and used:
        plan.extra_params["TI hashes"] = catalog.ti_hashes(used)
