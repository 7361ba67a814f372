"""Where a model's weights wait while another part computes (#18 Memory): `--medvram`, `--lowvram` and the "GPU
weights" budget (setting `gpu_weights_mb`, Forge's idea) mapped onto diffusers' own offloading, for every family
(the SD 1.x/2.x/SDXL UNet pipelines and the SD 3/FLUX transformer pipelines alike):

  none   every part on the compute device.
  model  diffusers' model CPU offload (`enable_model_cpu_offload`): one part (a text encoder, the denoiser, the VAE)
         on the device at a time, the others in RAM (`--medvram`).
  group  diffusers' group offloading (`enable_group_offload` / `apply_group_offloading`, block level, per part, the
         text encoders' nested layer lists included): each part's blocks come to the device N at a time; on CUDA a
         side stream prefetches the next block while the current one computes (`--lowvram`).

A budget above 0 wins over the flags: all weights fit → none; the largest part fits → model; else group, with as
many blocks per group as the budget holds without streams (with streams diffusers moves one block at a time); a
part's weights outside its blocks stay on the device for its whole forward (`weights_on_device` adds it all up).

Offloading moves weights between the offload device (RAM) and the compute device. With no GPU the weights already
are in RAM, so the policy has no offload device and nothing is applied (A1111 ignores --medvram on the CPU too);
the same code runs on the CPU with RAM as both devices when a policy names one (the tests do: the pixels must not
change, tests/families/test_offload.py).

Everything goes through diffusers' calls and is undone through diffusers' own removal (`remove_all_hooks` for the
accelerate hooks, the hook registry's `remove_hook` for group offloading, as diffusers' own
`_maybe_remove_and_reapply_group_offloading` does: diffusers has no public call to turn group offloading off)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from webui.models.memory_report import module_bytes

MODES = ("none", "model", "group")
FLAG_NAMES = {"model": "--medvram", "group": "--lowvram"}


@dataclass(frozen=True)
class OffloadPlan:
    mode: str = "none"  # none | model | group
    blocks_per_group: int = 1  # group: blocks of each part on the device at once
    stream: bool = False  # group: CUDA side stream prefetching the next group
    reason: str = ""

    @property
    def label(self) -> str:
        if self.mode == "group":
            per = f"{self.blocks_per_group} block{'s' if self.blocks_per_group > 1 else ''} per group"
            return f"group ({per}{', CUDA stream prefetch' if self.stream else ''})"
        return self.mode

    def report(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "label": self.label,
            "blocks_per_group": self.blocks_per_group if self.mode == "group" else None,
            "stream": self.stream,
            "reason": self.reason,
        }


# transformers' text encoders nest their layer lists (CLIP: encoder.layers, text_model.encoder.layers before
# transformers 5; T5: encoder.block): without naming the way down, diffusers' block-level walk sees no list and
# onloads a whole T5-XXL (9.5 GB in fp16) for each encoding
ENCODER_PATH = ["text_model", "encoder"]


def _parts(pipe: Any) -> dict[str, torch.nn.Module]:
    return {n: m for n, m in pipe.components.items() if isinstance(m, torch.nn.Module)}


def _block_modules(module: torch.nn.Module) -> list[str] | None:
    """The children diffusers' block-level offloading walks into: a diffusers model names its own
    (`_group_offload_block_modules`: AutoencoderKL's encoder/decoder), a text encoder ENCODER_PATH."""
    from diffusers import ModelMixin

    return getattr(module, "_group_offload_block_modules", None) if isinstance(module, ModelMixin) else ENCODER_PATH


def group_blocks(module: torch.nn.Module) -> list[torch.nn.Module]:
    """The blocks diffusers' block-level offloading moves one group at a time (its walk: the children of
    ModuleLists/Sequentials, inside the named block modules); the rest of the module stays for its whole forward."""
    names = set(_block_modules(module) or ())

    def walk(m: torch.nn.Module) -> list[torch.nn.Module]:
        found: list[torch.nn.Module] = []
        for name, child in m.named_children():
            if name in names:
                found += walk(child)
            elif isinstance(child, (torch.nn.ModuleList, torch.nn.Sequential)):
                found += list(child)
        return found

    return walk(module)


def group_resident(part: torch.nn.Module, blocks_per_group: int, stream: bool) -> int:
    """Bytes of one part's weights on the device at most under group offloading: what is outside its blocks, plus
    one group (two with stream prefetching: the one computing and the next)."""
    blocks = [module_bytes(b) for b in group_blocks(part)]
    rest = module_bytes(part) - sum(blocks)
    return rest + (2 if stream else 1) * blocks_per_group * max(blocks, default=0)


def weights_on_device(pipe: Any, plan: OffloadPlan) -> int:
    """Bytes of weights on the device at most in the plan's mode (one part computes at a time): the VRAM a budget
    buys, activations not counted."""
    parts = _parts(pipe)
    sizes = {n: module_bytes(m) for n, m in parts.items()}
    if plan.mode == "none":
        return sum(sizes.values())
    if plan.mode == "model":
        return max(sizes.values())
    kept = sizes.get("vae", 0) if plan.stream else 0  # with streams the VAE stays on the device (apply_offload)
    return kept + max(
        group_resident(m, plan.blocks_per_group, plan.stream) for n, m in parts.items() if n != "vae" or not plan.stream
    )


def plan_offload(flag_mode: str, budget_mb: int, pipe: Any, *, offload_device: torch.device | None, stream: bool):
    """The plan for one pipeline: `flag_mode` is the policy's (from --medvram/--lowvram), `budget_mb` the setting
    (0: none). No offload device (no GPU): nothing to offload to. Streams (CUDA) prefetch one block at a time
    (diffusers' limit); without them a budget buys as many blocks per group as fit."""
    if offload_device is None:
        return OffloadPlan(reason="no GPU: the weights are in RAM already" if flag_mode != "none" or budget_mb else "")
    if budget_mb <= 0:
        return OffloadPlan(flag_mode, 1, stream and flag_mode == "group", FLAG_NAMES.get(flag_mode, ""))
    budget, mb = budget_mb * 2**20, f"GPU weights {budget_mb} MB"
    sizes = {name: module_bytes(m) for name, m in _parts(pipe).items()}
    if budget >= sum(sizes.values()):
        return OffloadPlan(reason=f"{mb}: all {sum(sizes.values()) / 2**20:.0f} MB of weights fit")
    largest = max(sizes, key=lambda n: sizes[n])
    if budget >= sizes[largest]:
        return OffloadPlan("model", reason=f"{mb}: the largest part ({largest}, {sizes[largest] / 2**20:.0f} MB) fits")
    most = 1 if stream else max([len(group_blocks(m)) for m in _parts(pipe).values()] + [1])
    n = next((n for n in range(most, 0, -1) if weights_on_device(pipe, OffloadPlan("group", n, stream)) <= budget), 1)
    plan = OffloadPlan("group", n, stream)
    need = weights_on_device(pipe, plan) / 2**20
    return OffloadPlan("group", n, stream, f"{mb}: about {need:.0f} MB of weights on the device at a time")


def active_mode(pipe: Any) -> str:
    """The offloading a pipeline's parts have now, read from diffusers' hooks (what /easel/v1/system reports)."""
    from diffusers.hooks.group_offloading import _is_group_offload_enabled

    parts = _parts(pipe).values()
    if any(_is_group_offload_enabled(m) for m in parts):
        return "group"
    if getattr(pipe, "_all_hooks", None) or any(hasattr(m, "_hf_hook") for m in parts):
        return "model"
    return "none"


def remove_offload(pipe: Any) -> None:
    """Take every offloading hook off the pipeline's parts; the weights stay where the hooks left them (RAM)."""
    pipe.remove_all_hooks()  # model CPU offload's accelerate hooks
    for module in _parts(pipe).values():
        _remove_group(module)


def _remove_group(module: torch.nn.Module) -> None:
    from diffusers.hooks import HookRegistry
    from diffusers.hooks.group_offloading import (
        _GROUP_OFFLOADING,
        _LAYER_EXECUTION_TRACKER,
        _LAZY_PREFETCH_GROUP_OFFLOADING,
        _is_group_offload_enabled,
    )

    if _is_group_offload_enabled(module):
        registry = HookRegistry.check_if_exists_or_initialize(module)
        for name in (_GROUP_OFFLOADING, _LAYER_EXECUTION_TRACKER, _LAZY_PREFETCH_GROUP_OFFLOADING):
            registry.remove_hook(name, recurse=True)


def apply_offload(pipe: Any, plan: OffloadPlan, device: torch.device, offload_device: torch.device | None) -> None:
    """Put the pipeline in the plan's mode (whatever offloading it had is removed first)."""
    remove_offload(pipe)
    if plan.mode == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif plan.mode == "group":
        from diffusers import ModelMixin
        from diffusers.hooks import apply_group_offloading

        kwargs = dict(
            onload_device=device,
            offload_device=offload_device or torch.device("cpu"),
            offload_type="block_level",
            num_blocks_per_group=plan.blocks_per_group,
            use_stream=plan.stream,
        )
        for name, module in _parts(pipe).items():
            if plan.stream and name == "vae":
                # diffusers warns that a streamed VAE whose first call is tiled may prefetch in the wrong order
                # (Easel tiles large decodes): with streams the VAE stays on the device (SD/FLUX VAEs: 80-170 MB)
                module.to(device)
            elif isinstance(module, ModelMixin):
                module.enable_group_offload(**kwargs)  # checks the model class supports it
            else:  # what pipe.enable_group_offload does for a text encoder, with the way down to its layers
                apply_group_offloading(module, block_modules=ENCODER_PATH, **kwargs)
    elif device.type != "cpu":
        pipe.to(device)


def _denoiser(pipe: Any) -> torch.nn.Module | None:
    unet = getattr(pipe, "unet", None)
    return unet if unet is not None else getattr(pipe, "transformer", None)


def follow_offload(pipe: Any, modules: list[torch.nn.Module]) -> Callable[[], None]:
    """Put `modules` an extension adds to one call of `pipe` (a ControlNet) in the offloading `pipe`'s denoiser has
    now, read from its hooks, and return what undoes it (the modules are cached apart from the pipeline: they leave
    the call in RAM without hooks). Model CPU offload: each gets its own accelerate hook outside the chain, as
    diffusers' `enable_model_cpu_offload` hooks a pipeline's ControlNet (it runs at every step beside the denoiser,
    so it stays on the device until the call ends); group offloading: the denoiser's own configuration (devices,
    blocks per group, stream). No offloading: nothing (the caller puts them on the denoiser's device)."""
    from accelerate import cpu_offload_with_hook
    from diffusers import ModelMixin
    from diffusers.hooks import apply_group_offloading
    from diffusers.hooks.group_offloading import _get_top_level_group_offload_hook

    denoiser = _denoiser(pipe)
    unique = list({id(m): m for m in modules}.values())  # two units may share one cached ControlNet
    if denoiser is None or not unique:
        return lambda: None
    group = _get_top_level_group_offload_hook(denoiser)
    if group is not None:
        c = group.config
        kwargs = dict(
            onload_device=c.onload_device,
            offload_device=c.offload_device,
            offload_type=c.offload_type,
            num_blocks_per_group=c.num_blocks_per_group,
            non_blocking=c.non_blocking,
            use_stream=c.stream is not None,
            record_stream=c.record_stream,
            low_cpu_mem_usage=c.low_cpu_mem_usage,
        )
        for module in unique:
            _remove_group(module)  # a call that never reached its cleanup
            if isinstance(module, ModelMixin):
                module.enable_group_offload(**kwargs)
            else:
                apply_group_offloading(module, block_modules=_block_modules(module), **kwargs)

        def ungroup() -> None:
            for module in unique:
                _remove_group(module)
                module.to(c.offload_device)  # the unmatched group's weights may still be on the device

        return ungroup
    device = getattr(getattr(denoiser, "_hf_hook", None), "execution_device", None)
    if device is None:
        return lambda: None
    hooks = [cpu_offload_with_hook(module, device)[1] for module in unique]

    def unhook() -> None:
        for hook in hooks:
            hook.offload()  # back to RAM
            hook.remove()
        # what diffusers does at the end of the checkpoint's own pipeline call (its parts back to RAM, the chain
        # re-made): the pipeline made over its parts for this call has no hooks list of its own, so its call's
        # maybe_free_model_hooks does nothing and the checkpoint's last part (the VAE) would stay on the device
        pipe.maybe_free_model_hooks()

    return unhook


def refresh_group_offload(pipe: Any) -> None:
    """Re-make the denoiser's group offloading after a call changed its layers in place (diffusers' IP-Adapter
    loader adds the image projection and the IP attention layers, and its unloader takes them off, without it):
    the groups are made from the layers present, so new ones would stay in RAM beside a denoiser on the device.
    Model CPU offload needs nothing (its hook moves the whole denoiser); no offloading neither (the loader places
    the new layers on the denoiser's device)."""
    from diffusers.hooks.group_offloading import _is_group_offload_enabled, _maybe_remove_and_reapply_group_offloading

    denoiser = _denoiser(pipe)
    if denoiser is not None and _is_group_offload_enabled(denoiser):
        _maybe_remove_and_reapply_group_offloading(denoiser)
