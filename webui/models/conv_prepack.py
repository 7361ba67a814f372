"""oneDNN weight prepacking for the bf16 convolutions of one pipeline call (the CPU fast path).

In eager mode every `Conv2d` call hands oneDNN a plain weight, which oneDNN first reorders into its blocked AMX
layout: for an SD1.5 UNet at 512² that is ~48 reorders and ~0.26 s of every ~4 s step, repeated at every step.
Inside a fast-path call (`precision.bf16_weights`) the weights cannot change, so each convolution's weight is
reordered once, on its first call, and the blocked copy is reused for the rest of the call. Same kernel, same
numbers: the output is bit-identical (tests/generation/test_precision.py).

PyTorch has no public eager API for this. `torch.ops.mkldnn._reorder_convolution_weight` and
`_convolution_pointwise` are the ops its own compiler (inductor's CPU weight freezing) emits for exactly this, so
they are used directly, behind a check that they exist and a per-module fallback to the ordinary convolution if
one ever fails. Written here because no library does it for eager diffusers models (IPEX, which did, is retired).

Linear layers were tried the same way (`_reorder_linear_weight`/`_linear_pointwise`, bias fused): 5–30% faster
per layer in isolation, but no gain on the whole UNet (median of 6 alternating pairs 1.00), so they are left alone.
"""

from __future__ import annotations

import functools
import logging

import torch
from diffusers.hooks import HookRegistry, ModelHook

log = logging.getLogger(__name__)
PREPACK_HOOK = "easel.conv_prepack"


def available() -> bool:
    ops = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_reorder_convolution_weight")
        and hasattr(ops, "_convolution_pointwise")
        and _cpu_packs_bf16()
    )


@functools.cache  # a fact about this CPU: probed once per process
def _cpu_packs_bf16() -> bool:
    """Whether oneDNN can pack a bf16 convolution weight here: it needs AVX-512 (BW/VL/DQ) or AVX-NE-CONVERT, which
    e.g. an AMD EPYC without AVX-512 lacks ("bf16 path needs the cpu support ..."). Without it a bf16 call keeps its
    channels_last bf16 weights unpacked, the same kernel as with prepack=False."""
    try:
        weight = torch.zeros(8, 8, 3, 3, dtype=torch.bfloat16)
        args = ([1, 1], [1, 1], [1, 1], 1)
        packed = _pack(weight, args, torch.Size([1, 8, 8, 8]))
        _convolve(torch.zeros(1, 8, 8, 8, dtype=torch.bfloat16), packed, None, args)
        return True
    except RuntimeError:
        return False


def eligible(module: torch.nn.Module) -> bool:
    """A plain fp32/bf16 2-D convolution that no hook or instance forward of anyone else's sits in front of."""
    return (
        type(module) is torch.nn.Conv2d
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
        and module.weight.dtype in (torch.float32, torch.bfloat16)
        and module.weight.device.type == "cpu"
        and not _forward_replaced(module)
    )


def _forward_replaced(module: torch.nn.Module) -> bool:
    registry = getattr(module, "_diffusers_hook", None)
    if registry is not None:
        return bool(registry.hooks)  # the forward left behind by a removed hook is the module's own
    return "forward" in module.__dict__


class Prepacked(ModelHook):
    """A convolution's calls through a weight packed on first use (repacked when the input shape changes, e.g. the
    hires pass), in bf16 under bf16 autocast; any other call takes the ordinary path."""

    def __init__(self, module: torch.nn.Conv2d) -> None:
        super().__init__()
        self.args = (list(module.padding), list(module.stride), list(module.dilation), module.groups)
        self.shape: torch.Size | None = None
        self.packed: torch.Tensor | None = None
        self.failed = False

    def new_forward(self, module, x, *rest, **kwargs):
        original = self.fn_ref.original_forward
        if (
            x.dtype == torch.float32
            and torch.is_autocast_enabled("cpu")
            and (torch.get_autocast_dtype("cpu") == torch.bfloat16)
        ):
            x = x.to(torch.bfloat16)  # what autocast does to a convolution's input (a norm's fp32 output)
        if self.failed or rest or kwargs or x.dim() != 4 or x.dtype != torch.bfloat16:
            return original(x, *rest, **kwargs)  # e.g. an fp32 input outside autocast: the ordinary path
        try:
            if self.shape != x.shape:
                # rounded to bf16 as autocast rounds it (round-to-nearest-even), then packed; a bf16 weight as is
                self.packed = _pack(module.weight.to(torch.bfloat16), self.args, x.shape)
                self.shape = x.shape
            return _convolve(x, self.packed, module.bias, self.args)
        except RuntimeError as exc:  # never seen; keep the request alive on the ordinary kernel
            self.failed = True
            log.warning(
                "oneDNN weight prepacking failed for a %s, using the ordinary convolution: %s",
                tuple(module.weight.shape),
                exc,
            )
            return original(x)


def install(module: torch.nn.Conv2d) -> None:
    """Route `module`'s calls through a prepacked weight (`Prepacked`), until `remove`."""
    HookRegistry.check_if_exists_or_initialize(module).register_hook(Prepacked(module), PREPACK_HOOK)


def _pack(weight: torch.Tensor, args: tuple, input_shape: torch.Size) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_convolution_weight(weight, *args, list(input_shape))


def _convolve(x: torch.Tensor, packed: torch.Tensor, bias, args: tuple) -> torch.Tensor:
    return torch.ops.mkldnn._convolution_pointwise(x, packed, bias, *args, "none", [], "")


def remove(module: torch.nn.Module) -> None:
    registry = getattr(module, "_diffusers_hook", None)
    if registry is not None:
        registry.remove_hook(PREPACK_HOOK, recurse=False)
