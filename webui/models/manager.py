"""The model manager: the one place that decides what is loaded and on which device.

It keeps an LRU RAM cache of loaded checkpoints (option `sd_checkpoints_limit`), so switching back to a recent one
reads no file. A failed load raises a typed error and leaves the active model as it was.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


from webui.errors import ModelLoadError, ModelNotFound
from webui.models import loader
from webui.models.catalog import CheckpointCatalog, CheckpointInfo, VaeInfo, scan_vaes, vae_beside
from webui.models.device import DevicePolicy
from webui.models.memory_report import model_bytes
from webui.models.offload import OffloadPlan, apply_offload, plan_offload, remove_offload
from webui.models.families import Family, ProbeResult
from webui.models.hashing import file_stamp
from webui.models.runtime import ModelRuntime, bridge_vae_dtype
from webui.models.vae_precision import Bf16VaeGuard


# families whose checkpoints may take their text encoders / VAE from separate files (forge_additional_modules)
SEPARATE_PARTS = (Family.SD3, Family.FLUX)


@dataclass
class LoadedModel:
    info: CheckpointInfo
    pipeline: Any
    probe: ProbeResult
    scheduler_config: dict[str, Any]
    own_vae: Any
    load_seconds: float
    vae: VaeInfo | None = None  # the override in use, if any
    extra: dict[str, Any] = field(default_factory=dict)  # per-checkpoint state owned by other services (LoRA, …)
    offload: OffloadPlan = field(default_factory=OffloadPlan)  # the offloading applied to it now (offload.py)
    modules: tuple[str, ...] = ()  # SD 1.x/2.x/SDXL: Forge's VAE / Text Encoder choice it was last loaded with
    file_stamp: tuple[int, int] = (0, 0)  # (size, mtime_ns) of the file (folder) when read: hashing.file_stamp

    @property
    def native_size(self) -> int:
        return self.probe.native_size

    @property
    def runtime(self) -> ModelRuntime:
        """Per-job behaviour on this model's objects (precision, compile, VAE, interrupt checks): runtime.py."""
        return ModelRuntime(self)


