"""Read checkpoint files safely and build diffusers pipelines from them, offline.

Single files go through diffusers' own single-file converters (component `from_single_file` with a local `config=`
folder built by the probe); diffusers folders go through `from_pretrained(local_files_only=True)`.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from webui.errors import DiskFull, ModelLoadError, UnsafeCheckpoint, is_disk_full
from webui.fsutil import ensure_file
from webui.models.families import Family, ProbeResult
from webui.models.probe import CONFIGS_DIR, probe
from webui.models.tokenizer import write_tokenizer_folder

CHECKPOINT_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".gguf")


@dataclass
class LoadedCheckpoint:
    pipeline: Any  # a diffusers StableDiffusion(XL)Pipeline on the CPU
    probe: ProbeResult
    scheduler_config: dict[str, Any]
    encoders: Callable[[], dict[str, Any]] | None = None  # SD3/FLUX from part files: the text encoders built again


def read_header(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Tensor shapes and metadata of a safetensors file, without reading the tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as e:  # safetensors raises several types for a damaged header
        raise ModelLoadError(f"{path.name}: not a readable safetensors file ({e})") from e


def read_state_dict(path: Path, reader: Callable[[Path], dict] | None = None) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint. `.ckpt`/`.pt` use torch's weights-only unpickler: a pickle that would run code is
    refused before anything in it executes."""
    if reader is not None:
        return reader(path)
    if path.suffix == ".gguf":  # SD3/FLUX transformers, quantized (gguf_files.py)
        from webui.models import gguf_files

        return gguf_files.read_state_dict(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:
            raise ModelLoadError(f"{path.name}: cannot read tensors ({e})") from e
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpoint(
            f"{path.name}: refused: the pickle holds objects other than tensors, "
            f"and loading it could run code. Convert it to .safetensors from a trusted source.",
            detail=str(e).splitlines()[0],
        ) from e
    except Exception as e:
        raise ModelLoadError(f"{path.name}: cannot read checkpoint ({type(e).__name__}: {e})") from e
    while isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(f"{path.name}: not a state dict of tensors")
    return obj


def probe_file(path: Path, state: dict[str, torch.Tensor] | None = None) -> ProbeResult:
    if state is None and path.suffix == ".safetensors":
        shapes, meta = read_header(path)
    elif path.suffix == ".gguf":  # the header only: quantized tensors' shapes are their logical ones
        from webui.models import gguf_files

        shapes, meta = gguf_files.read_header(path)
    else:
        state = state if state is not None else read_state_dict(path)
        shapes, meta = {k: tuple(v.shape) for k, v in state.items()}, {}
    sidecar = path.with_suffix(".easel.json")  # optional hand-written hyperparameters next to a .ckpt
    if "easel.config" not in meta and sidecar.exists():
        meta["easel.config"] = sidecar.read_text()
    return probe(shapes, meta, name=path.name)


def write_config_folder(result: ProbeResult, cache_root: Path) -> Path:
    """A diffusers-layout folder of JSON configs (no weights) for `from_single_file(config=...)`.
    Content-addressed, so the same architecture reuses one folder.

    Nothing already in the folder is trusted: every file is compared with what it must hold and rewritten atomically
    when missing, truncated or different (a disk that filled up during an earlier load heals on the next one). The
    `done` marker is written last, for people looking at the folder; it is never trusted."""
    blob = json.dumps(result.configs, sort_keys=True)
    folder = cache_root / hashlib.sha256(blob.encode()).hexdigest()[:16]
    template = {Family.SD1: "sd15", Family.SD2: "sd21v", Family.SDXL: "sdxl"}[result.family]
    files = {
        f"{component}/{'scheduler_config.json' if component == 'scheduler' else 'config.json'}": _json_bytes(cfg)
        for component, cfg in result.configs.items()
    }
    files["model_index.json"] = _json_bytes(json.loads((CONFIGS_DIR / template / "model_index.json").read_text()))
    for rel, data in files.items():
        ensure_file(folder / rel, data)
    write_tokenizer_folder(folder / "tokenizer", CONFIGS_DIR / template / "tokenizer")
    if result.family == Family.SDXL:
        write_tokenizer_folder(folder / "tokenizer_2", CONFIGS_DIR / template / "tokenizer_2")
    ensure_file(folder / "done", b"ok")
    return folder


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def build_from_single_file(
    path: Path,
    cache_root: Path,
    *,
    dtype: torch.dtype = torch.float32,
    reader: Callable[[Path], dict] | None = None,
    models_root: Path | None = None,
    modules: tuple[str, ...] = (),
    flow_dtype: torch.dtype | None = None,
) -> LoadedCheckpoint:
    """`dtype` for SD 1.x/2.x/SDXL and the VAEs; `flow_dtype` (default: `dtype`) for SD 3/FLUX transformers and text
    encoders (DevicePolicy.flow_dtype)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    state = read_state_dict(path, reader)
    result = probe_file(path, state if path.suffix not in (".safetensors", ".gguf") else None)
    if result.family in (Family.SD3, Family.FLUX):  # transformer files: the parts come from models_root's folders
        from webui.models.family_flow import build_single_file

        return build_single_file(
            path, state, result, cache_root, models_root, dtype=flow_dtype or dtype, vae_dtype=dtype, modules=modules
        )
    try:
        folder = str(write_config_folder(result, cache_root))
    except OSError as e:
        if is_disk_full(e):
            raise DiskFull(
                f"disk full: free space in {cache_root}", detail=f"could not write the model's config cache: {e}"
            ) from None
        raise
    common = dict(config=folder, local_files_only=True, torch_dtype=dtype)
    components: dict[str, Any] = {}
    try:
        components["unet"] = UNet2DConditionModel.from_single_file(state, subfolder="unet", **common)
        components["vae"] = AutoencoderKL.from_single_file(state, subfolder="vae", **common)
        # diffusers' converter picks the tower by key names: CLIP-L (SD1, SDXL's first), OpenCLIP (SD2 dropping its
        # last block, SDXL's bigG with its projection).
        components["text_encoder"] = create_diffusers_clip_model_from_ldm(
            CLIPTextModel, state, subfolder="text_encoder", **common
        )
        if result.family == Family.SDXL:
            components["text_encoder_2"] = create_diffusers_clip_model_from_ldm(
                CLIPTextModelWithProjection, state, subfolder="text_encoder_2", **common
            )
    except ModelLoadError:
        raise
    except Exception as e:
        raise ModelLoadError(f"{path.name}: the weights do not fit the {result.label} layout ({e})") from e
    for name in ("tokenizer", "tokenizer_2") if result.family == Family.SDXL else ("tokenizer",):
        components[name] = CLIPTokenizer.from_pretrained(
            folder, subfolder=name, model_max_length=77, local_files_only=True
        )
    pipe = assemble_pipeline(result, **components)
    return LoadedCheckpoint(pipeline=pipe, probe=result, scheduler_config=result.configs["scheduler"])


def assemble_pipeline(result: ProbeResult, **components):
    """StableDiffusionPipeline for SD 1.x/2.x, StableDiffusionXLPipeline for SDXL (no watermarker: it needs the
    invisible-watermark package, and A1111 doesn't watermark)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    scheduler = EulerDiscreteScheduler.from_config(result.configs["scheduler"])
    if result.family == Family.SDXL:
        pipe = StableDiffusionXLPipeline(
            scheduler=scheduler, force_zeros_for_empty_prompt=True, add_watermarker=False, **components
        )
    else:
        pipe = StableDiffusionPipeline(
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
            **components,
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_from_diffusers_folder(
    folder: Path, *, dtype: torch.dtype = torch.float32, flow_dtype: torch.dtype | None = None
) -> LoadedCheckpoint:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    index = json.loads((folder / "model_index.json").read_text())
    cls_name = index.get("_class_name")
    sdxl = cls_name in ("StableDiffusionXLPipeline", "StableDiffusionXLInpaintPipeline")
    from webui.models.family_flow import PIPELINES, build_diffusers_folder as build_flow_folder

    if cls_name in PIPELINES:
        return build_flow_folder(folder, cls_name, dtype=flow_dtype or dtype)
    if cls_name not in ("StableDiffusionPipeline", "StableDiffusionInpaintPipeline") and not sdxl:
        raise ModelLoadError(f"{folder.name}: {cls_name} folders are not supported yet")
    try:
        if sdxl:
            pipe = StableDiffusionXLPipeline.from_pretrained(
                str(folder), local_files_only=True, torch_dtype=dtype, add_watermarker=False
            )
        else:
            pipe = StableDiffusionPipeline.from_pretrained(
                str(folder),
                local_files_only=True,
                torch_dtype=dtype,
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
    except Exception as e:
        raise ModelLoadError(f"{folder.name}: cannot load diffusers folder ({e})") from e
    pipe.set_progress_bar_config(disable=True)
    unet, vae = dict(pipe.unet.config), dict(pipe.vae.config)
    scale = 2 ** (len(vae["block_out_channels"]) - 1)
    sched = dict(pipe.scheduler.config)
    # SD 2.x's OpenCLIP tokenizer pads with "!", SD 1.x's with <|endoftext|>.
    family = Family.SDXL if sdxl else Family.SD2 if getattr(pipe.tokenizer, "pad_token", None) == "!" else Family.SD1
    configs = {"unet": unet, "vae": vae, "scheduler": sched}
    result = ProbeResult(
        family=family,
        inpainting=unet["in_channels"] == 9,
        prediction_type=sched.get("prediction_type", "epsilon"),
        native_size=int(unet["sample_size"]) * scale,
        configs=configs,
    )
    return LoadedCheckpoint(pipeline=pipe, probe=result, scheduler_config=sched)


def build_vae(path: Path, cache_root: Path, base: ProbeResult, *, dtype: torch.dtype = torch.float32):
    """A standalone VAE file (A1111's models/VAE), shaped by its own tensors, scaled like the checkpoint's VAE."""

    from webui.models.probe import vae_config

    state = read_state_dict(path)
    prefixed = (
        state
        if any(k.startswith("first_stage_model.") for k in state)
        else {"first_stage_model." + k: v for k, v in state.items()}
    )
    shapes = {k: tuple(v.shape) for k, v in prefixed.items()}
    try:
        cfg = vae_config(shapes, base.family, {"scaling_factor": base.configs["vae"].get("scaling_factor", 0.18215)})
    except (KeyError, ModelLoadError) as e:
        raise ModelLoadError(f"{path.name}: not a VAE ({e})") from e
    cfg["sample_size"] = base.native_size
    return vae_from_single_file(prefixed, cfg, cache_root, dtype=dtype, name=path.name)


def vae_from_single_file(state: dict, cfg: dict, cache_root: Path, *, dtype: torch.dtype, name: str):
    """AutoencoderKL from LDM-layout `state` through diffusers' single-file converter, its config written to a
    cache folder named by the config's hash (every family's standalone VAE files load this way)."""
    from diffusers import AutoencoderKL

    folder = cache_root / ("vae-" + hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16])
    ensure_file(folder / "vae" / "config.json", _json_bytes(cfg))
    try:
        return AutoencoderKL.from_single_file(
            state, config=str(folder), subfolder="vae", local_files_only=True, torch_dtype=dtype
        )
    except Exception as e:
        raise ModelLoadError(f"{name}: VAE weights do not fit ({e})") from e
