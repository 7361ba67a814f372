"""peft adapters → a kohya-format LoRA `.safetensors` (what A1111, ComfyUI and diffusers' `load_lora_weights` read).

The renaming is diffusers' own `convert_state_dict_to_kohya` (lora_A/B → lora_down/up, dots → underscores), with
three fixes for SD 1.x/2.x: the text encoder prefix is kohya's `lora_te_` (diffusers writes SDXL's `lora_te1_`),
transformers 5's flattened CLIPTextModel gets its `text_model.` back, and `alpha` is the real alpha (diffusers
writes the rank). The UNet keeps diffusers-style names, as kohya's sd-scripts writes them for SD 1.x; `naming="sgm"`
writes LDM/sgm block names instead (`lora_unet_input_blocks_4_1_…`), which some tools produce.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import torch

from webui.fsutil import atomic_path

UNET_ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]
UNET_FEED_FORWARD = ["ff.net.0.proj", "ff.net.2"]
TE_ATTENTION = ["q_proj", "k_proj", "v_proj", "out_proj"]
TE_FEED_FORWARD = ["fc1", "fc2"]
SAVE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def target_modules(targets: str, *, text_encoder: bool) -> list[str]:
    """`targets`: "attention" or "attention+ff"."""
    if text_encoder:
        return TE_ATTENTION + (TE_FEED_FORWARD if targets == "attention+ff" else [])
    return UNET_ATTENTION + (UNET_FEED_FORWARD if targets == "attention+ff" else [])


def adapter_state_dicts(unet, text_encoder, adapter_name: str) -> tuple[dict, dict]:
    """The adapter's peft weights (lora_A/lora_B) of the UNet and, when it has one, the text encoder."""
    from peft import get_peft_model_state_dict

    unet_sd = get_peft_model_state_dict(unet, adapter_name=adapter_name)
    te_sd = {}
    if text_encoder is not None and adapter_name in (getattr(text_encoder, "peft_config", None) or {}):
        te_sd = get_peft_model_state_dict(text_encoder, adapter_name=adapter_name)
    return unet_sd, te_sd


def peft_to_kohya(
    unet_sd: dict[str, torch.Tensor],
    te_sd: dict[str, torch.Tensor],
    alpha: float,
    *,
    naming: str = "diffusers",
    unet_config: Any = None,
) -> dict[str, torch.Tensor]:
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya

    prefixed = {f"unet.{k}": v for k, v in unet_sd.items()}
    for k, v in te_sd.items():
        prefixed["text_encoder." + (k if k.startswith("text_model.") else "text_model." + k)] = v
    out: dict[str, torch.Tensor] = {}
    for key, value in convert_state_dict_to_kohya(prefixed).items():
        if key.startswith("lora_te1_"):
            key = "lora_te_" + key[len("lora_te1_") :]
        if key.endswith(".alpha"):
            value = torch.tensor(float(alpha))
        out[key] = value.detach().to("cpu").contiguous()
    if naming == "sgm":
        out = to_sgm_names(out, unet_sd, unet_config)
    return out


def to_sgm_names(kohya: dict[str, torch.Tensor], unet_sd: dict[str, torch.Tensor], unet_config) -> dict:
    """Rename the UNet keys to LDM/sgm block names (`lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q`)."""
    from webui.models.ldm_keys import unet_key_to_ldm

    attn_levels = {i for i, t in enumerate(unet_config.up_block_types) if "CrossAttn" in t}
    rename: dict[str, str] = {}
    for key in unet_sd:
        module = key.split(".lora_")[0]
        ldm = unet_key_to_ldm(module + ".weight", unet_config.layers_per_block, attn_levels)[: -len(".weight")]
        rename["lora_unet_" + module.replace(".", "_")] = "lora_unet_" + ldm.replace(".", "_")
    out = {}
    for key, value in kohya.items():
        module, _, rest = key.partition(".")
        out[f"{rename.get(module, module)}.{rest}"] = value
    return out


def metadata_strings(fields: dict[str, Any]) -> dict[str, str]:
    """safetensors metadata values must be strings: dicts/lists become JSON, None is left out."""
    out = {}
    for k, v in fields.items():
        if v is None:
            continue
        out[k] = json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else str(v)
    return out


def save_lora(path: Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, Any], dtype: str = "fp16") -> Path:
    """Write atomically, with `sshs_model_hash` (the addnet hash, as kohya precomputes it) in the metadata."""
    from safetensors.torch import save, save_file

    cast = SAVE_DTYPES[dtype]
    sd = {k: (v.to(cast) if v.is_floating_point() else v).contiguous() for k, v in state_dict.items()}
    data = save(sd)  # the tensor bytes are the same with or without metadata: hash them once here
    (n,) = struct.unpack("<Q", data[:8])
    meta = {
        "format": "pt",
        **metadata_strings(metadata),
        "sshs_model_hash": hashlib.sha256(memoryview(data)[8 + n :]).hexdigest(),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata=meta)
    return path


def export_adapter(
    path: Path,
    unet,
    text_encoder,
    adapter_name: str,
    *,
    alpha: float,
    metadata: dict[str, Any],
    dtype: str = "fp16",
    naming: str = "diffusers",
) -> Path:
    unet_sd, te_sd = adapter_state_dicts(unet, text_encoder, adapter_name)
    sd = peft_to_kohya(unet_sd, te_sd, alpha, naming=naming, unet_config=unet.config)
    return save_lora(path, sd, metadata, dtype)
