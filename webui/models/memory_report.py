"""What each model in the RAM cache holds, for /easel/v1/system: family, variant, the dtypes of its parts,
quantization (GGUF), the offload mode, and bytes in RAM and on the device (parameters and buffers, each tensor
counted once per model even when parts share it; a GGUF weight counts its packed bytes)."""

from __future__ import annotations

from typing import Any

import torch

from webui.models.device import DTYPE_NAMES

COMPONENTS = ("unet", "transformer", "text_encoder", "text_encoder_2", "text_encoder_3", "vae")
_NAMES = {**DTYPE_NAMES, torch.uint8: "uint8"}


def _tensors(module: torch.nn.Module):
    yield from module.parameters()
    yield from module.buffers()


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers, each tensor once (a GGUF weight: its packed bytes)."""
    tensors = {(t.data_ptr() if t.numel() and t.device.type != "meta" else id(t)): t for t in _tensors(module)}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def _sizes(pipe) -> tuple[int, int, dict[str, str]]:
    """(bytes in RAM, bytes on the device, dtype per component) of a pipeline's parts."""
    seen: set[int] = set()
    ram = device = 0
    dtypes: dict[str, str] = {}
    for name in COMPONENTS:
        module = getattr(pipe, name, None)
        if not isinstance(module, torch.nn.Module):
            continue
        dtype = getattr(module, "dtype", None)
        dtypes[name] = _NAMES.get(dtype, str(dtype).replace("torch.", ""))
        for t in _tensors(module):
            key = t.data_ptr() if t.numel() else id(t)
            if key in seen:
                continue
            seen.add(key)
            size = t.numel() * t.element_size()
            if t.device.type == "cpu":
                ram += size
            else:
                device += size
    return ram, device, dtypes


def model_bytes(model) -> int:
    """What a loaded model weighs, in RAM and on the device (the RAM cache's byte budget counts this)."""
    ram, device, _ = _sizes(model.pipeline)
    return ram + device


def model_report(model, *, active: bool) -> dict[str, Any]:
    from webui.models.offload import active_mode

    ram, device, dtypes = _sizes(model.pipeline)
    probe = model.probe
    return {
        "title": model.info.title,
        "active": active,
        "family": probe.family.value,
        "variant": probe.variant or None,
        "label": probe.label,
        "dtypes": dtypes,
        "quantization": probe.quantization or None,
        "offload": active_mode(model.pipeline),  # read from diffusers' hooks on the parts: none | model | group
        "offload_plan": model.offload.report(),  # why (flag or GPU weights budget), blocks per group, CUDA stream
        "modules": list(probe.modules),
        "bytes_ram": ram,
        "bytes_device": device,
        "text_encoders_on_disk": "lowram" in model.extra,
    }  # --lowram: read from their files per encoding
