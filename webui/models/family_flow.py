"""The flow-matching families (SD 3/3.5, FLUX.1) behind the model manager's interface: probe a transformer file or
a diffusers folder, and build diffusers' StableDiffusion3Pipeline / FluxPipeline offline from the configs shipped in
configs/<variant>/ with the parts (text encoders, VAE, tokenizers) found by webui/models/parts.py."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from webui.errors import ModelLoadError
from webui.models import family_flux, family_sd3, parts
from webui.models.families import NATIVE_SIZE, Family, ProbeResult
from webui.models.probe import CONFIGS_DIR, load_template

VARIANT_LABELS = {
    "flux-dev": "FLUX.1 dev",
    "flux-schnell": "FLUX.1 schnell",
    "flux-fill": "FLUX.1 Fill",
    "sd3-medium": "SD 3 Medium",
    "sd35-medium": "SD 3.5 Medium",
    "sd35-large": "SD 3.5 Large",
}
# A FluxFillPipeline folder (black-forest-labs/FLUX.1-Fill-dev) loads as a FluxPipeline over the same modules;
# inpainting makes the FluxFillPipeline over them (webui/generation/flow_fill.py).
PIPELINES = {"FluxPipeline": Family.FLUX, "FluxFillPipeline": Family.FLUX, "StableDiffusion3Pipeline": Family.SD3}


def probe_flow(shapes: Mapping[str, Sequence[int]], extra: dict[str, Any], name: str) -> ProbeResult | None:
    """A ProbeResult for a FLUX/SD3 transformer, None for anything else."""
    for family, mod in ((Family.FLUX, family_flux), (Family.SD3, family_sd3)):
        p = mod.prefix_of(shapes)
        if p is None:
            continue
        var = mod.variant(shapes, p)
        try:
            cfg = mod.transformer_config(shapes, p, load_template(var, "transformer"), extra.get("transformer", {}))
        except KeyError as e:
            raise ModelLoadError(
                f"{name}: missing tensor {e.args[0]}: the file is incomplete or of an unknown layout"
            ) from e
        scheduler = copy.deepcopy(load_template(var, "scheduler", "scheduler_config.json"))
        scheduler.update(extra.get("scheduler", {}))
        native = int(extra.get("native_size") or NATIVE_SIZE[family])
        return ProbeResult(
            family=family,
            inpainting=var == "flux-fill",
            prediction_type="flow",
            native_size=native,
            configs={"transformer": cfg, "scheduler": scheduler},
            variant=var,
        )
    return None


def _label(result: ProbeResult, name: str) -> str:
    return f"{name} ({result.label})"


def build_single_file(
    path: Path,
    state: dict[str, torch.Tensor],
    result: ProbeResult,
    cache_root: Path,
    models_root: Path | None,
    *,
    dtype: torch.dtype,
    vae_dtype: torch.dtype | None = None,
    modules: tuple[str, ...] = (),
):
    """A transformer-only file plus the parts that fit it."""
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel

    from webui.models.loader import LoadedCheckpoint, _json_bytes
    from webui.fsutil import ensure_file
    import hashlib

    if models_root is None:
        raise ModelLoadError(f"{path.name}: no models folder to find the text encoders and VAE in")
    cfg = result.configs["transformer"]
    folder = cache_root / ("tr-" + hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16])
    ensure_file(folder / "transformer" / "config.json", _json_bytes(cfg))
    label = _label(result, path.name)
    mod = family_flux if result.family == Family.FLUX else family_sd3
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    prefix = mod.prefix_of(shapes) or ""
    inside = parts.find_parts(path, shapes) if prefix and path.suffix == ".safetensors" else []
    if inside:  # an all-in-one checkpoint: the transformer is what sits under its prefix
        state = {k: v for k, v in state.items() if k.startswith(prefix)}
    found = parts.pick(mod.needs(cfg), models_root, label, inside, modules)
    common = dict(config=str(folder), subfolder="transformer", local_files_only=True, torch_dtype=dtype)
    from webui.models import gguf_files

    quant = gguf_files.quantization_config(state, dtype)  # GGUF: weights stay quantized, computed in `dtype`
    if quant is not None:
        common["quantization_config"] = quant
        result.quantization = gguf_files.quantization(state)
    try:
        if result.family == Family.FLUX:
            from webui.models.flux_keys import bfl_to_diffusers

            # diffusers' own FLUX converter assumes FLUX.1's 3072 width; ours reads it from the tensors (same
            # mapping, tests/models/test_family_keys.py), and from_single_file takes diffusers names as they are.
            transformer = FluxTransformer2DModel.from_single_file(bfl_to_diffusers(state), **common)
        else:
            transformer = SD3Transformer2DModel.from_single_file(dict(state), **common)
    except ModelLoadError:
        raise
    except Exception as e:
        raise ModelLoadError(f"{path.name}: the weights do not fit the {result.label} layout ({e})") from e
    var = result.variant
    vae_cfg = load_template(var, "vae")
    result.configs["vae"] = vae_cfg
    components: dict[str, Any] = {
        "transformer": transformer,
        "vae": parts.load_vae(found["vae"], vae_cfg, cache_root, dtype=vae_dtype or dtype),
        "tokenizer": _clip_tokenizer(var, "tokenizer", cache_root),
    }

    def encoders() -> dict[str, Any]:  # also what --lowram reads again for each encoding (webui/models/lowram.py)
        return text_encoders(result.family, var, found, dtype)

    components.update(encoders())
    if result.family == Family.FLUX:
        components.update(tokenizer_2=parts.t5_tokenizer(_t5_length(var, "tokenizer_2")))
    else:
        components.update(
            tokenizer_2=_clip_tokenizer(var, "tokenizer_2", cache_root),
            tokenizer_3=parts.t5_tokenizer(_t5_length(var, "tokenizer_3")),
        )
    result.modules = [
        found[k].path.stem for k in ("vae", "clip_l", "clip_g", "t5") if k in found and found[k].path != path
    ]  # Forge lists the separate files only
    pipe = assemble(result, **components)
    return LoadedCheckpoint(
        pipeline=pipe, probe=result, scheduler_config=result.configs["scheduler"], encoders=encoders
    )


def text_encoders(family: Family, var: str, found: dict[str, parts.Part], dtype: torch.dtype) -> dict[str, Any]:
    """The pipeline's text encoders from their part files: FLUX CLIP-L + T5, SD 3 CLIP-L + CLIP-G + T5."""
    t5_cfg = load_template(var, "text_encoder_2" if family == Family.FLUX else "text_encoder_3")
    t5 = parts.load_t5(found["t5"], t5_cfg, dtype=dtype)
    if family == Family.FLUX:
        return {
            "text_encoder": parts.load_clip(
                found["clip_l"], load_template(var, "text_encoder"), projection=False, dtype=dtype
            ),
            "text_encoder_2": t5,
        }
    return {
        "text_encoder": parts.load_clip(
            found["clip_l"], load_template(var, "text_encoder"), projection=True, dtype=dtype
        ),
        "text_encoder_2": parts.load_clip(
            found["clip_g"], load_template(var, "text_encoder_2"), projection=True, dtype=dtype
        ),
        "text_encoder_3": t5,
    }


