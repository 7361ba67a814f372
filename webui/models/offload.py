"""Where a model's weights wait while another part computes (#18 Memory): `--medvram`, `--lowvram` and the "GPU
weights" budget (setting `gpu_weights_mb`, Forge's idea) mapped onto diffusers' own offloading, for every family
(the SD 1.x/2.x/SDXL UNet pipelines and the SD 3/FLUX transformer pipelines alike):

  none   every part on the compute device.
  model  diffusers' model CPU offload (`enable_model_cpu_offload`): one part (a text encoder, the denoiser, the VAE)
         on the device at a time, the others in RAM (`--medvram`).
  group  diffusers' group offloading (`enable_group_offload`, block level): each part's blocks come to the device N
         at a time; on CUDA a side stream prefetches the next group while the current one computes (`--lowvram`).

A budget above 0 wins over the flags: all weights fit → none; the largest part fits → model; else group, with as
many blocks per group as the budget holds (two groups on the device with prefetching, plus the denoiser's weights
outside its blocks, which stay for the whole forward).

Offloading moves weights between the offload device (RAM) and the compute device. With no GPU the weights already
are in RAM, so the policy has no offload device and nothing is applied (A1111 ignores --medvram on the CPU too);
the same code runs on the CPU with RAM as both devices when a policy names one (the tests do: the pixels must not
change, tests/models/test_offload.py).

Everything goes through diffusers' calls and is undone through diffusers' own removal (`remove_all_hooks` for the
accelerate hooks, the hook registry's `remove_hook` for group offloading, as diffusers' own
`_maybe_remove_and_reapply_group_offloading` does: diffusers has no public call to turn group offloading off)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from webui.models.memory_report import COMPONENTS, module_bytes

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


def _parts(pipe: Any) -> dict[str, torch.nn.Module]:
    return {n: m for n in COMPONENTS if isinstance(m := getattr(pipe, n, None), torch.nn.Module)}


def _blocks(module: torch.nn.Module) -> list[torch.nn.Module]:
    """What diffusers' block-level offloading groups: the children of the module's direct ModuleLists/Sequentials."""
    return [
        block
        for child in module.children()
        if isinstance(child, (torch.nn.ModuleList, torch.nn.Sequential))
        for block in child
    ]


def plan_offload(flag_mode: str, budget_mb: int, pipe: Any, *, offload_device: torch.device | None, stream: bool):
    """The plan for one pipeline: `flag_mode` is the policy's (from --medvram/--lowvram), `budget_mb` the setting
    (0: none). No offload device (no GPU): nothing to offload to."""
    if offload_device is None:
        return OffloadPlan(reason="no GPU: the weights are in RAM already" if flag_mode != "none" or budget_mb else "")
    if budget_mb <= 0:
        return OffloadPlan(flag_mode, 1, stream and flag_mode == "group", FLAG_NAMES.get(flag_mode, ""))
    budget = budget_mb * 2**20
    sizes = {name: module_bytes(m) for name, m in _parts(pipe).items()}
    mb = f"GPU weights {budget_mb} MB"
    if budget >= sum(sizes.values()):
        return OffloadPlan(reason=f"{mb}: all {sum(sizes.values()) / 2**20:.0f} MB of weights fit")
    largest = max(sizes, key=lambda n: sizes[n])
    if budget >= sizes[largest]:
        return OffloadPlan("model", reason=f"{mb}: the largest part ({largest}, {sizes[largest] / 2**20:.0f} MB) fits")
    denoiser = getattr(pipe, "unet", None) or pipe.transformer
    blocks = _blocks(denoiser)
    block = max((module_bytes(b) for b in blocks), default=1) or 1
    rest = module_bytes(denoiser) - sum(module_bytes(b) for b in blocks)  # on the device for the whole forward
    n = min(max(1, len(blocks)), max(1, int((budget - rest) // ((2 if stream else 1) * block))))
    return OffloadPlan("group", n, stream, f"{mb}: {n} of the denoiser's {len(blocks)} blocks at a time")


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
    from diffusers.hooks import HookRegistry
    from diffusers.hooks.group_offloading import (
        _GROUP_OFFLOADING,
        _LAYER_EXECUTION_TRACKER,
        _LAZY_PREFETCH_GROUP_OFFLOADING,
        _is_group_offload_enabled,
    )

    pipe.remove_all_hooks()  # model CPU offload's accelerate hooks
    for module in _parts(pipe).values():
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
        pipe.enable_group_offload(
            onload_device=device,
            offload_device=offload_device or torch.device("cpu"),
            offload_type="block_level",
            num_blocks_per_group=plan.blocks_per_group,
            use_stream=plan.stream,
            # diffusers warns that a streamed VAE whose first call is tiled may prefetch in the wrong order (Easel
            # tiles large decodes): with streams the VAE stays on the device instead (SD/FLUX VAEs: 80-170 MB)
            exclude_modules=["vae"] if plan.stream else None,
        )
    elif device.type != "cpu":
        pipe.to(device)
