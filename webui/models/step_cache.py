"""Step caching for the UNet (setting `step_cache_interval`, infotext `Step cache: N`; off by default).

DeepCache's idea (Ma et al., 2023): between two neighbouring denoising steps the UNet's deep features barely
change, while the shallow ones carry the detail. Every N-th UNet call runs in full and keeps what its deep part
produced; the N-1 calls in between run only the shallowest path (`conv_in`, the last layer of the last up block,
`conv_out`) and take the rest from that full call. The skip connection from `conv_in` into the last up layer is
the only fresh input those calls need, so a cached call costs a small part of a full one.

Why hand-written: diffusers 0.42's caches (`diffusers.hooks`) are built for transformer models. Tried on the demo
UNet: FirstBlockCache fails ("pop from empty list": no `blocks`/`transformer_blocks` list under the model),
FasterCache fails in a permute (it expects a transformer's shapes), MagCache needs per-model calibrated
`mag_ratios`, TaylorSeer runs but hooks nothing, and PyramidAttentionBroadcast runs but only reuses the outputs of
the self-attention layers, not the deep features. What is reused here is the diffusers hook machinery
(`ModelHook`/`HookRegistry`): the UNet's and its blocks' own forwards stay as diffusers wrote them.

Which call is full: a new denoising run (the timestep did not decrease, or the latent shape changed) starts with a
full call; then the k-th UNet evaluation of the run is full when k % N == 0. Calls at the same timestep (a sampler
or an extension evaluating the UNet twice per step) are numbered within the step and cached separately; a call
with nothing cached runs in full. Samplers with two evaluations per step (Heun, DPM2) count each evaluation.

Installed by the runtime (runtime.py `step_cache`) for one job and removed when it ends; nested entries (a hires
pass, a detailer's inner job on the same UNet) change the interval for their length and put it back.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook

CLOCK_HOOK, SKIP_HOOK = "easel.step_cache.clock", "easel.step_cache.skip"
# calls at one timestep kept apart at most (CFG runs as one batched call; 1-step runs of a batch loop all share
# their timestep, so without a bound each would keep a slot of deep features)
MAX_CALLS_PER_STEP = 4


class StepCacheState:
    """One UNet's counter and the outputs its skipped modules gave on the last full call."""

    def __init__(self, interval: int) -> None:
        self.interval = interval
        self.reuse = False  # this call runs the shallow path only
        self.call = 0  # index of the call within its step
        self.evaluation = -1  # UNet evaluations (distinct timesteps) since the run began
        self.last: tuple[tuple[int, ...], float] | None = None  # (latent shape, timestep) of the previous call
        self.outputs: dict[tuple[int, int], Any] = {}  # (module id, call) → output of the last full call
        self.full_calls = self.reused_calls = 0

    def reset(self) -> None:
        self.outputs.clear()
        self.evaluation, self.last, self.call = -1, None, 0

    def begin_call(self, shape: tuple[int, ...], timestep: float) -> None:
        """Decide whether this UNet call is full or reuses the deep features."""
        if self.last is None or shape != self.last[0] or timestep > self.last[1]:
            self.reset()  # a new run (next batch, a hires pass, another job): nothing from before applies
        if self.last is not None and timestep == self.last[1]:
            self.call += 1
        else:
            self.evaluation += 1
            self.call = 0
        self.last = (shape, timestep)
        on_schedule = self.interval < 2 or self.evaluation % self.interval == 0
        self.reuse = not on_schedule and any(key[1] == self.call for key in self.outputs)
        if self.reuse:
            self.reused_calls += 1
        else:
            self.full_calls += 1


def _sample_and_timestep(args: tuple, kwargs: dict) -> tuple[torch.Tensor, Any]:
    sample = args[0] if args else kwargs["sample"]
    timestep = args[1] if len(args) > 1 else kwargs["timestep"]
    return sample, timestep


class _Clock(ModelHook):
    """On the UNet: every call starts with `begin_call`."""

    def __init__(self, state: StepCacheState) -> None:
        super().__init__()
        self.state = state

    def pre_forward(self, module, *args, **kwargs):
        sample, timestep = _sample_and_timestep(args, kwargs)
        t = float(timestep.flatten()[0]) if isinstance(timestep, torch.Tensor) else float(timestep)
        self.state.begin_call(tuple(sample.shape), t)
        return args, kwargs


class _Skip(ModelHook):
    """On a deep module: on a reused call, return what it gave on the last full call; else run it and keep that."""

    def __init__(self, state: StepCacheState) -> None:
        super().__init__()
        self.state = state

    def new_forward(self, module, *args, **kwargs):
        key = (id(module), self.state.call)
        if self.state.reuse and key in self.state.outputs:
            return self.state.outputs[key]
        out = self.fn_ref.original_forward(*args, **kwargs)
        if self.state.interval >= 2 and self.state.call < MAX_CALLS_PER_STEP:
            self.state.outputs[key] = out
        return out


def deep_modules(unet: torch.nn.Module) -> list[torch.nn.Module]:
    """What a reused call skips: every down block, the mid block, every up block but the last, and all of the last
    up block's layers but its final one (which takes `conv_in`'s output through the skip connection)."""
    skipped: list[torch.nn.Module] = [*unet.down_blocks]
    if unet.mid_block is not None:
        skipped.append(unet.mid_block)
    *deep_up, last = unet.up_blocks
    skipped.extend(deep_up)
    skipped.extend(list(last.resnets)[:-1])
    attentions = getattr(last, "attentions", None)
    if attentions is not None:
        skipped.extend(list(attentions)[:-1])
    return skipped


def clock(unet: torch.nn.Module) -> _Clock | None:
    registry = getattr(unet, "_diffusers_hook", None)
    return registry.get_hook(CLOCK_HOOK) if registry is not None else None


def supports(unet: Any) -> bool:
    """A diffusers UNet with the down/mid/up layout this cache knows."""
    return (
        all(hasattr(unet, name) for name in ("down_blocks", "up_blocks", "mid_block", "conv_in"))
        and len(getattr(unet, "up_blocks", ())) > 0
    )


def install(unet: torch.nn.Module, interval: int) -> StepCacheState:
    state = StepCacheState(interval)
    for module in deep_modules(unet):
        HookRegistry.check_if_exists_or_initialize(module).register_hook(_Skip(state), SKIP_HOOK)
    HookRegistry.check_if_exists_or_initialize(unet).register_hook(_Clock(state), CLOCK_HOOK)
    return state


def remove(unet: torch.nn.Module) -> None:
    HookRegistry.check_if_exists_or_initialize(unet).remove_hook(CLOCK_HOOK, recurse=False)
    for module in deep_modules(unet):
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None:
            registry.remove_hook(SKIP_HOOK, recurse=False)
