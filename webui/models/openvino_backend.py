"""OpenVINO as an optional CPU backend for the UNet (setting `cpu_backend: openvino`; infotext `CPU backend`).

The `openvino` package is optional (requirements-openvino.txt, installed with `--no-deps`: optimum-intel is not used,
it would pull another torch and torchvision). `import_openvino` is the one place it is imported; without it a job
that asks for the backend is refused with the install line (generation/cpu_backend.py).

What happens to a UNet:
- Once per checkpoint + LoRA set (the key generation/cpu_backend.py computes), the torch UNet as the job has it
  (peft's LoRA layers active at their weights, so the same numbers) is converted by `openvino.convert_model` with a
  dynamic batch, latent size and prompt length, and saved as IR (`<key>.xml/.bin`, written under temporary names
  and renamed) in the data folder's `cache/openvino`. A later job, or a later process, reads the IR instead.
- Per input shape, the IR is reshaped to that static shape and compiled for the CPU at the job's precision (f32, or
  bf16 inference precision), with OpenVINO's own compiled-blob cache (`CACHE_DIR`) in `compiled/<key>/<precision>`;
  the last `KEEP_COMPILED` compiled shapes stay in memory.
- The folder is held to the setting `openvino_cache_mb` (openvino_cache.py: least recently used entries go first,
  never the one in use; checked after a conversion and after a compile).
- Before the IR is saved, the nodes torch's bf16 autocast keeps in fp32 (Easel's fp32 islands, the residual
  Adds, the norms, the timestep) are marked for OpenVINO to keep in f32 under bf16 inference precision, and the
  timestep input takes shape (batch, 1) (openvino_precision.py says why and what). Measured in
  docs/performance.md.

The call goes through a diffusers `ModelHook` on the UNet's forward (`OpenVinoUnet`, installed once per UNet after
the precision switch, like precision.AutocastSwitch; the runtime's `cpu_backend` part turns it on for one job and
off again). A call the converted graph can't answer (ControlNet residuals, IP-Adapter's image embeddings, SDXL's
added conditions, an attention mask…) raises `Unsupported` with the argument's name: nothing is silently computed
on a different graph.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from diffusers.hooks import HookRegistry, ModelHook

from webui.errors import InvalidRequest
from webui.models import openvino_cache
from webui.models.openvino_precision import KEEP_F32, RULE, mark_f32, timestep_shape
from webui.models.precision import autocast_switch

HOOK = "easel.openvino"
INSTALL = "pip install --no-deps -r requirements-openvino.txt"
# compiled shapes kept in memory per UNet (a job's size and its hires size): each holds its own packed weights, the
# first of the mid UNet (325 MB of f32) ~600 MB at bf16, a second shape ~240 MB more
KEEP_COMPILED = 2
# UNet arguments the converted graph takes; any other one that carries a value is refused (see Unsupported)
GRAPH_INPUTS = ("sample", "timestep", "encoder_hidden_states")


class Unsupported(InvalidRequest):
    """A UNet call the OpenVINO graph cannot answer (a 422 for the job, with the way out)."""


def import_openvino() -> tuple[Any, str]:
    """(the openvino module, "") or (None, why not and how to install it)."""
    try:
        import openvino
    except ImportError as e:
        return None, f"the openvino package is not installed ({e}); {INSTALL}"
    return openvino, ""


@dataclass(frozen=True)
class OpenVinoPlan:
    """One job's use of the backend (made by generation/cpu_backend.py, applied by the runtime)."""

    key: str  # the IR's name: checkpoint hash + LoRA set + openvino version
    cache_dir: str  # data folder's cache/openvino
    precision: str  # OpenVINO's inference precision: "f32" | "bf16"
    threads: int = 0  # INFERENCE_NUM_THREADS (0: OpenVINO's choice)
    cache_mb: int = 20000  # the folder's budget (setting openvino_cache_mb; openvino_cache.evict)


