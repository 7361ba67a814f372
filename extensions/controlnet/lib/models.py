"""ControlNet models from models/ControlNet/: diffusers folders (config.json + weights) and single files
(`.safetensors`, `.pth` read with `weights_only=True`), listed as sd-webui-controlnet does (`name [hash]`), loaded
offline and cached, and checked against the loaded checkpoint's family before use."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .flow_control import FAMILIES, family_of_config, single_file_family, single_file_reason, unsupported_reason

SINGLE_FILE = (".safetensors", ".pth")
WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
# cross_attention_dim → family, for the full-size families (tiny test models have other widths: "unknown")
FAMILY_BY_DIM = {768: "sd1", 1024: "sd2", 2048: "sdxl"}


class ControlNetModelError(Exception):
    """A model that can't be used: unreadable, unsupported layout, or the wrong family."""


@dataclass
class ModelEntry:
    name: str  # path under models/ControlNet/ without the extension, with forward slashes
    path: Path
    layout: str  # "diffusers" or "single"
    hash: str  # sha256[:8] of the weights, like sd-webui-controlnet

    @property
    def title(self) -> str:
        return f"{self.name} [{self.hash}]"


def _sha8(path: Path, cache: dict) -> str:
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        cache[key] = h.hexdigest()[:8]
    return cache[key]


def family_of(config: dict[str, Any]) -> str:
    """A ControlNet's family from its config: FLUX/SD 3 by its class, SDXL by its text_time embedding, else by
    cross-attention width."""
    flow = family_of_config(config)
    if flow:
        return flow
    if config.get("addition_embed_type") == "text_time":
        return "sdxl"
    return FAMILY_BY_DIM.get(int(config.get("cross_attention_dim") or 0), "unknown")


def check_compatible(
    name: str, config: dict[str, Any], *, family: str | None, cross_attention_dim: int | None = None
) -> None:
    """Refuse a ControlNet made for another family than the loaded checkpoint. With the checkpoint UNet's
    cross_attention_dim the check is exact; with only its family name, a ControlNet of unknown family passes.
    Between a FLUX/SD 3 ControlNet or checkpoint and anything else, the families decide (the widths of FLUX/SD 3
    ControlNets are checked against the transformer by flow_control.check_fits)."""
    if family_of(config) in FAMILIES or family in FAMILIES:
        if family_of(config) != family:
            raise ControlNetModelError(
                f"ControlNet {name!r} is for {family_of(config)}, but the loaded checkpoint is {family or 'unknown'}: "
                f"pick a ControlNet made for this checkpoint's family"
            )
        return
    dim = int(config.get("cross_attention_dim") or 0)
    if cross_attention_dim is not None and dim != int(cross_attention_dim):
        raise ControlNetModelError(
            f"ControlNet {name!r} is for {family_of(config)} (cross-attention width {dim}), "
            f"but the loaded checkpoint is {family or 'unknown'} (width "
            f"{cross_attention_dim}): pick a ControlNet made for this checkpoint's family"
        )
    cn_family = family_of(config)
    if family and cn_family != "unknown" and cn_family != family:
        raise ControlNetModelError(
            f"ControlNet {name!r} is for {cn_family}, but the loaded checkpoint is {family}: "
            f"pick a ControlNet made for this checkpoint's family"
        )


