"""Apply `<lora:…>` tags to a loaded checkpoint by hot-swapping peft adapters.

Per checkpoint (in `LoadedModel.extra["lora"]`) the service keeps up to `max_loaded` adapters, least recently used
first out. A request whose LoRAs are already held only changes adapter weights with diffusers' `set_adapters`
(one weight per component, so the text encoder and the UNet get their own); it never reloads the checkpoint and
never reads a file it holds. A request without LoRAs disables every adapter layer, so its output is exactly the
base model's. Unknown or broken LoRAs give warnings (as in A1111), never a failed job.
"""

from __future__ import annotations

import builtins
import hashlib
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from webui.lora import sd3_kohya
from webui.lora.catalog import LoraCatalog, LoraEntry
from webui.lora.tags import LoraTag, merge_tags, parse_prompt

EXTRA_KEY = "lora"


@dataclass
class LoraApplied:
    warnings: list[str] = field(default_factory=list)
    infotext_params: dict[str, str] = field(default_factory=dict)  # {"Lora hashes": "a: 0123456789ab, b: …"}
    active: list[LoraTag] = field(default_factory=list)  # the tags applied (merged, known, loadable)


@dataclass
class _Held:
    adapter: str  # the peft adapter name inside the pipeline
    mtime_ns: int
    size: int
    components: tuple[str, ...]  # e.g. ("unet", "text_encoder")


@dataclass
class _ModelLoras:
    held: OrderedDict[str, _Held] = field(default_factory=OrderedDict)  # by file path, most recent last
    signature: tuple | None = None  # the (adapter, weights) set last applied; () = all disabled
    enabled: bool | None = None  # adapter layers on/off; None = unknown (after a load or unload)
    counter: int = 0


def read_lora_file(path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """The tensors, plus for safetensors the addnet hash of the same bytes (so hashing needs no second read)."""
    if path.suffix.lower() != ".safetensors":
        from webui.models.loader import read_state_dict

        return read_state_dict(path), None
    from safetensors.torch import load as load_bytes

    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return load_bytes(data), hashlib.sha256(memoryview(data)[8 + n :]).hexdigest()


class LoraLoadFailed(Exception):
    pass


def _tuner_layers(module: torch.nn.Module):
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in module.modules() if isinstance(m, BaseTunerLayer)]


