"""The CPU fast path: the UNet's forward under bf16 autocast, its output returned in fp32.

Only the UNet is wrapped: the VAE decode stays fp32 (colour fidelity), the text encoder runs once per prompt and
the scheduler math stays fp32. The wrapper reads a per-model switch at call time, so the setting can change
between requests without reloading anything.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

# UNets smaller than this stay fp32 under "Automatic": at that size bf16's conversions cost more than they save.
AUTO_MIN_PARAMS = 20_000_000


@dataclass
class AutocastSwitch:
    enabled: bool = False
    dtype: torch.dtype = torch.bfloat16


def install_unet_autocast(unet) -> AutocastSwitch:
    """Wrap `unet.forward` once; returns the switch that turns the fast path on and off."""
    existing = getattr(unet, "_easel_autocast", None)
    if existing is not None:
        return existing
    switch = AutocastSwitch()
    original = unet.forward

    @functools.wraps(original)
    def forward(*args, **kwargs):
        if not switch.enabled:
            return original(*args, **kwargs)
        with torch.autocast("cpu", dtype=switch.dtype):
            out = original(*args, **kwargs)
        if isinstance(out, tuple):
            return (out[0].float(),) + tuple(out[1:])
        out.sample = out.sample.float()
        return out

    unet.forward = forward
    unet._easel_autocast = switch
    return switch


def choose_precision(setting: str, policy, unet) -> str:
    """"fp32" or "bf16" for this request. Setting `cpu_precision`: Automatic | bf16 | fp32."""
    if policy.device.type != "cpu" or not policy.cpu_bf16 or setting == "fp32":
        return "fp32" if policy.device.type == "cpu" else {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(
            policy.dtype, "fp32")
    if setting == "bf16":
        return "bf16"
    params = sum(p.numel() for p in unet.parameters())
    return "bf16" if params >= AUTO_MIN_PARAMS else "fp32"