class ModelManager:
    def __init__(
        self,
        *,
        catalog: CheckpointCatalog,
        vae_dir: Path,
        cache_root: Path,
        policy: DevicePolicy,
        get_option: Callable[[str], Any],
        on_loaded: Callable[[LoadedModel], None] | None = None,
    ):
        self.catalog, self.vae_dir, self.cache_root, self.policy = catalog, vae_dir, cache_root, policy
        self.get_option = get_option
        self.on_loaded = on_loaded
        self.lock = threading.RLock()
        self._cache: OrderedDict[str, LoadedModel] = OrderedDict()  # title → model, most recent last
        self._active: LoadedModel | None = None
        self._vae_cache: dict[Path, Any] = {}
        self.vae_bf16_guard = Bf16VaeGuard()  # cpu_vae_precision Automatic: which VAEs decode well in bf16
        self.vaes: list[VaeInfo] = []
        self.file_loads = 0  # checkpoint files read from disk (tests and benchmarks read it)

    # --- catalog -------------------------------------------------------------------------------------------------
    def refresh(self) -> list[CheckpointInfo]:
        self.vaes = scan_vaes(self.vae_dir)
        return self.catalog.refresh()

    @property
    def active(self) -> LoadedModel | None:
        return self._active

    def cached_titles(self) -> list[str]:
        return list(self._cache)

    # --- loading -------------------------------------------------------------------------------------------------
    def load(self, query: str | None = None, modules: tuple[str, ...] | None = None) -> LoadedModel:
        """Make a checkpoint active (by title, name, hash or path); None means the current or default one.
        `modules`: Forge's forge_additional_modules, the text encoder / VAE files an SD3/FLUX transformer uses (one
        cache entry per choice); for SD 1.x/2.x/SDXL, a VAE among them (module_vae). None: no choice for an SD3/FLUX
        transformer, and the choice an SD 1.x/2.x/SDXL checkpoint was last loaded with (a job loads it twice)."""
        with self.lock:
            if query is None or query == "":
                if self._active is not None:
                    return self._active
                info = self.catalog.default()
                if info is None:
                    raise ModelNotFound("no checkpoint found: put one in models/Stable-diffusion/")
            else:
                info = self.catalog.find(query)
            keep = modules is None
            modules = tuple(sorted(str(m) for m in modules or ()))
            key = info.title
            model = self._cache.get(key)
            if modules and (model is None or model.probe.family in SEPARATE_PARTS):
                key = info.title + " + " + ", ".join(modules)
                model = self._cache.get(key)
            if model is None:
                model = self._load_from_disk(info, modules)
                if model.probe.family not in SEPARATE_PARTS:  # modules change no part it loads: one entry, one load
                    key = info.title
                self._cache[key] = model
            if model.probe.family not in SEPARATE_PARTS and not keep:
                self.module_vae(model, modules)  # two VAEs that fit: refused before anything changes
                model.modules = modules  # a VAE among them applies (apply_vae, from _activate)
            self._cache.move_to_end(key)
            self._activate(model)
            self._evict()
            return model

    def _load_from_disk(self, info: CheckpointInfo, modules: tuple[str, ...] = ()) -> LoadedModel:
        t0 = time.perf_counter()
        self.file_loads += 1
        stamp = file_stamp(info.path)  # before the read: a file replaced meanwhile can't pass for what was read
        self.cache_root.mkdir(parents=True, exist_ok=True)
        if info.is_folder:
            lc = loader.build_from_diffusers_folder(
                info.path, dtype=self.policy.dtype, flow_dtype=self.policy.flow_dtype
            )
        else:
            lc = loader.build_from_single_file(
                info.path,
                self.cache_root,
                dtype=self.policy.dtype,
                flow_dtype=self.policy.flow_dtype,
                models_root=self.vae_dir.parent,  # SD3/FLUX parts' folders
                modules=modules,
            )
        pipe = lc.pipeline
        if pipe.vae.dtype != self.policy.vae_dtype:  # --no-half-vae: the checkpoint's own VAE in fp32 too
            pipe.vae.to(dtype=self.policy.vae_dtype)
        model = LoadedModel(
            info=info,
            pipeline=pipe,
            probe=lc.probe,
            scheduler_config=lc.scheduler_config,
            own_vae=pipe.vae,
            load_seconds=time.perf_counter() - t0,
            file_stamp=stamp,
        )
        if self.policy.lowram and lc.encoders is not None:  # --lowram: the text encoders wait on the disk
            from webui.models.lowram import EncoderWeights

            model.extra["lowram"] = EncoderWeights(pipe, lc.encoders)
            model.extra["lowram"].release()
        return model

    def _activate(self, model: LoadedModel) -> None:
        previous = self._active
        if previous is model:
            self.apply_vae(model)
            return
        if previous is not None:
            self._unplace(previous)
        self._active = model
        self.apply_vae(model)  # places the model, so offloading covers the VAE in use
        if self.on_loaded:
            self.on_loaded(model)

    def _place(self, model: LoadedModel, *, refresh: bool = False) -> None:
        """Put the active model in its offload mode: --medvram/--lowvram, or the GPU weights budget (setting
        gpu_weights_mb, read at every job, so a change applies at the next one); `refresh`: a part was replaced."""
        plan = plan_offload(
            self.policy.offload,
            int(self.get_option("gpu_weights_mb") or 0),
            model.pipeline,
            offload_device=self.policy.offload_device,
            stream=self.policy.device.type == "cuda",
        )
        if plan != model.offload or refresh or (plan.mode == "none" and self.policy.device.type != "cpu"):
            apply_offload(model.pipeline, plan, self.policy.device, self.policy.offload_device)
            model.offload = plan

    def _unplace(self, model: LoadedModel) -> None:
        """The RAM cache lives in RAM without hooks; only the active model is on the device or offloaded."""
        if model.offload.mode != "none":
            remove_offload(model.pipeline)
            model.offload = OffloadPlan()
        if self.policy.device.type != "cpu":
            model.pipeline.to("cpu")

    def _evict(self) -> None:
        """Least recently used first, never the active model: down to `sd_checkpoints_limit` checkpoints (A1111's
        count), then, with a byte budget (`sd_checkpoints_ram_mb`, 0: none), down to that many bytes: one FLUX-sized
        model weighs as much as a dozen SD 1.x ones, so a count alone says little about the RAM."""
        limit = max(1, int(self.get_option("sd_checkpoints_limit")))
        while len(self._cache) > limit:
            title, model = next(iter(self._cache.items()))
            if model is self._active:
                self._cache.move_to_end(title)
                continue
            del self._cache[title]
        budget = int(self.get_option("sd_checkpoints_ram_mb") or 0) * 2**20
        if budget <= 0:
            return
        sizes = {title: model_bytes(model) for title, model in self._cache.items()}
        for title, model in list(self._cache.items()):  # oldest first
            if sum(sizes.values()) <= budget:
                break
            if model is not self._active:
                del self._cache[title]
                del sizes[title]

    def cached_bytes(self) -> int:
        """Bytes the RAM cache's models hold (parameters and buffers, in RAM and on the device)."""
        with self.lock:
            return sum(model_bytes(m) for m in self._cache.values())

    def unload(self) -> None:
        with self.lock:
            self._cache.clear()
            self._active = None
            self._vae_cache.clear()

    def reload(self) -> LoadedModel:
        with self.lock:
            title = self._active.info.title if self._active else None
            if title:
                self._cache.pop(title, None)
                self._active = None
            return self.load(title)

    # --- VAE -----------------------------------------------------------------------------------------------------
    def find_vae(self, name: str) -> VaeInfo:
        for v in self.vaes or scan_vaes(self.vae_dir):
            if name in (v.name, v.model_name, v.path.stem):
                return v
        raise ModelNotFound(f"VAE not found: {name!r}")

    def apply_vae(self, model: LoadedModel, choice: str | None = None) -> None:
        """Option `sd_vae`: Automatic (a VAE named like the checkpoint, else its own), None (its own), or a file."""
        choice = choice if choice is not None else str(self.get_option("sd_vae") or "Automatic")
        target: VaeInfo | None = self.module_vae(model)
        if target is not None:
            pass  # Forge's VAE / Text Encoder choice names a VAE for this checkpoint: it wins over sd_vae
        elif choice not in ("Automatic", "None", ""):
            target = self.find_vae(choice)
        elif choice == "Automatic" and not model.info.is_folder:
            beside = vae_beside(model.info.path)
            if beside is not None:
                target = VaeInfo(path=beside, name=beside.name)
        if target is None:
            vae = model.own_vae
        else:
            vae = self._vae_cache.get(target.path)
            if vae is None:
                vae = loader.build_vae(target.path, self.cache_root, model.probe, dtype=self.policy.vae_dtype)
                self._vae_cache[target.path] = vae
        denoiser = getattr(model.pipeline, "unet", None) or model.pipeline.transformer  # SD3/FLUX: a transformer
        bridge_vae_dtype(vae, denoiser.dtype)  # an fp32 VAE beside a half UNet (--no-half-vae)
        replaced = model.pipeline.vae is not vae
        if replaced and model.offload.mode != "none":
            remove_offload(model.pipeline)  # the hooks of the VAE leaving go with it
        model.pipeline.vae = vae
        model.vae = target
        if model is self._active:
            self._place(model, refresh=replaced)

    def module_vae(self, model: LoadedModel, modules: tuple[str, ...] | None = None) -> VaeInfo | None:
        """The VAE Forge's "VAE / Text Encoder" choice (forge_additional_modules) names for an SD 1.x/2.x/SDXL
        checkpoint, as Forge lets that selector pick a VAE for any family: a file of models/VAE/ named there whose
        latent channels fit. Text encoders and VAEs of other widths in the choice are for SD 3/FLUX and left alone."""
        modules = model.modules if modules is None else modules
        if not modules:
            return None
        from webui.models.parts import named, vae_channels

        vaes = {v.path: v for v in self.vaes or scan_vaes(self.vae_dir)}
        channels = model.own_vae.config.latent_channels
        fits = [vaes[p] for p in named(list(vaes), modules) if vae_channels(p) == channels]
        if len(fits) > 1:
            raise ModelLoadError(
                f"VAE / Text Encoder: more than one VAE for {model.info.title} is chosen "
                f"({', '.join(v.name for v in fits)}); keep one"
            )
        return fits[0] if fits else None

    def loaded_report(self) -> list[dict[str, Any]]:
        """Per model in the RAM cache (most recent last): family, variant, dtypes, quantization, offload, bytes."""
        from webui.models.memory_report import model_report

        with self.lock:
            models = list(self._cache.values())
            active = self._active
        return [model_report(m, active=m is active) for m in models]

    def memory(self) -> dict[str, Any]:
        return {"cached": self.cached_titles(), "device": str(self.policy.device), "policy": self.policy.label}
