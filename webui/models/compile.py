"""Opt-in `torch.compile` of the UNet forward (setting `cpu_compile`, default off).

Why opt-in: inductor's first call per input shape costs a long compile (tens of seconds to minutes for an SD-size
UNet on a small CPU) and needs a working C++ toolchain; the gain on CPU is modest and depends on the machine (see
benchmarks/cpu_fast_path.py). Why never fatal: any failure — `torch.compile` raising, the first compiled call
raising (no compiler, an unsupported op), a later recompile failing — switches that model back to eager with a
logged warning, and the call that failed is re-run eagerly, so the request still succeeds.

Measured here (2-core AMD EPYC with AVX-512 BF16, no AMX; noisy, a shared machine): compiling the mid-size
(~77M) UNet takes 110–145 s per input signature, the tiny test UNet 79 s cold (14 s with inductor's on-disk cache
warm). At 256², 1 thread: compiled + bf16 0.50 s/step against 0.57–0.69 eager bf16 (~15–25%); compiled fp32
0.68–0.78 against 0.71–0.75 eager fp32 (no gain). Hence off by default.

How it sits with the fp32/bf16 switch (webui/models/precision.py): the compiled function replaces the *eager*
forward underneath the autocast wrapper. Dynamo guards on the ambient autocast state, so fp32 and bf16 each get
their own graph and toggling `cpu_precision` never runs a graph traced for the other precision.

Recompiles: inductor caches one graph per input signature (dynamic=False: every latent size and batch size is its
own graph). Dynamo's guard cache per function is bounded by `torch._dynamo.config.recompile_limit` (8 in torch
2.13); past it the function silently runs eagerly for new signatures. A web UI sees a handful of sizes, so the
default is kept; timesteps that arrive as Python numbers are turned into 0-d tensors first, otherwise each distinct
timestep would be a new constant and a recompile of its own.

Where the compiled graphs are cached: inductor's own on-disk cache (FX graphs, AOT autograd, the built C++ kernels),
which a server process points at the data folder's `cache/inductor` (`use_cache_dir`; torch's default is
/tmp/torchinductor_<user>, which a reboot may empty) unless TORCHINDUCTOR_CACHE_DIR is set already. Measured on a
Xeon with AMX (SD 1.5 UNet at 512², bf16, 2 threads): the first call of a shape costs 101 s with an empty cache and
24 s in a new process with it warm, against a ~2.1 s compiled step (docs/performance.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, MutableMapping

import torch

from webui.models.precision import autocast_switch, install_unet_autocast

log = logging.getLogger("easel.compile")


@dataclass
class CompileState:
    """What /easel/v1/system reports for one UNet, and the compiled callable itself."""

    enabled: bool = False
    status: str = "off"  # off | pending (compiled lazily on the first call) | compiled | failed
    error: str = ""
    first_call_seconds: dict[str, float] = field(default_factory=dict)  # signature → compile + first step (s)
    compiled: Callable | None = None

    def report(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "status": self.status,
            "error": self.error or None,
            "first_call_seconds": dict(self.first_call_seconds),
        }


def compile_state(unet) -> CompileState:
    """The state kept by the UNet's autocast hook (one per loaded model); a fresh 'off' state when compile was
    never asked."""
    return getattr(autocast_switch(unet), "compile", None) or CompileState()


INDUCTOR_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def use_cache_dir(cache_dir: Path, environ: MutableMapping[str, str]) -> str:
    """Point inductor's on-disk cache at `cache_dir` unless the environment chose one; returns the one in use.
    Process-wide (inductor reads the variable at each compile), so only a server that owns its process calls it."""
    if not environ.get(INDUCTOR_CACHE_ENV):
        environ[INDUCTOR_CACHE_ENV] = str(cache_dir)
    return environ[INDUCTOR_CACHE_ENV]


def set_unet_compile(unet, enabled: bool) -> CompileState:
    """Turn compile on or off for this UNet. Compiling happens once per model (on the first call per input
    signature); a model whose compile failed stays eager until it is reloaded."""
    switch = install_unet_autocast(unet)
    state = switch.compile
    if state is None:
        state = switch.compile = CompileState()
    if not enabled:
        state.enabled = False
        if state.status != "failed":
            state.status = "off" if state.compiled is None else "compiled (inactive)"
        switch.inner = switch.eager
        return state
    state.enabled = True
    if state.status == "failed":
        switch.inner = switch.eager
        return state
    if state.compiled is None:
        try:
            state.compiled = torch.compile(switch.eager, backend="inductor", dynamic=False)
        except Exception as e:  # any failure means eager, never a failed request
            _fail(state, switch, e)
            return state
        state.status = "pending"
    elif state.status == "compiled (inactive)":
        state.status = "compiled"
    switch.inner = _guarded(state, switch)
    return state


def _guarded(state: CompileState, switch) -> Callable:
    """The compiled forward, timing each new signature's first call and falling back to eager on any error."""

    def forward(*args, **kwargs):
        args, kwargs = _tensor_timestep(args, kwargs)
        key = _signature(args, kwargs)
        first = key not in state.first_call_seconds
        t0 = time.perf_counter()
        compiled = state.compiled
        assert compiled is not None  # _guarded is installed once compiled exists
        try:
            out = compiled(*args, **kwargs)
        except Exception as e:  # the call is re-run eagerly below
            _fail(state, switch, e)
            return switch.eager(*args, **kwargs)
        if first:
            seconds = time.perf_counter() - t0
            state.first_call_seconds[key] = round(seconds, 2)
            state.status = "compiled"
            log.info("torch.compile of the UNet for %s: first call (compile + one step) took %.1f s", key, seconds)
        return out

    return forward


def _fail(state: CompileState, switch, error: Exception) -> None:
    state.status, state.error = "failed", f"{type(error).__name__}: {error}"[:500]
    switch.inner = switch.eager
    log.warning("torch.compile failed, the UNet runs eagerly: %s", state.error)


def _tensor_timestep(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """A Python-number timestep as a 0-d tensor, so dynamo doesn't specialise (and recompile) on its value."""
    if len(args) > 1 and isinstance(args[1], (int, float)):
        args = (args[0], torch.tensor(args[1]), *args[2:])
    elif isinstance(kwargs.get("timestep"), (int, float)):
        kwargs = {**kwargs, "timestep": torch.tensor(kwargs["timestep"])}
    return args, kwargs


def _signature(args: tuple, kwargs: dict) -> str:
    """The latent shape and the autocast state: what a new graph is compiled for."""
    sample = args[0] if args else kwargs.get("sample")
    shape = "x".join(str(s) for s in getattr(sample, "shape", ()))
    return f"{shape} {'bf16' if torch.is_autocast_enabled('cpu') else 'fp32'}"


def prepare_unet(unet, precision: str, compile_setting: bool) -> None:
    """Per request, before any pipeline call on this UNet (the first pass and the hires pass alike): bf16 autocast
    on when the request's precision is bf16 on the CPU, and torch.compile as the `cpu_compile` setting says."""
    on_cpu = unet.device.type == "cpu"
    install_unet_autocast(unet).enabled = precision == "bf16" and on_cpu
    set_unet_compile(unet, compile_setting and on_cpu)
