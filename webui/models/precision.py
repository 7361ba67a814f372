"""The CPU fast path: the UNet's forward under bf16 autocast, its output returned in fp32.

Only the denoiser is wrapped: the UNet, and the models that run beside it at every step (a pipeline's
`controlnet`/`adapter`, which follow the UNet's switch: `follow_unet_precision`). The VAE decode stays fp32 (colour
fidelity), the text encoder runs once per prompt and the scheduler math stays fp32. The wrapper reads a per-model switch at call time, so the setting can change
between requests without reloading anything. The UNet's conv_in stays fp32 even then (see `keep_fp32`).

Levers measured and deliberately left off (AVX-512 BF16 EPYC, no AMX; benchmarks/cpu_fast_path.py):
- channels_last: SD1.5-size UNet at 512², fp32 11.1 s/step either way; mid model at 256² (1 thread) fp32
  0.57 → 0.61-0.63 s/step, bf16 0.43-0.45 → 0.45-0.46. No gain, so the UNet keeps the default memory format.
- bf16-stored weights: SD1.5 at 512² 6.9 s/step vs 6.6-7.4 with fp32 weights under autocast (noise); mid at 256²
  0.39-0.40 vs 0.43-0.45 (~10%). Not used: it throws away the fp32 master weights, so switching a request back to
  fp32 would need a reload, and it rounds the parameters of the norm layers autocast keeps in fp32.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch

# UNets smaller than this stay fp32 under "Automatic": at that size bf16's conversions cost more than they save.
AUTO_MIN_PARAMS = 20_000_000


@dataclass
class AutocastSwitch:
    enabled: bool = False
    dtype: torch.dtype = torch.bfloat16
    eager: Callable | None = None  # the UNet's own forward
    inner: Callable | None = None  # what the wrapper calls: `eager`, or its torch.compile'd form (compile.py)


def install_autocast(model) -> AutocastSwitch:
    """Wrap `model.forward` once (a UNet, a ControlNet …); returns the switch that turns the fast path on and off.
    Whatever the forward returns (a tensor, a diffusers output, tuples of residuals) comes back in fp32."""
    existing = getattr(model, "_easel_autocast", None)
    if existing is not None:
        return existing
    original = model.forward
    switch = AutocastSwitch(eager=original, inner=original)

    @functools.wraps(original)
    def forward(*args, **kwargs):
        if not switch.enabled:
            return switch.inner(*args, **kwargs)
        with torch.autocast("cpu", dtype=switch.dtype):
            out = switch.inner(*args, **kwargs)
        return to_fp32(out)

    model.forward = forward
    model._easel_autocast = switch
    if isinstance(getattr(model, "conv_in", None), torch.nn.Module):
        keep_fp32(model.conv_in)  # UNet and ControlNet: conv_in reads the noisy latent
    return switch


install_unet_autocast = install_autocast


def to_fp32(out):
    """Floating tensors in `out` as fp32: a tensor, a tuple/list of them, or a diffusers BaseOutput (whose item
    assignment updates the attribute too)."""
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, (tuple, list)):
        return type(out)(to_fp32(x) for x in out)
    if isinstance(out, dict):
        for key in list(out.keys()):
            out[key] = to_fp32(out[key])
    return out


def follow_unet_precision(pipe) -> None:
    """The models a pipeline runs beside the UNet at every step (`controlnet`, `adapter`; added by extensions
    through `pipeline_call`) get the UNet's precision for this call. Every wrapped module inside them is set too,
    so a ControlNet cached from an earlier bf16 call can't stay bf16 inside a MultiControlNet of an fp32 one."""
    unet_switch = getattr(getattr(pipe, "unet", None), "_easel_autocast", None)
    enabled = bool(unet_switch and unet_switch.enabled)
    for name in ("controlnet", "adapter"):
        model = getattr(pipe, name, None)
        if not isinstance(model, torch.nn.Module) or (not enabled and getattr(model, "_easel_autocast", None) is None
                                                       and not _wrapped_inside(model)):
            continue  # fp32 and never wrapped: leave the model exactly as diffusers has it
        install_autocast(model).enabled = enabled
        for sub in model.modules():
            switch = getattr(sub, "_easel_autocast", None)
            if switch is not None:
                switch.enabled = enabled


def _wrapped_inside(model: torch.nn.Module) -> bool:
    return any(getattr(m, "_easel_autocast", None) is not None for m in model.modules())


def keep_fp32(module: torch.nn.Module) -> None:
    """Run `module` in fp32 even under autocast. Used for the UNet's conv_in: its input is the noisy latent, and at
    low noise levels the noise to predict lives in that latent's low bits, which bf16 (8-bit mantissa) rounds
    away. Measured on the trained demo model, last step of 20: 1.28% → 0.78% relative error, at the cost of one
    4-channel-input conv in fp32 (negligible)."""
    original = module.forward

    @functools.wraps(original)
    def forward(x, *args, **kwargs):
        weight = getattr(module, "weight", None)
        if not torch.is_autocast_enabled("cpu") or (weight is not None and weight.dtype != torch.float32):
            return original(x, *args, **kwargs)  # weights stored in bf16/fp16: nothing to keep
        with torch.autocast("cpu", enabled=False):
            return original(x.float(), *args, **kwargs)

    module.forward = forward


def choose_precision(setting: str, policy, unet) -> str:
    """"fp32" or "bf16" for this request. Setting `cpu_precision`: Automatic | bf16 | fp32."""
    if policy.device.type != "cpu" or not policy.cpu_bf16 or setting == "fp32":
        return "fp32" if policy.device.type == "cpu" else {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(
            policy.dtype, "fp32")
    if setting == "bf16":
        return "bf16"
    params = sum(p.numel() for p in unet.parameters())
    return "bf16" if params >= AUTO_MIN_PARAMS else "fp32"
