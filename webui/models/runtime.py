"""The model runtime: every per-job behaviour Easel puts on a loaded model's library objects, in one place.

A request is first resolved into a plan (generation/processing.py `make_plan`, which switches nothing); the plan's
`RuntimeConfig` says what the job asks of the model's objects. `configure(model, config, control)` is the one
context a job runs in: it applies the model family's runtime parts in the order below and undoes them in reverse on
exit, on an error or an interrupt too. A hires pass adds its model (the same one at another size, or another
checkpoint) to the open session with `session.add`.

Order, for the UNet families (SD 1.x/2.x, SDXL):
  1. `vae_memory`     VAE tiling above `vae_tiling_min_pixels`, slicing for batches > 1 (diffusers' own switches on
                      the VAE; left as set, since /easel/v1/system reports them).
  2. `unet_precision` the UNet's bf16 autocast switch and torch.compile (precision.py, compile.py: diffusers hooks on
                      the UNet's forward, installed once per model); back to fp32 on exit, compile state kept.
  2b. `cpu_backend`   the UNet on OpenVINO (openvino_backend.py: a diffusers hook on the UNet's forward, installed
                      once per UNet; on for the job, off on exit), when the plan asks for it (setting cpu_backend).
  2c. `cpu_attention` the UNet's attention products on OpenVINO's CPU kernel, the rest of the UNet in torch
                      (attention_kernel.py: a TorchFunctionMode inside each Attention module's forward, hooks installed
                      once per UNet; on for the job, off on exit), when the plan asks for it (setting cpu_attention).
  3. `vae_precision`  the bf16 VAE decode (vae_precision.py: Automatic where its guard passes, or asked for); back
                      to fp32 on exit.
  4. `step_cache`     UNet step caching (step_cache.py: diffusers hooks on the UNet and its deep blocks), removed
                      on exit.
  5. `token_merging`  ToMe on the self-attention of the highest-resolution level with attention (token_merge.py:
                      diffusers hooks on the UNet, those transformer blocks and their attn1), removed on exit.
  6. interrupt checks forward pre-hooks on the denoiser's and the VAE's blocks (interrupt.py); removed on exit, and
                      before that by `session.stop_checks()` so a partial batch can still be decoded.
Per pipeline call, inside the job (generation/conditioning.py): `precision.follow_unet_precision` (a ControlNet or
adapter an extension added runs at the UNet's precision) and `precision.bf16_weights` (bf16, channels_last,
prepacked conv weights for that call only, conv_prepack.py). For SD 3/FLUX, `replaced_inputs` around a pipeline call
swaps an edited prompt's text inputs at each step (a forward pre-hook on the transformer, removed after the call).

Other families plug in their own parts without touching these: `FAMILY_PARTS[family]` names the parts a family
uses (the transformer families of family_flow.py use `cpu_attention` only: their weights are loaded in
DevicePolicy.flow_dtype, bf16 on a CPU with native bf16, and they get the interrupt checks too).

A method Easel puts on a library object is set here only, by `override` (an `Override` that remembers what it
replaced, so it is put on once per key and undone exactly): the bf16 decode for one job (`vae_precision`), and, once
per VAE when the manager picks it, the `--no-half-vae` dtype bridge (`bridge_vae_dtype`, vae_bridge.py), which also
serves pipelines run outside a job (training's sample images). tests/models/test_runtime_owns_patches.py checks that
nothing else in webui/ or extensions/ assigns a method or an `_easel_*` attribute to another object.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, replace
from typing import Any, Callable, ContextManager, Iterator

from webui.models.families import Family
from webui.models.interrupt import InterruptChecks


@dataclass(frozen=True)
class RuntimeConfig:
    """What one job asks of a model's objects; computed by make_plan, applied by `configure`."""

    precision: str = "fp32"  # the denoiser's: fp32 | bf16 (the CPU fast path) | fp16
    compile: bool = False  # torch.compile of the UNet (setting cpu_compile)
    vae_precision: str | None = "fp32"  # fp32 | bf16 (setting cpu_vae_precision) | None: left as it is
    width: int = 0
    height: int = 0
    batch_size: int = 1
    vae_tiling_min_pixels: int = 0
    step_cache: int = 0  # UNet step caching: every N-th call full, the rest reuse its deep features (0, 1: off)
    token_merging: float = 0.0  # ToMe ratio on the top attention level's self-attention (0: off)
    token_merging_hr: float = 0.0  # the hires pass's ratio (0: `token_merging`)
    openvino: Any = None  # openvino_backend.OpenVinoPlan: the UNet runs on OpenVINO (setting cpu_backend)
    cpu_attention: bool = False  # the UNet's attention products on OpenVINO's kernel (setting cpu_attention)

    def at_size(self, width: int, height: int, batch_size: int) -> "RuntimeConfig":
        return replace(self, width=width, height=height, batch_size=batch_size)

    def for_hires(self) -> "RuntimeConfig":
        """The hires pass's config: its own token merging ratio when one is set (A1111's token_merging_ratio_hr)."""
        return replace(self, token_merging=self.token_merging_hr or self.token_merging)


