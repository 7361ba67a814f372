"""diffusers → A1111/LDM single-file key names, for writing checkpoints (the demo model, tests' tiny models).

diffusers ships only the opposite direction (LDM → diffusers, in `loaders.single_file_utils`). Nothing in the
installed libraries writes the LDM layout, so the mapping is written here by hand. It is checked in the tests by
loading what it writes back through diffusers' own single-file loader and comparing every tensor.
UNet and VAE names are shared by SD 1.x, 2.x and SDXL (SDXL adds `label_emb`); the text towers of each family
(CLIP-L, OpenCLIP, both for SDXL) are written by ldm_openclip.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from webui.models.families import CLIP_PREFIX, UNET_PREFIX, VAE_PREFIX
from webui.models.ldm_openclip import text_state_dict

_UNET_RESNET = [
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
]
_UNET_FIXED = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
}
_VAE_ATTN = [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")]


def _split(key: str) -> tuple[str, str]:
    """'a.b.c.weight' → ('a.b.c', 'weight')."""
    module, _, param = key.rpartition(".")
    return module, param


def _resnet(rest: str) -> str:
    for new, old in _UNET_RESNET:
        if rest == new or rest.startswith(new + "."):
            return old + rest[len(new) :]
    raise KeyError(rest)


def unet_key_to_ldm(key: str, layers_per_block: int, attn_levels: set[int]) -> str:
    """Map one diffusers UNet2DConditionModel key to its LDM name (without the prefix)."""
    module, param = _split(key)
    if module in _UNET_FIXED:
        return f"{_UNET_FIXED[module]}.{param}"
    parts = module.split(".")
    per = layers_per_block + 1
    if parts[0] == "down_blocks":
        level, kind, j, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
        if kind == "resnets":
            return f"input_blocks.{1 + level * per + j}.0.{_resnet(rest)}.{param}"
        if kind == "attentions":
            return f"input_blocks.{1 + level * per + j}.1.{rest}.{param}"
        if kind == "downsamplers":  # downsamplers.0.conv
            return f"input_blocks.{1 + level * per + layers_per_block}.0.op.{param}"
    if parts[0] == "mid_block":
        kind, j, rest = parts[1], int(parts[2]), ".".join(parts[3:])
        if kind == "resnets":
            return f"middle_block.{2 * j}.{_resnet(rest)}.{param}"
        if kind == "attentions":
            return f"middle_block.1.{rest}.{param}"
    if parts[0] == "up_blocks":
        level, kind, j, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
        if kind == "resnets":
            return f"output_blocks.{level * per + j}.0.{_resnet(rest)}.{param}"
        if kind == "attentions":
            return f"output_blocks.{level * per + j}.1.{rest}.{param}"
        if kind == "upsamplers":
            slot = 2 if level in attn_levels else 1
            return f"output_blocks.{level * per + layers_per_block}.{slot}.conv.{param}"
    raise KeyError(f"no LDM name for UNet key {key!r}")


def vae_key_to_ldm(key: str, n_levels: int) -> tuple[str, bool]:
    """Map one diffusers AutoencoderKL key to its LDM name; the flag says a linear weight becomes a 1×1 conv."""
    module, param = _split(key)
    parts = module.split(".")
    side = parts[0]
    if side in ("quant_conv", "post_quant_conv"):
        return key, False
    rest = parts[1:]
    if rest[0] == "conv_norm_out":
        return f"{side}.norm_out.{param}", False
    if rest[0] in ("conv_in", "conv_out"):
        return key, False
    if rest[0] in ("down_blocks", "up_blocks"):
        i = int(rest[1])
        level = i if rest[0] == "down_blocks" else n_levels - 1 - i
        group = "down" if rest[0] == "down_blocks" else "up"
        if rest[2] == "resnets":
            sub = ".".join(rest[4:]).replace("conv_shortcut", "nin_shortcut")
            return f"{side}.{group}.{level}.block.{rest[3]}.{sub}.{param}", False
        sampler = "downsample" if group == "down" else "upsample"
        return f"{side}.{group}.{level}.{sampler}.conv.{param}", False  # *samplers.0.conv
    if rest[0] == "mid_block":
        if rest[1] == "resnets":
            sub = ".".join(rest[3:]).replace("conv_shortcut", "nin_shortcut")
            return f"{side}.mid.block_{int(rest[2]) + 1}.{sub}.{param}", False
        sub = ".".join(rest[3:])
        for new, old in _VAE_ATTN:
            if sub == new:
                return f"{side}.mid.attn_1.{old}.{param}", old != "norm" and param == "weight"
    raise KeyError(f"no LDM name for VAE key {key!r}")


def clip_key_to_ldm(key: str) -> str:
    """transformers 5 flattened CLIPTextModel's state dict (no `text_model.`); A1111 files keep it."""
    return CLIP_PREFIX + (key if key.startswith("text_model.") else "text_model." + key)


def to_ldm_state_dict(
    unet, vae, text_encoder, dtype: torch.dtype | None = None, *, text_encoder_2=None, family: str | None = None
) -> dict[str, torch.Tensor]:
    """One A1111-layout state dict for a pipeline's models.

    `family` is "sd1" (CLIP-L under `cond_stage_model.transformer.`), "sd2" (OpenCLIP under
    `cond_stage_model.model.`) or "sdxl" (CLIP-L and OpenCLIP-bigG under `conditioner.embedders.{0,1}.`); by default
    "sdxl" when `text_encoder_2` is given, else "sd1". The text towers are written by webui/models/ldm_openclip.py.
    """

    family = str(getattr(family, "value", family) or ("sdxl" if text_encoder_2 is not None else "sd1"))
    cfg = unet.config
    attn_levels = {i for i, t in enumerate(cfg.up_block_types) if "CrossAttn" in t}
    out: dict[str, torch.Tensor] = {}

    def put(name: str, tensor: torch.Tensor) -> None:
        t = tensor.detach()
        t = t if t.device.type == "meta" else t.to("cpu")  # meta: shapes only (used to probe full-size layouts)
        out[name] = (t.to(dtype) if dtype is not None and t.is_floating_point() else t).contiguous()

    for k, v in unet.state_dict().items():
        put(UNET_PREFIX + unet_key_to_ldm(k, cfg.layers_per_block, attn_levels), v)
    n_levels = len(vae.config.block_out_channels)
    for k, v in vae.state_dict().items():
        name, to_conv = vae_key_to_ldm(k, n_levels)
        put(VAE_PREFIX + name, v[:, :, None, None] if to_conv else v)
    for k, v in text_state_dict(family, text_encoder, text_encoder_2).items():
        put(k, v)
    return out


def save_a1111_checkpoint(
    path: str | Path,
    unet,
    vae,
    text_encoder,
    *,
    easel_config: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    text_encoder_2=None,
    family: str | None = None,
) -> Path:
    """Write an A1111 single-file `.safetensors` checkpoint atomically (SD 1.x, SD 2.x with `family="sd2"`, or SDXL
    with `text_encoder_2`).

    `easel_config` goes in the header metadata under `easel.config` (JSON): hyperparameters that cannot be read from
    tensor shapes (attention heads, norm groups, the VAE scaling factor, scheduler settings, native size). The probe
    reads it the same way for every file, full-size or tiny.
    """
    from safetensors.torch import save_file

    from webui.fsutil import atomic_path

    metadata = {"format": "pt"}
    if easel_config:
        metadata["easel.config"] = json.dumps(easel_config, sort_keys=True)
    sd = to_ldm_state_dict(unet, vae, text_encoder, dtype=dtype, text_encoder_2=text_encoder_2, family=family)
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata=metadata)
    return path