def ir_key(checkpoint: str, adapters: Any, version: str) -> str:
    """The IR cache key: what the converted weights depend on (precision is applied at compile time, not in the IR)."""
    text = repr((checkpoint, adapters, version, KEEP_F32, RULE))  # an IR marked by an older rule is converted again
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class _Graph(torch.nn.Module):
    """The UNet with positional inputs and a plain tensor out, as convert_model traces it."""

    def __init__(self, unet: torch.nn.Module, forward: Any):
        super().__init__()
        self.unet, self.run = unet, forward  # the UNet as a submodule: its weights are the trace's parameters

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.run(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]


class OpenVinoUnet(ModelHook):
    """The backend on one UNet: off (`plan` None) the UNet runs as before; on, each call runs the compiled IR."""

    def __init__(self, ov: Any, unet: torch.nn.Module) -> None:
        super().__init__()
        self.ov, self.core = ov, ov.Core()
        self.signature = inspect.signature(type(unet).forward)
        self.plan: OpenVinoPlan | None = None
        self.model: Any = None  # the IR read for `model_key`
        self.model_key = ""
        self.compiled: OrderedDict[tuple, Any] = OrderedDict()
        self.conversions = self.compiles = self.calls = 0  # what tests and the benchmark read
        self.seconds: dict[str, float] = {}

    # ---- a job -------------------------------------------------------------------------------------------------
    def prepare(self, unet: torch.nn.Module, plan: OpenVinoPlan) -> None:
        """The IR for `plan.key` read (converted and saved first when the cache has none)."""
        folder = Path(plan.cache_dir)
        openvino_cache.touch(folder, plan.key)  # its last use: the eviction goes by it
        if self.model_key == plan.key and self.model is not None:
            return
        xml = folder / f"{plan.key}.xml"
        if not xml.exists():
            self._convert(unet, folder, plan.key)
            openvino_cache.evict(folder, plan.cache_mb, keep=plan.key)
        self.model, self.model_key = self.core.read_model(str(xml)), plan.key
        self.compiled.clear()

    def _convert(self, unet: torch.nn.Module, folder: Path, key: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        ov = self.ov
        switch = autocast_switch(unet)
        enabled = bool(switch and switch.enabled)
        if switch is not None:
            switch.enabled = False  # traced in fp32: OpenVINO applies the precision
        config = unet.config
        size = max(int(getattr(config, "sample_size", 8) or 8) // 2, 8)
        example = (  # values don't matter to the trace (and torch's global random state is left alone)
            torch.ones(2, int(config.in_channels), size, size),
            torch.tensor([500.0]),
            torch.ones(2, 77, int(config.cross_attention_dim)),
        )
        shapes = [
            ov.PartialShape([-1, int(config.in_channels), -1, -1]),
            ov.PartialShape([-1]),
            ov.PartialShape([-1, -1, int(config.cross_attention_dim)]),
        ]
        t0 = time.perf_counter()
        try:
            with torch.no_grad():
                model = ov.convert_model(
                    _Graph(unet, self.fn_ref.original_forward), example_input=example, input=shapes
                )
        finally:
            if switch is not None:
                switch.enabled = enabled
        model, _ = mark_f32(ov, model)
        tmp = folder / f"{key}.{os.getpid()}{openvino_cache.TMP}.xml"
        try:
            ov.save_model(model, str(tmp), compress_to_fp16=False)
            os.replace(tmp.with_suffix(".bin"), folder / f"{key}.bin")  # the .bin first: an .xml means both are whole
            os.replace(tmp, folder / f"{key}.xml")
        finally:  # a failed save (a full disk) leaves nothing behind; a killed process: clean_interrupted at start
            for leftover in (tmp, tmp.with_suffix(".bin")):
                leftover.unlink(missing_ok=True)
        self.conversions += 1
        self.seconds["convert"] = time.perf_counter() - t0

    def _compiled(self, shapes: tuple) -> Any:
        assert self.plan is not None and self.model is not None
        key = (self.model_key, self.plan.precision, self.plan.threads, shapes)
        if key in self.compiled:
            self.compiled.move_to_end(key)
            return self.compiled[key]
        t0 = time.perf_counter()
        model = self.model  # reshaped in place: a compiled model no longer depends on it
        model.reshape({model.inputs[i]: list(s) for i, s in enumerate(shapes)})
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": self.plan.precision,
            "PERFORMANCE_HINT": "LATENCY",
            # one blob folder per precision: OpenVINO 2026.4's blob name (its cache key) is the same for an f32 and a
            # bf16 compile of one IR, so a shared folder handed the bf16 compile the f32 blob: NaN on a Xeon with AMX
            "CACHE_DIR": str(
                openvino_cache.compiled_dir(Path(self.plan.cache_dir), self.model_key) / self.plan.precision
            ),
        }
        if self.plan.threads > 0:
            config["INFERENCE_NUM_THREADS"] = self.plan.threads
        compiled = self.core.compile_model(model, "CPU", config)
        self.compiled[key] = compiled
        while len(self.compiled) > KEEP_COMPILED:
            self.compiled.popitem(last=False)
        self.compiles += 1
        self.seconds["compile"] = time.perf_counter() - t0
        openvino_cache.evict(Path(self.plan.cache_dir), self.plan.cache_mb, keep=self.model_key)  # its blob counts
        return compiled

    # ---- the call ----------------------------------------------------------------------------------------------
    def new_forward(self, module, *args, **kwargs):
        if self.plan is None:
            return self.fn_ref.original_forward(*args, **kwargs)
        bound = self.signature.bind(module, *args, **kwargs).arguments
        for name, value in bound.items():
            if (
                name in ("self", "return_dict", *GRAPH_INPUTS)
                or value is None
                or (isinstance(value, dict) and not value)
            ):
                continue
            raise Unsupported(
                f"the OpenVINO CPU backend runs the plain UNet only; this job passes it '{name}' (ControlNet, "
                "IP-Adapter, T2I-Adapter and SDXL's added conditions do): set cpu_backend to torch for it"
            )
        sample = bound["sample"]
        timestep = torch.as_tensor(bound["timestep"], dtype=torch.float32).reshape(-1)
        assert self.model is not None
        shape = timestep_shape(self.model, sample.shape[0])
        timestep = timestep.expand(sample.shape[0]).reshape(shape) if len(shape) == 2 else timestep
        context = bound["encoder_hidden_states"]
        inputs = [sample.float().contiguous(), timestep.contiguous(), context.float().contiguous()]
        compiled = self._compiled(tuple(tuple(x.shape) for x in inputs))
        out = torch.from_numpy(compiled([x.numpy() for x in inputs])[0].copy()).to(sample.dtype)
        self.calls += 1
        if bound.get("return_dict", True):
            from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

            return UNet2DConditionOutput(sample=out)
        return (out,)


def hook_of(unet: Any) -> OpenVinoUnet | None:
    registry = getattr(unet, "_diffusers_hook", None)
    return registry.get_hook(HOOK) if registry is not None else None


def supports(unet: Any) -> str:
    """ "" when the backend can run this UNet, else why not (the conditions its graph has no input for)."""
    config = getattr(unet, "config", None)
    if config is None or type(unet).__name__ != "UNet2DConditionModel":
        return "the model's denoiser is not an SD UNet"
    if getattr(config, "addition_embed_type", None) or getattr(config, "class_embed_type", None):
        return "this UNet takes added conditions (SDXL's text_time)"
    if getattr(config, "time_cond_proj_dim", None):
        return "this UNet takes a guidance embedding (LCM)"
    return ""


@contextlib.contextmanager
def running(unet: torch.nn.Module, plan: OpenVinoPlan) -> Iterator[OpenVinoUnet]:
    """The backend on `unet` for the block (installed once per UNet; the IR converted or read now), then back to
    what it was (off, or an outer job's plan)."""
    ov, why = import_openvino()
    if ov is None:
        raise InvalidRequest(f"cpu_backend is openvino but {why}")
    hook = hook_of(unet)
    if hook is None:
        hook = OpenVinoUnet(ov, unet)
        HookRegistry.check_if_exists_or_initialize(unet).register_hook(hook, HOOK)
    hook.prepare(unet, plan)
    previous, hook.plan = hook.plan, plan
    try:
        yield hook
    finally:
        hook.plan = previous  # a nested job (a detailer's inner job, a hires pass) leaves the outer one's plan on