class ControlNetCatalog:
    def __init__(self, root: Path | None, *, template_dir: Path, cache_dir: Path):
        self.root, self.template_dir, self.cache_dir = root, template_dir, cache_dir
        self.entries: dict[str, ModelEntry] = {}
        self._hashes: dict = {}
        self._details: dict = {}
        self._loaded: OrderedDict[tuple, Any] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()

    def refresh(self) -> list[ModelEntry]:
        found: dict[str, ModelEntry] = {}
        root = self.root
        if root is not None and root.is_dir():
            for path in sorted(root.rglob("*")):
                rel = path.relative_to(root)
                if any(p.startswith(".") for p in rel.parts) or rel.parts[0] == "annotators":
                    continue
                if path.is_dir() and (path / "config.json").exists():
                    weights = next((path / w for w in WEIGHT_NAMES if (path / w).exists()), None)
                    if weights is not None:
                        found[rel.as_posix()] = ModelEntry(
                            rel.as_posix(), path, "diffusers", _sha8(weights, self._hashes)
                        )
                elif (
                    path.is_file()
                    and path.suffix.lower() in SINGLE_FILE
                    and not any((path.parents[i] / "config.json").exists() for i in range(len(rel.parts) - 1))
                ):
                    name = rel.with_suffix("").as_posix()
                    found[name] = ModelEntry(name, path, "single", _sha8(path, self._hashes))
        self.entries = found
        return list(found.values())

    def titles(self) -> list[str]:
        return [e.title for e in self.refresh()]

    def find(self, name: str) -> ModelEntry:
        """By title (`name [hash]`), name, or file stem; case-insensitive, as sd-webui-controlnet clients send."""
        if not self.entries:
            self.refresh()
        want = name.strip().lower()
        for entry in self.entries.values():
            if want in (entry.title.lower(), entry.name.lower(), entry.name.rsplit("/", 1)[-1].lower()):
                return entry
        bare = want.rsplit(" [", 1)[0]
        matches = [e for e in self.entries.values() if e.name.lower() == bare]
        if len(matches) == 1:
            return matches[0]  # same name, other hash (the file changed): A1111 accepts it too
        known = ", ".join(e.title for e in self.entries.values()) or "none (put models in models/ControlNet/)"
        raise KeyError(f"unknown ControlNet model {name!r}; available: {known}")

    def config(self, entry: ModelEntry) -> dict[str, Any]:
        if entry.layout == "diffusers":
            return json.loads((entry.path / "config.json").read_text())
        return self.single_file_config(entry)[0]

    def load(self, entry: ModelEntry, *, dtype=None, keep: int = 2):
        """The ControlNetModel, loaded offline and kept in RAM like checkpoints: the `keep` most recently used
        (per file version and dtype) stay loaded, so switching between them reads no file."""
        import torch

        dtype = dtype or torch.float32
        stat = entry.path.stat()
        key = (str(entry.path), stat.st_mtime_ns, str(dtype))
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            for old in [k for k in self._loaded if k[0] == key[0] and k[1] != key[1]]:
                del self._loaded[old]  # a changed file replaces its old version
            model = self._load(entry, dtype)
            self._loaded[key] = model
            while len(self._loaded) > max(1, keep):
                self._loaded.popitem(last=False)
            return model

    def loaded(self) -> list[str]:
        """Paths of the models in RAM, least recently used first."""
        return [k[0] for k in self._loaded]

    def detail(self, entry: ModelEntry) -> dict[str, str]:
        """What /model_list tells of a model: its family, and why it can't be used when it can't (cached per file
        version: a `.pth`'s config needs the whole file read)."""
        stat = entry.path.stat()
        key = (str(entry.path), stat.st_mtime_ns, stat.st_size)
        if key not in self._details:
            try:
                config = self.config(entry)
                out = {"family": family_of(config), "layout": entry.layout}
                reason = unsupported_reason(config)
            except (ControlNetModelError, OSError, ValueError) as e:
                out, reason = {"family": "unknown", "layout": entry.layout}, str(e)
            self._details[key] = out if reason is None else {**out, "reason": reason}
        return self._details[key]

    def _load(self, entry: ModelEntry, dtype):
        import diffusers
        from diffusers import ControlNetModel

        try:
            if entry.layout == "diffusers":
                flow = family_of_config(self.config(entry))
                cls = getattr(diffusers, FAMILIES[flow].model_class) if flow else ControlNetModel
                model = cls.from_pretrained(str(entry.path), local_files_only=True, torch_dtype=dtype)
            else:
                config, state = self.single_file_config(entry, with_state=True)
                folder = self._config_folder(config)
                model = ControlNetModel.from_single_file(
                    state, config=str(folder), local_files_only=True, torch_dtype=dtype
                )
        except ControlNetModelError:
            raise
        except Exception as e:
            raise ControlNetModelError(f"ControlNet {entry.name!r} could not be loaded: {e}") from e
        return model.eval()

    # --- single files ----------------------------------------------------------------------------------------------
    def single_file_config(self, entry: ModelEntry, *, with_state: bool = False):
        """The diffusers config of a v1.x single-file ControlNet: the shipped SD 1.5 UNet template, with the
        cross-attention width and projection read from the tensor shapes (SD 2.x), and any `easel.config`
        metadata entry {"controlnet": {...}} on top (hyperparameters shapes don't reveal, as for checkpoints)."""
        state, meta = _read(entry.path, header_only=not with_state)
        keys = {k.removeprefix("control_model."): v for k, v in state.items()}
        flow = single_file_family(keys)
        if flow:  # checked first: XLabs' FLUX files also have an input_hint_block
            raise ControlNetModelError(single_file_reason(entry.path.name, flow))
        if not any(k.startswith("input_hint_block.") for k in keys):
            raise ControlNetModelError(
                f"{entry.path.name} is not an LDM-layout ControlNet (no input_hint_block): "
                f"use a diffusers folder for this model"
            )
        if any(k.startswith("label_emb.") for k in keys):
            raise ControlNetModelError(
                f"{entry.path.name}: single-file SDXL ControlNets are not supported yet; use its diffusers folder"
            )
        import inspect

        from diffusers import ControlNetModel

        params = set(inspect.signature(ControlNetModel.__init__).parameters) - {"self"}
        template = json.loads((self.template_dir / "config.json").read_text())
        config = {k: v for k, v in template.items() if k in params}
        k_proj = keys.get("input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight")
        if k_proj is not None:
            config["cross_attention_dim"] = int(_shape(k_proj)[1])
        proj_in = keys.get("input_blocks.1.1.proj_in.weight")
        if proj_in is not None and len(_shape(proj_in)) == 2:  # SD 2.x: linear projections, 64-wide heads
            config.update(use_linear_projection=True, attention_head_dim=[5, 10, 20, 20])
        try:
            extra = json.loads(meta.get("easel.config", "{}")).get("controlnet", {})
        except (ValueError, AttributeError) as e:
            raise ControlNetModelError(f"{entry.path.name}: unreadable easel.config metadata: {e}") from e
        config.update({k: v for k, v in extra.items() if k in params})
        config["_class_name"] = "ControlNetModel"
        return (config, state) if with_state else (config, None)

    def _config_folder(self, config: dict[str, Any]) -> Path:
        blob = json.dumps(config, sort_keys=True)
        folder = self.cache_dir / hashlib.sha256(blob.encode()).hexdigest()[:16]
        if not (folder / "config.json").exists():
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / "config.json.tmp"
            tmp.write_text(blob)
            tmp.replace(folder / "config.json")
        return folder


def _shape(value) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else tuple(value.shape)


def _read(path: Path, *, header_only: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """A single file's tensors (or, header_only, their shapes) and metadata. `.pth` loads with weights_only=True:
    a pickle that would run code is refused, never executed."""
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if header_only:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}, meta
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    import pickle

    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise ControlNetModelError(f"{path.name} was refused: not a plain weights file ({e})") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ControlNetModelError(f"{path.name}: expected a state dict, got {type(state).__name__}")
    return state, {}
