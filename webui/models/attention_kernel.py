"""OpenVINO's CPU attention kernel under torch's UNet or SD 3/FLUX transformer (setting `cpu_attention`: Automatic |
torch | openvino; infotext `CPU attention`).

Why: profiled at 512² (SD 1.5 UNet, CFG batch 2, 2 threads, AMD EPYC Zen 4), Easel's torch default and OpenVINO
bf16 spend the same time in convolutions (2.10 / 2.04 s per step) and linears (1.25 / 1.14 s), but torch's CPU
flash attention takes 2.17 s where OpenVINO's fused MHA kernel takes 1.13 s: the whole per-step gap between them is
the attention kernel (head_dim 40 at 4096 tokens; bf16, fp32, padded heads, flex_attention and a compiled SDPA were
no faster on torch: docs/performance.md). So the UNet stays in torch (LoRA, ControlNet, IP-Adapter, the speed
presets, SDXL all work as before) and only the attention product itself runs in OpenVINO, as a kernel library:
one `ScaledDotProductAttention` op compiled per input shape (milliseconds; no conversion of the model). On a
Xeon with AMX the order is the other way round (torch's bf16 flash attention runs on AMX tiles and beats this kernel
at every SD shape), so Automatic keeps torch's there (generation/cpu_backend.py `attention_kernel`).

How: while a job runs with the kernel on, each `Attention` module of the UNet runs its forward inside a
`TorchFunctionMode` (torch's own, thread-local way to route a function call; nothing is patched). It sends the
`torch.nn.functional.scaled_dot_product_attention` calls the kernel can answer (4-D CPU tensors of one float dtype,
no mask, no dropout, not causal, at least MIN_WORK query × key × head_dim) to OpenVINO and every other call,
unchanged, to torch. The tensors are shared with OpenVINO, not copied (bf16 through an int16 view), and the result
is written into a torch tensor. The hooks are diffusers `ModelHook`s, installed once per UNet and switched on for
one job by the runtime (models/runtime.py `cpu_attention`).
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from diffusers.hooks import HookRegistry, ModelHook
from torch.overrides import TorchFunctionMode

HOOK = "easel.cpu_attention"
# Calls with less work than this (query tokens × key tokens × head_dim) stay torch's: OpenVINO's per-call overhead
# (~0.1 ms) outweighs its kernel there. Measured bf16, 2 threads, Zen 4 (docs/performance.md), torch's time over the
# kernel's: ×0.35 for the tiny test UNet's 64 tokens (0.07M), ×0.61 for the tiny FLUX's 144 (0.3M), ×0.94 for SD 1.5's
# cross-attention at 512² (4096 × 77 × 40: 12.6M), ×1.05–1.24 for its 256-token self-attention (× 160: 10.5M),
# ×1.11–1.17 at 1024 tokens (× 40: 42M), ×1.89 at 4096 (671M), ×2.1 at SDXL's 4096 (× 64), ×2.0 for FLUX's 4608 (× 128).
MIN_WORK = 2**23
KEEP_COMPILED = 32  # per UNet: SD 1.5 at one size has 8 distinct attention shapes (4 levels × self/cross)


class OpenVinoSdpa:
    """`scaled_dot_product_attention(q, k, v, scale)` on OpenVINO's CPU kernel, compiled per shape, dtype and
    scale (least recently used compiled ops beyond KEEP_COMPILED dropped)."""

    def __init__(self, ov: Any, threads: int = 0) -> None:
        self.ov, self.core, self.threads = ov, ov.Core(), threads
        self.compiled: OrderedDict[tuple, Any] = OrderedDict()
        self.lock = threading.Lock()  # one infer request per compiled op
        self.calls = self.compiles = 0

    def _types(self, dtype: torch.dtype) -> tuple[Any, str]:
        return (self.ov.Type.bf16, "bf16") if dtype == torch.bfloat16 else (self.ov.Type.f32, "f32")

    def _request(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> Any:
        key = (tuple(q.shape), tuple(k.shape), tuple(v.shape), q.dtype, scale)
        if key in self.compiled:
            self.compiled.move_to_end(key)
            return self.compiled[key]
        ov = self.ov
        o = ov.opset13
        kind, precision = self._types(q.dtype)
        params = [o.parameter(list(t.shape), kind) for t in (q, k, v)]
        scale_node = o.constant(torch.tensor(scale, dtype=torch.float32).numpy()).output(0)
        if kind != ov.Type.f32:
            scale_node = o.convert(scale_node, kind).output(0)
        out = o.scaled_dot_product_attention(*params, scale=scale_node, causal=False)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if self.threads > 0:
            config["INFERENCE_NUM_THREADS"] = self.threads
        request = self.core.compile_model(ov.Model([out], params), "CPU", config).create_infer_request()
        self.compiled[key] = request
        while len(self.compiled) > KEEP_COMPILED:
            self.compiled.popitem(last=False)
        self.compiles += 1
        return request

    def _shared(self, t: torch.Tensor) -> Any:
        """An OpenVINO tensor over `t`'s memory (contiguous), bf16 through an int16 view (numpy has no bf16)."""
        kind, _ = self._types(t.dtype)
        array = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy()
        return self.ov.Tensor(array, list(t.shape), kind)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None) -> torch.Tensor:
        q, k, v = (t.contiguous() for t in (q, k, v))
        scale = float(scale) if scale is not None else q.shape[-1] ** -0.5
        out = torch.empty((*q.shape[:-1], v.shape[-1]), dtype=q.dtype)
        with self.lock:
            request = self._request(q, k, v, scale)
            for i, t in enumerate((q, k, v)):
                request.set_input_tensor(i, self._shared(t))
            request.set_output_tensor(0, self._shared(out))
            request.infer()
            self.calls += 1
        return out