def t5_max_length(model, chosen: int = 0) -> int:
    """T5's sequence length for a loaded SD3/FLUX model: `chosen` (the t5_max_length setting) or, for 0, the model's
    own (FLUX dev 512, schnell 256, SD 3 256, a diffusers folder its tokenizer's), at most 512."""
    if chosen:
        return int(chosen)
    pipe = model.pipeline
    tok = pipe.tokenizer_2 if model.probe.family == Family.FLUX else pipe.tokenizer_3
    return min(int(tok.model_max_length), 512)


def _t5_length(variant: str, component: str) -> int:
    return int(load_template(variant, component, "tokenizer_config.json")["model_max_length"])


def _clip_tokenizer(variant: str, component: str, cache_root: Path):
    from transformers import CLIPTokenizer

    from webui.models.tokenizer import write_tokenizer_folder

    folder = write_tokenizer_folder(cache_root / f"tok-{variant}-{component}", CONFIGS_DIR / variant / component)
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=77, local_files_only=True)


def assemble(result: ProbeResult, **components):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, StableDiffusion3Pipeline

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(result.configs["scheduler"])
    cls = FluxPipeline if result.family == Family.FLUX else StableDiffusion3Pipeline
    pipe = cls(scheduler=scheduler, **components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_diffusers_folder(folder: Path, cls_name: str, *, dtype: torch.dtype):
    """A FluxPipeline / StableDiffusion3Pipeline folder (model_index.json), loaded offline as it is."""
    from diffusers import FluxPipeline, StableDiffusion3Pipeline

    from webui.models.loader import LoadedCheckpoint

    family = PIPELINES[cls_name]
    cls = FluxPipeline if family == Family.FLUX else StableDiffusion3Pipeline
    try:
        pipe = cls.from_pretrained(str(folder), local_files_only=True, torch_dtype=dtype)
    except Exception as e:
        raise ModelLoadError(f"{folder.name}: cannot load diffusers folder ({e})") from e
    pipe.set_progress_bar_config(disable=True)
    for name in ("tokenizer", "tokenizer_2"):  # a CLIP tokenizer saved without model_max_length pads to ~1e30
        tok = getattr(pipe, name, None)
        if tok is not None and type(tok).__name__.startswith("CLIP") and tok.model_max_length > 77:
            tok.model_max_length = 77
    cfg = dict(pipe.transformer.config)
    if family == Family.FLUX:
        try:
            var = family_flux.config_variant(cfg)
        except ModelLoadError as e:
            raise ModelLoadError(f"{folder.name}: {e}") from e
    else:
        var = (
            "sd3-medium"
            if not cfg.get("qk_norm")
            else ("sd35-medium" if cfg.get("dual_attention_layers") else "sd35-large")
        )
    scale = pipe.vae_scale_factor
    native = int(cfg.get("sample_size") or 128) * scale if family == Family.SD3 else NATIVE_SIZE[family]
    sched = dict(pipe.scheduler.config)
    result = ProbeResult(
        family=family,
        inpainting=var == "flux-fill",
        prediction_type="flow",
        native_size=native,
        configs={"transformer": cfg, "vae": dict(pipe.vae.config), "scheduler": sched},
        variant=var,
    )

    def encoders() -> dict[str, Any]:  # what --lowram reads again for each encoding (webui/models/lowram.py)
        return folder_text_encoders(folder, dtype)

    return LoadedCheckpoint(pipeline=pipe, probe=result, scheduler_config=sched, encoders=encoders)


def folder_text_encoders(folder: Path, dtype: torch.dtype) -> dict[str, Any]:
    """A diffusers folder's text encoders, loaded again from their subfolders (the classes model_index.json names)."""
    import transformers

    index = json.loads((folder / "model_index.json").read_text())
    out: dict[str, Any] = {}
    for name in ("text_encoder", "text_encoder_2", "text_encoder_3"):
        entry = index.get(name)
        if not (isinstance(entry, list) and len(entry) == 2 and entry[0] == "transformers"):
            continue
        cls = getattr(transformers, str(entry[1]), None)
        if cls is None:
            raise ModelLoadError(f"{folder.name}: {name} names an unknown class {entry[1]!r}")
        out[name] = cls.from_pretrained(str(folder / name), dtype=dtype, local_files_only=True).eval()
    return out
