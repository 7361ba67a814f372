"""The CPU fast path: the UNet's forward under bf16 autocast, its output returned in fp32.

Only the denoiser is wrapped: the UNet, and the models that run beside it at every step (a pipeline's
`controlnet`/`adapter`, which follow the UNet's switch: `follow_unet_precision`). The VAE decode has its own
switch (vae_precision.py: bf16 only where its PSNR guard passes), the text encoder runs once per prompt (under 1% of
a 512² image: docs/performance.md) and the scheduler math stays fp32. The wrapper reads a per-model
switch at call time, so the setting can change between requests without reloading anything. A few cheap modules
stay fp32 even then (`FP32_MODULES`, see `keep_fp32`).

Autocast alone re-rounds every fp32 weight at every step, so the default holds the Conv/Linear weights in bf16 for
the length of a pipeline call (`bf16_weights`): the same numbers bit for bit, without the per-step conversion. The
whole-UNet cast is not used: it rounds the norm layers' parameters too (which autocast keeps fp32) and drops the fp32
masters a later fp32 request needs. On CPUs whose oneDNN runs bf16 convolutions NHWC (AMX), the conv weights are laid
out channels_last and prepacked once per call (conv_prepack.py). Measurements, and the commands that reproduce them:
docs/performance.md.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from diffusers.hooks import HookRegistry, ModelHook

from webui.models import conv_prepack

# UNets smaller than this stay fp32 under "Automatic": at that size bf16's conversions cost more than they save.
AUTO_MIN_PARAMS = 20_000_000


AUTOCAST_HOOK, KEEP_FP32_HOOK = "easel.autocast", "easel.keep_fp32"


class AutocastSwitch(ModelHook):
    """The fast path's switch on one model (a diffusers hook on its forward, installed once per model): off, the
    model runs `inner`; on, `inner` runs under CPU autocast in `dtype` and the output comes back in fp32. `eager` is
    the model's own forward; `inner` is it or its torch.compile'd form (compile.py, whose state is `compile`)."""

    def __init__(self) -> None:
        super().__init__()
        self.enabled = False
        self.dtype = torch.bfloat16
        self.eager: Callable = _not_installed
        self.inner: Callable = _not_installed
        self.compile: Any = None  # compile.CompileState once compile was asked for this model

    def new_forward(self, module, *args, **kwargs):
        if not self.enabled:
            return self.inner(*args, **kwargs)
        with torch.autocast("cpu", dtype=self.dtype):
            out = self.inner(*args, **kwargs)
        return to_fp32(out)


def _not_installed(*args, **kwargs):
    raise RuntimeError("AutocastSwitch used before install_autocast set its forward")


def autocast_switch(model) -> AutocastSwitch | None:
    """The switch installed on `model`, or None."""
    registry = getattr(model, "_diffusers_hook", None)
    return registry.get_hook(AUTOCAST_HOOK) if registry is not None else None


def install_autocast(model) -> AutocastSwitch:
    """Hook `model.forward` once (a UNet, a ControlNet …); returns the switch that turns the fast path on and off.
    Whatever the forward returns (a tensor, a diffusers output, tuples of residuals) comes back in fp32."""
    existing = autocast_switch(model)
    if existing is not None:
        return existing
    switch = AutocastSwitch()
    switch.eager = switch.inner = model.forward
    HookRegistry.check_if_exists_or_initialize(model).register_hook(switch, AUTOCAST_HOOK)
    for name, module in model.named_modules():
        if stays_fp32(name) and isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            keep_fp32(module)
    return switch


# Modules the fast path keeps in fp32 (UNet and ControlNet alike), each cheap next to the 3×3 convolutions and the
# attention that bf16 speeds up:
# - conv_in reads the noisy latent (see keep_fp32);
# - a ResNet block's conv_shortcut (1×1, where the channel count changes) carries the residual stream straight
#   through, so rounding its input to bf16 lands in the output undiluted;
# - time_emb_proj turns the timestep embedding into each block's bias.
# Per-step relative error against fp32 over 5 timesteps, random-weight tiny / mid UNets: 1.26% / 1.16% with only
# conv_in kept; 0.93% / 0.93% with all three. (Keeping the norms, the attention or SDPA in fp32 changed < 0.1%.)
FP32_MODULES = ("conv_in", "conv_shortcut", "time_emb_proj")


def stays_fp32(name: str) -> bool:
    """True for a module path inside one of FP32_MODULES (peft's base_layer of a LoRA-wrapped one included)."""
    return any(part in FP32_MODULES for part in name.split("."))


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
    unet = getattr(pipe, "unet", None)
    unet_switch = autocast_switch(unet) if isinstance(unet, torch.nn.Module) else None
    enabled = bool(unet_switch and unet_switch.enabled)
    for name in ("controlnet", "adapter"):
        model = getattr(pipe, name, None)
        if not isinstance(model, torch.nn.Module) or (not enabled and not _wrapped_inside(model)):
            continue  # fp32 and never wrapped: leave the model exactly as diffusers has it
        install_autocast(model).enabled = enabled
        for sub in model.modules():
            switch = autocast_switch(sub)
            if switch is not None:
                switch.enabled = enabled


@contextlib.contextmanager
def bf16_weights(pipe, channels_last: bool = True, prepack: bool = True):
    """For one pipeline call on the fast path: the Conv/Linear weights of the UNet (and of a ControlNet/adapter
    beside it) held in bf16, the fp32 masters put back afterwards (also on an error or an interrupt).

    Autocast rounds those same fp32 weights to bf16 (round-to-nearest-even, as `.to()` does) inside every UNet
    call, so results are bit-identical; what changes is that the conversion happens once per call of the pipeline
    instead of once per step. Measured on an SD1.5-size UNet at 512² (2 threads, AVX-512 BF16 without AMX): 4.80
    s/step with autocast alone, ~3.0 with bf16 weights. Norm layers, whose parameters autocast keeps in fp32,
    and the FP32_MODULES (see `keep_fp32`) keep their fp32 parameters. Per call, not kept: a kept bf16 copy would go
    stale when a LoRA is applied or weights change, and a later fp32 request needs the masters untouched.

    `channels_last`: the 4-D conv weights are laid out NHWC, oneDNN's own layout for its AMX/AVX-512 bf16 kernels,
    and the activations follow (PyTorch picks a convolution's output layout from its input and weight); the
    NCHW layout costs a reorder of every activation in and out of every convolution. `prepack`: each bf16
    convolution's weight is also reordered into oneDNN's blocked layout once per call (conv_prepack.py) instead of
    at every step. Not for a torch.compile'd model: the compiler packs weights itself."""
    models = [
        m
        for m in (getattr(pipe, name, None) for name in ("unet", "controlnet", "adapter"))
        if isinstance(m, torch.nn.Module) and getattr(autocast_switch(m), "enabled", False)
    ]
    with hold_bf16(models, channels_last, prepack) as n:
        yield n


@contextlib.contextmanager
def hold_bf16(models: list, channels_last: bool = True, prepack: bool = True):
    """The body of `bf16_weights` for any list of modules (also the VAE decoder: vae_precision.py)."""
    swapped: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
    packed: list[torch.nn.Module] = []
    seen: set[int] = set()
    try:
        with torch.no_grad():
            for model in models:
                pack = (
                    prepack
                    and conv_prepack.available()
                    and not getattr(getattr(autocast_switch(model), "compile", None), "enabled", False)
                )
                for name, module in model.named_modules():
                    if not isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) or stays_fp32(name):
                        continue
                    # A prepacked conv's bf16 weight exists only in packed form (made from the fp32 master on its
                    # first call): a second bf16 copy would add ~1 GB for SD1.5. Its bias goes bf16 as usual.
                    packing = pack and id(module) not in seen and conv_prepack.eligible(module)
                    if packing:
                        seen.add(id(module))
                        packed.append(module)
                    for param_name, param in module.named_parameters(recurse=False):
                        if packing and param_name == "weight":
                            continue
                        if param.dtype == torch.float32 and id(param) not in seen and param.device.type == "cpu":
                            seen.add(id(param))
                            swapped.append((param, param.data))
                            param.data = _bf16_copy(param.data, channels_last)
            for module in packed:
                conv_prepack.install(module)
        yield len(swapped)
    finally:
        for module in packed:
            conv_prepack.remove(module)
        for param, data in swapped:
            param.data = data