class LoraService:
    def __init__(
        self,
        catalog: LoraCatalog,
        *,
        max_loaded: int = 8,
        reader: Callable[[Path], tuple[dict, str | None]] = read_lora_file,
    ):
        self.catalog = catalog
        self.max_loaded = max(1, int(max_loaded))
        self.reader = reader
        self.file_reads = 0  # LoRA files read from disk (tests and benchmarks read it)
        self._lock = threading.RLock()

    # --- catalog (what the API's /sdapi/v1/loras and refresh-loras call) ---------------------------------------
    def list(self) -> list[dict[str, Any]]:
        return [e.to_api() for e in self.catalog.list()]

    def refresh(self) -> builtins.list[LoraEntry]:
        return self.catalog.refresh()

    # --- applying ------------------------------------------------------------------------------------------------
    def apply_prompt(self, model, prompt: str) -> tuple[str, LoraApplied]:
        """Strip every extra-network tag from `prompt` and apply its LoRAs; return (clean prompt, what was applied)."""
        parsed = parse_prompt(prompt)
        applied = self.prepare(model, parsed.loras)
        applied.warnings = parsed.warnings + applied.warnings
        return parsed.text, applied

    def prepare(self, model, tags: builtins.list[LoraTag]) -> LoraApplied:
        """Make exactly `tags` active on `model`'s pipeline (all adapters off when empty)."""
        with self._lock:
            out = LoraApplied()
            state: _ModelLoras = model.extra.setdefault(EXTRA_KEY, _ModelLoras())
            wanted = self._fitting(model, self._resolve(merge_tags(tags), out.warnings), out.warnings)
            pipe = model.pipeline
            active: list[tuple[LoraTag, LoraEntry, _Held]] = []
            for tag, entry in wanted:
                try:
                    active.append((tag, entry, self._ensure_loaded(pipe, state, entry)))
                except LoraLoadFailed as e:
                    out.warnings.append(f"LoRA {tag.name} could not be loaded: {e}")
            self._evict(pipe, state, keep={str(e.path) for _, e, _ in active})
            self._activate(pipe, state, [(t, h) for t, _, h in active])
            out.active = [t for t, _, _ in active]
            hashes = [f"{t.name.replace(':', '').replace(',', '')}: {self.catalog.shorthash(e)}" for t, e, _ in active]
            if hashes:
                out.infotext_params["Lora hashes"] = ", ".join(hashes)
            return out

    def release(self, model) -> None:
        """Remove every adapter this service put on `model` (before training on it, or to free memory)."""
        with self._lock:
            state: _ModelLoras | None = model.extra.pop(EXTRA_KEY, None)
            if state is None:
                return
            for held in state.held.values():
                self._unload(model.pipeline, held)

    def unet_adapter_set(self, model) -> tuple:
        """The LoRA set active on `model`'s UNet as ((file, size, mtime), weight) pairs, () when none: what a copy
        made from the UNet's weights (the OpenVINO backend's converted model) is keyed by."""
        state: _ModelLoras | None = model.extra.get(EXTRA_KEY)
        if state is None or not state.signature:
            return ()
        files = {held.adapter: (path, held.size, held.mtime_ns) for path, held in state.held.items()}
        return tuple(
            (files.get(adapter), weight)
            for adapter, weights in state.signature
            for component, weight in weights
            if component == "unet"
        )

    def held_names(self, model) -> builtins.list[str]:
        state = model.extra.get(EXTRA_KEY)
        return [Path(p).stem for p in state.held] if state else []

    # --- internals -----------------------------------------------------------------------------------------------
    def _resolve(
        self, tags: builtins.list[LoraTag], warnings: builtins.list[str]
    ) -> builtins.list[tuple[LoraTag, LoraEntry]]:
        found, missing = [], []
        for tag in tags:
            entry = self.catalog.find(tag.name)
            if entry is None:  # a file added since the last scan (a LoRA just trained or copied in)
                self.catalog.refresh()
                entry = self.catalog.find(tag.name)
            if entry is None:
                missing.append(tag.name)
            elif entry.error:
                warnings.append(f"LoRA {tag.name} cannot be used: {entry.error}")
            else:
                found.append((tag, entry))
        if missing:
            warnings.append("Networks not found: " + ", ".join(missing))  # A1111's wording
        return found

    @staticmethod
    def _fitting(
        model, found: builtins.list[tuple[LoraTag, LoraEntry]], warnings: builtins.list[str]
    ) -> builtins.list[tuple[LoraTag, LoraEntry]]:
        """The LoRAs made for the loaded checkpoint's family; the others are refused with a warning naming both."""
        from webui.lora.catalog import FAMILY_NAMES

        family = getattr(getattr(model, "probe", None), "family", None)
        mine = {"flux": "flux", "sd3": "sd3"}.get(str(getattr(family, "value", "")), "sd")
        label = getattr(getattr(model, "probe", None), "label", None) or FAMILY_NAMES[mine]
        out = []
        for tag, entry in found:
            if entry.family is not None and entry.family != mine:
                warnings.append(
                    f"LoRA {tag.name} is a {FAMILY_NAMES[entry.family]} LoRA: it does not fit {label} "
                    "and was not applied"
                )
            else:
                out.append((tag, entry))
        return out

    def _ensure_loaded(self, pipe, state: _ModelLoras, entry: LoraEntry) -> _Held:
        key = str(entry.path)
        held = state.held.get(key)
        if held is not None and (held.mtime_ns, held.size) == (entry.mtime_ns, entry.size):
            state.held.move_to_end(key)
            return held
        if held is not None:  # the file changed on disk (e.g. retrained): drop the stale adapter
            self._unload(pipe, state.held.pop(key))
        try:
            self.file_reads += 1
            sd, digest = self.reader(entry.path)
        except Exception as e:
            raise LoraLoadFailed(getattr(e, "message", None) or str(e)) from e
        if digest and self.catalog.hashes is not None:  # seed the hash cache from the bytes just read
            self.catalog.hashes.get("hashes-addnet", f"lora/{entry.rel}", entry.path, lambda p: digest)
        denoiser = getattr(pipe, "unet", None) or pipe.transformer  # FLUX: diffusers' own loaders convert kohya,
        dtype = denoiser.dtype  # XLabs and ComfyUI keys; SD 3: kohya keys through sd3_kohya (diffusers has none)
        if getattr(pipe, "unet", None) is None and sd3_kohya.is_kohya_sd3(sd):
            sd, skipped = sd3_kohya.convert(sd, int(denoiser.config.num_layers))
            if skipped:  # T5 parts or modules with no diffusers counterpart: the file is refused
                message = (
                    f"{len(skipped)} kohya SD 3 module(s) can't be converted (e.g. {skipped[0]}): only the "
                    "transformer's attention, MLP and modulation layers and CLIP-L/G's are"
                )
                self.catalog.mark_error(entry, message)
                raise LoraLoadFailed(message)
        sd = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in sd.items()}
        adapter = f"easel_lora_{state.counter}"
        state.counter += 1
        unet = getattr(pipe, "unet", None) is not None
        kwargs = {"unet_config": pipe.unet.config} if unet and entry.format.startswith(("kohya", "locon")) else {}
        try:
            pipe.load_lora_weights(sd, adapter_name=adapter, **kwargs)
        except Exception as e:
            self._unload(pipe, _Held(adapter, 0, 0, tuple(pipe._lora_loadable_modules)))
            message = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            self.catalog.mark_error(entry, message)
            raise LoraLoadFailed(message) from e
        components = tuple(c for c, names in pipe.get_list_adapters().items() if adapter in names)
        held = _Held(adapter=adapter, mtime_ns=entry.mtime_ns, size=entry.size, components=components)
        state.held[key] = held
        state.signature = state.enabled = None  # new layers exist: apply the weights and the on/off state again
        return held

    def _evict(self, pipe, state: _ModelLoras, keep: set[str]) -> None:
        for key in list(state.held):
            if len(state.held) <= self.max_loaded:
                break
            if key not in keep:
                self._unload(pipe, state.held.pop(key))
                state.signature = state.enabled = None

    @staticmethod
    def _unload(pipe, held: _Held) -> None:
        from diffusers.utils.peft_utils import delete_adapter_layers

        for name in held.components:
            module = getattr(pipe, name, None)
            if module is not None:
                delete_adapter_layers(module, held.adapter)

    @staticmethod
    def _set_enabled(pipe, state: _ModelLoras, enabled: bool) -> None:
        # per layer, not pipe.enable_lora(): that raises for a component without adapters (e.g. a UNet-only LoRA)
        if state.enabled is enabled:
            return
        for name in pipe._lora_loadable_modules:
            module = getattr(pipe, name, None)
            if isinstance(module, torch.nn.Module):
                for layer in _tuner_layers(module):
                    layer.enable_adapters(enabled)
        state.enabled = enabled

    def _activate(self, pipe, state: _ModelLoras, active: builtins.list[tuple[LoraTag, _Held]]) -> None:
        if not active:
            self._set_enabled(pipe, state, False)
            state.signature = ()
            return
        names, weights = [], []
        for tag, held in active:
            names.append(held.adapter)
            weights.append(
                {c: float(tag.te_weight if c.startswith("text_encoder") else tag.unet_weight) for c in held.components}
            )
        signature = tuple((n, tuple(sorted(w.items()))) for n, w in zip(names, weights))
        if signature == state.signature:
            return
        self._set_enabled(pipe, state, True)
        pipe.set_adapters(names, weights)
        state.signature = signature