SDPA_ARGS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


def sdpa_arguments(args: tuple, kwargs: dict) -> dict[str, Any] | None:
    """An SDPA call's arguments by name (diffusers' UNet processors pass q, k, v by position, its attention
    dispatcher for SD 3/FLUX by keyword), or None for a call this torch's signature doesn't have."""
    if len(args) > len(SDPA_ARGS):
        return None
    bound = dict(zip(SDPA_ARGS, args))
    for name, value in kwargs.items():
        if name not in SDPA_ARGS or name in bound:
            return None
        bound[name] = value
    return bound


def routable(args: tuple, kwargs: dict) -> dict[str, Any] | None:
    """The call's arguments by name when the kernel computes the same thing for it (see the module docstring), else
    None."""
    bound = sdpa_arguments(args, kwargs)
    if bound is None or not all(name in bound for name in SDPA_ARGS[:3]):
        return None
    q, k, v = bound["query"], bound["key"], bound["value"]
    if not all(isinstance(t, torch.Tensor) and t.dim() == 4 and t.device.type == "cpu" for t in (q, k, v)):
        return None
    if not (q.dtype == k.dtype == v.dtype and q.dtype in (torch.float32, torch.bfloat16)):
        return None
    if q.requires_grad and torch.is_grad_enabled():
        return None  # training: torch's kernel has the backward
    if q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3]:
        return None  # grouped-query or broadcast heads: torch's
    if q.shape[-2] * k.shape[-2] * q.shape[-1] < MIN_WORK:
        return None
    if bound.get("attn_mask") is not None or bound.get("dropout_p") or bound.get("is_causal"):
        return None
    return None if bound.get("enable_gqa") else bound


def answerable(args: tuple, kwargs: dict) -> bool:
    """True for an SDPA call the kernel computes the same thing for."""
    return routable(args, kwargs) is not None


class _Route(TorchFunctionMode):
    def __init__(self, kernel: OpenVinoSdpa) -> None:
        super().__init__()
        self.kernel = kernel

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        bound = routable(args, kwargs) if func is F.scaled_dot_product_attention else None
        if bound is not None:
            return self.kernel(bound["query"], bound["key"], bound["value"], bound.get("scale"))
        return func(*args, **kwargs)


class KernelSwitch(ModelHook):
    """On the UNet (once): the kernel and whether it is on for the running job."""

    def __init__(self, kernel: OpenVinoSdpa) -> None:
        super().__init__()
        self.kernel, self.enabled = kernel, False


class _AttentionHook(ModelHook):
    """On each Attention module (once): its forward inside the routing mode while the switch is on."""

    def __init__(self, switch: KernelSwitch) -> None:
        super().__init__()
        self.switch = switch

    def new_forward(self, module, *args, **kwargs):
        if not self.switch.enabled:
            return self.fn_ref.original_forward(*args, **kwargs)
        with _Route(self.switch.kernel):
            return self.fn_ref.original_forward(*args, **kwargs)


def switch_of(unet: Any) -> KernelSwitch | None:
    registry = getattr(unet, "_diffusers_hook", None)
    return registry.get_hook(HOOK) if registry is not None else None


def attention_modules(denoiser: torch.nn.Module) -> list[torch.nn.Module]:
    """The attention modules of a UNet (`Attention`) or of an SD 3/FLUX transformer (also FLUX's `FluxAttention`,
    an `AttentionModuleMixin`, whose processor reaches SDPA through diffusers' attention dispatcher)."""
    from diffusers.models.attention import AttentionModuleMixin
    from diffusers.models.attention_processor import Attention

    return [m for m in denoiser.modules() if isinstance(m, (Attention, AttentionModuleMixin))]


@contextlib.contextmanager
def running(denoiser: torch.nn.Module, ov: Any, threads: int) -> Iterator[KernelSwitch]:
    """The kernel on for the denoiser's attention during the block (hooks installed on first use), then as it was."""
    switch = switch_of(denoiser)
    if switch is None:
        switch = KernelSwitch(OpenVinoSdpa(ov, threads))
        HookRegistry.check_if_exists_or_initialize(denoiser).register_hook(switch, HOOK)
        for module in attention_modules(denoiser):
            HookRegistry.check_if_exists_or_initialize(module).register_hook(_AttentionHook(switch), HOOK)
    previous, switch.enabled = switch.enabled, True
    try:
        yield switch
    finally:
        switch.enabled = previous