def _bf16_copy(weight: torch.Tensor, channels_last: bool) -> torch.Tensor:
    if channels_last and weight.dim() == 4:
        return weight.to(torch.bfloat16, memory_format=torch.channels_last)
    return weight.to(torch.bfloat16)


def _wrapped_inside(model: torch.nn.Module) -> bool:
    return any(autocast_switch(m) is not None for m in model.modules())


class KeepFp32(ModelHook):
    """See keep_fp32."""

    def new_forward(self, module, x, *args, **kwargs):
        original = self.fn_ref.original_forward
        weight = getattr(module, "weight", None)
        if not torch.is_autocast_enabled("cpu") or (weight is not None and weight.dtype != torch.float32):
            return original(x, *args, **kwargs)  # weights stored in bf16/fp16: nothing to keep
        with torch.autocast("cpu", enabled=False):
            return original(x.float(), *args, **kwargs)


def keep_fp32(module: torch.nn.Module) -> None:
    """Run `module` in fp32 even under autocast. Used for the UNet's conv_in: its input is the noisy latent, and at
    low noise levels the noise to predict lives in that latent's low bits, which bf16 (8-bit mantissa) rounds
    away. Measured on the trained demo model, last step of 20: 1.28% → 0.78% relative error, at the cost of one
    4-channel-input conv in fp32 (negligible)."""
    registry = HookRegistry.check_if_exists_or_initialize(module)
    if registry.get_hook(KEEP_FP32_HOOK) is None:
        registry.register_hook(KeepFp32(), KEEP_FP32_HOOK)


def choose_precision(setting: str, policy, unet) -> str:
    """ "fp32" or "bf16" for this request. Setting `cpu_precision`: Automatic | bf16 | fp32."""
    if policy.device.type != "cpu" or not policy.cpu_bf16 or setting == "fp32":
        return (
            "fp32"
            if policy.device.type == "cpu"
            else {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(policy.dtype, "fp32")
        )
    if setting == "bf16":
        return "bf16"
    params = sum(p.numel() for p in unet.parameters())
    return "bf16" if params >= AUTO_MIN_PARAMS else "fp32"