def vae_memory(pipe: Any, config: RuntimeConfig) -> ContextManager:
    from webui.models.vae_tiling import configure_vae_memory

    configure_vae_memory(pipe.vae, config.width, config.height, config.batch_size, config.vae_tiling_min_pixels)
    return contextlib.nullcontext()


@contextlib.contextmanager
def unet_precision(pipe: Any, config: RuntimeConfig) -> Iterator[None]:
    from webui.models.compile import prepare_unet
    from webui.models.precision import autocast_switch

    prepare_unet(pipe.unet, config.precision, config.compile)
    try:
        yield
    finally:
        switch = autocast_switch(pipe.unet)
        if switch is not None:
            switch.enabled = False


class Override:
    """A method of one library object replaced by Easel (see `override`): calls `fn`; `inner` is what it replaced
    (the class's method, or an earlier Override)."""

    def __init__(self, key: str, inner: Callable, fn: Callable):
        functools.update_wrapper(self, inner)  # the replaced method's name, doc and signature (__wrapped__)
        self.key, self.inner, self.fn = key, inner, fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def overridden(obj: Any, name: str, key: str) -> bool:
    """True when `obj.<name>` already goes through the Override `key`."""
    current = vars(obj).get(name)
    while isinstance(current, Override):
        if current.key == key:
            return True
        current = current.inner
    return False


def override(obj: Any, name: str, key: str, make: Callable[[Callable], Callable]) -> Callable[[], None] | None:
    """`obj.<name>` becomes `make(current method)` (once per key: None when `key` is already on it); returns the
    undo, which puts back exactly what was there (undo in reverse order of overriding)."""
    if overridden(obj, name, key):
        return None
    had, previous, current = name in vars(obj), vars(obj).get(name), getattr(obj, name)
    setattr(obj, name, Override(key, current, make(current)))

    def undo() -> None:
        if had:
            setattr(obj, name, previous)
        else:
            delattr(obj, name)  # the class's own method again

    return undo


@contextlib.contextmanager
def overriding(obj: Any, name: str, key: str, make: Callable[[Callable], Callable]) -> Iterator[None]:
    """`override` for the length of the block (also on an error or an interrupt)."""
    undo = override(obj, name, key, make)
    try:
        yield
    finally:
        if undo is not None:
            undo()


def bridge_vae_dtype(vae: Any, model_dtype: Any) -> bool:
    """`--no-half-vae`: make `vae` usable beside a denoiser in `model_dtype` (vae_bridge.py); once per VAE, kept
    (the manager calls it when it picks the VAE). True when a bridge is (or already was) on it."""
    from webui.models import vae_bridge

    if overridden(vae, "decode", vae_bridge.KEY):
        return True
    if not vae_bridge.needed(vae, model_dtype):
        return False
    override(vae, "decode", vae_bridge.KEY, lambda decode: vae_bridge.decode_any(vae, decode))
    override(vae, "encode", vae_bridge.KEY, lambda encode: vae_bridge.encode_back(vae, encode))
    return True


def vae_precision(pipe: Any, config: RuntimeConfig) -> ContextManager:
    """The bf16 VAE decode (vae_precision.py) for this job; None (a hires pass on another checkpoint) and
    fp32 leave the decode as it is."""
    from webui.models.vae_precision import KEY, bf16_decode

    vae = getattr(pipe, "vae", None)
    if config.vae_precision != "bf16" or vae is None or not hasattr(vae, "decode"):
        return contextlib.nullcontext()
    return overriding(vae, "decode", KEY, lambda decode: bf16_decode(vae, decode))


@contextlib.contextmanager
def _unet_hooks(
    unet: Any,
    value: Any,
    state_of: Callable[[Any], Any],
    field: str,
    install: Callable[[Any, Any], Any],
    remove: Callable[[Any], None],
) -> Iterator[None]:
    """A speed preset's hooks on `unet` for the block: installed when off before (removed on exit), or, when a
    session already has them on (a hires pass, a detailer's inner job), their `field` set to `value` and put back."""
    hook = state_of(unet)
    if hook is not None:
        previous = getattr(hook.state, field)
        setattr(hook.state, field, value)
        try:
            yield
        finally:
            setattr(hook.state, field, previous)
        return
    if not value:
        yield
        return
    install(unet, value)
    try:
        yield
    finally:
        remove(unet)


def step_cache(pipe: Any, config: RuntimeConfig) -> ContextManager:
    """UNet step caching (step_cache.py) for this job, every `config.step_cache`-th call full; off below 2."""
    from webui.models import step_cache as sc

    unet = getattr(pipe, "unet", None)
    if unet is None or not sc.supports(unet):
        return contextlib.nullcontext()
    interval = config.step_cache if config.step_cache >= 2 else 0
    return _unet_hooks(unet, interval, sc.clock, "interval", sc.install, sc.remove)


def token_merging(pipe: Any, config: RuntimeConfig) -> ContextManager:
    """Token merging (token_merge.py) at `config.token_merging` for this job."""
    from webui.models import token_merge as tm

    unet = getattr(pipe, "unet", None)
    if unet is None:
        return contextlib.nullcontext()
    return _unet_hooks(unet, config.token_merging, tm.size_hook, "ratio", tm.install, tm.remove)


def cpu_backend(pipe: Any, config: RuntimeConfig) -> ContextManager:
    """The UNet on OpenVINO for this job (openvino_backend.py: a diffusers hook installed once per UNet, after the
    precision switch, so it is the outer one; on for the job, off on exit)."""
    unet = getattr(pipe, "unet", None)
    if config.openvino is None or unet is None:
        return contextlib.nullcontext()
    from webui.models.openvino_backend import running

    return running(unet, config.openvino)


def cpu_attention(pipe: Any, config: RuntimeConfig) -> ContextManager:
    """The denoiser's attention products on OpenVINO's CPU kernel for this job (attention_kernel.py: a
    TorchFunctionMode around each attention module's forward, hooks installed once per UNet or transformer; on for
    the job, off on exit)."""
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    if not config.cpu_attention or denoiser is None:
        return contextlib.nullcontext()
    import torch

    from webui.models.attention_kernel import running
    from webui.models.openvino_backend import import_openvino

    ov, why = import_openvino()
    if ov is None:  # planned where it was importable: this process can't (a Ray worker without the extra)
        raise RuntimeError(f"cpu_attention planned on OpenVINO but {why}")
    return running(denoiser, ov, torch.get_num_threads())


Part = Callable[[Any, RuntimeConfig], ContextManager]
# step_cache before token_merging: a reused call then skips the merge computation of the deep blocks as well
UNET_PARTS: tuple[Part, ...] = (
    vae_memory,
    unet_precision,
    cpu_backend,
    cpu_attention,
    vae_precision,
    step_cache,
    token_merging,
)
# a family listed here runs these parts instead of UNET_PARTS (in this order)
FAMILY_PARTS: dict[Family, tuple[Part, ...]] = {Family.SD3: (cpu_attention,), Family.FLUX: (cpu_attention,)}


@contextlib.contextmanager
def replaced_inputs(module: Any, replace: Callable[[dict[str, Any]], dict[str, Any]]) -> Iterator[None]:
    """`module`'s keyword arguments rewritten by `replace` on every call in the `with` body (a forward pre-hook,
    removed on exit): SD 3/FLUX prompt editing swaps the transformer's text inputs per step this way, since the
    pipelines take one set of prompt embeddings per call (webui/prompts/flow_prompts.py FlowPrompt.replace)."""
    handle = module.register_forward_pre_hook(lambda _m, args, kwargs: (args, replace(kwargs)), with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def parts_for(family: Any) -> tuple[Part, ...]:
    return FAMILY_PARTS.get(family, UNET_PARTS)


def denoiser(pipe: Any) -> Any:
    """The model that runs at every step: the UNet, or a transformer (SD3/FLUX)."""
    return getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)


class RuntimeSession:
    """One job's runtime: each added model's parts entered in order, all left in reverse on `close`."""

    def __init__(self, control: Any):
        self._stack = contextlib.ExitStack()
        self.checks = InterruptChecks(control)

    def add(self, model: Any, config: RuntimeConfig) -> None:
        """Apply `model`'s family parts for `config`, then its interrupt checks."""
        pipe = model.pipeline
        for part in parts_for(model.probe.family):
            self._stack.enter_context(part(pipe, config))
        self.checks.attach(denoiser(pipe), pipe.vae)

    @property
    def stopped_in(self) -> str | None:
        return self.checks.stopped_in

    def stop_checks(self) -> None:
        """Interrupt checks off (an interrupted batch's latents are decoded after this); the rest stays."""
        self.checks.close()

    def close(self) -> None:
        self.checks.close()  # entered last: undone first
        self._stack.close()


@dataclass(frozen=True)
class ModelRuntime:
    """A loaded model's runtime (`LoadedModel.runtime`): `with model.runtime.configure(config, control) as s:`."""

    model: Any

    def configure(self, config: RuntimeConfig, control: Any) -> ContextManager[RuntimeSession]:
        return configure(self.model, config, control)


@contextlib.contextmanager
def configure(model: Any, config: RuntimeConfig, control: Any) -> Iterator[RuntimeSession]:
    """The one runtime context of a job on `model` (see the module docstring for the order)."""
    session = RuntimeSession(control)
    try:
        session.add(model, config)
        yield session
    finally:
        session.close()
