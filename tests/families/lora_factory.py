"""Tiny FLUX.1 / SD 3.5 LoRA files for the tiny transformers of tests/factories_families.py: diffusers (peft) names
kohya's FLUX and SD 3 names, XLabs' FLUX names; lora_B random so an adapter visibly changes the output."""

from __future__ import annotations

from pathlib import Path

import torch


def _pair(gen: torch.Generator, rank: int, d_in: int, d_out: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    down = torch.randn(rank, d_in, generator=gen) * 0.5
    up = torch.randn(d_out, rank, generator=gen) * scale
    return down, up


def _save(path: Path, sd: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def write_flux_diffusers(path: Path, seed: int = 0, rank: int = 4, scale: float = 1.0) -> Path:
    """transformer.{transformer_blocks,single_transformer_blocks}.0.attn.to_{q,k,v} (inner width 16)."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for block in ("transformer_blocks.0", "single_transformer_blocks.0"):
        for proj in ("to_q", "to_k", "to_v"):
            down, up = _pair(gen, rank, 16, 16, scale)
            sd[f"transformer.{block}.attn.{proj}.lora_A.weight"] = down
            sd[f"transformer.{block}.attn.{proj}.lora_B.weight"] = up
    return _save(path, sd)


def write_flux_kohya(path: Path, seed: int = 1, rank: int = 4, scale: float = 1.0) -> Path:
    """kohya's FLUX names (lora_unet_double_blocks_0_img_attn_qkv …, BFL's fused qkv) with alpha."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for name, d_out in (
        ("double_blocks_0_img_attn_qkv", 48),
        ("double_blocks_0_txt_attn_qkv", 48),
        ("double_blocks_0_img_attn_proj", 16),
    ):
        down, up = _pair(gen, rank, 16, d_out, scale)
        sd[f"lora_unet_{name}.lora_down.weight"] = down
        sd[f"lora_unet_{name}.lora_up.weight"] = up
        sd[f"lora_unet_{name}.alpha"] = torch.tensor(float(rank))
    return _save(path, sd)


def write_sd3_diffusers(path: Path, seed: int = 2, rank: int = 4, scale: float = 1.0) -> Path:
    """transformer.transformer_blocks.{0,1}.attn.to_{q,k,v} (inner width 32)."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for i in (0, 1):
        for proj in ("to_q", "to_k", "to_v"):
            down, up = _pair(gen, rank, 32, 32, scale)
            sd[f"transformer.transformer_blocks.{i}.attn.{proj}.lora_A.weight"] = down
            sd[f"transformer.transformer_blocks.{i}.attn.{proj}.lora_B.weight"] = up
    return _save(path, sd)


def write_flux_xlabs(path: Path, seed: int = 5, rank: int = 4, scale: float = 1.0) -> Path:
    """XLabs-AI's FLUX names (double_blocks.0.processor.{qkv,proj}_lora{1,2}.{down,up}.weight: 1 = image, 2 =
    text; single_blocks.0.processor.qkv_lora), BFL's fused qkv, no alpha."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for name, d_out in (
        ("double_blocks.0.processor.qkv_lora1", 48),
        ("double_blocks.0.processor.qkv_lora2", 48),
        ("double_blocks.0.processor.proj_lora1", 16),
        ("double_blocks.0.processor.proj_lora2", 16),
        ("single_blocks.0.processor.qkv_lora", 48),
    ):
        down, up = _pair(gen, rank, 16, d_out, scale)
        sd[f"{name}.down.weight"] = down
        sd[f"{name}.up.weight"] = up
    return _save(path, sd)


def write_sd3_kohya(
    path: Path, seed: int = 6, rank: int = 4, scale: float = 1.0, *, with_te: bool = False, with_t5: bool = False
) -> Path:
    """sd-scripts' SD 3 names (lora_unet_joint_blocks_<i>_{x,context}_block_{attn_qkv,attn_proj,mlp_fc1,mlp_fc2,
    adaLN_modulation_1}, x_block_attn2_qkv) with alpha; Stability's fused qkv (inner width 32, MLP 128, modulation
    6×32 from 32). The last block's context side is pre-only (qkv and modulation only)."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    modules = [
        ("joint_blocks_0_x_block_attn_qkv", 32, 96),
        ("joint_blocks_0_x_block_attn_proj", 32, 32),
        ("joint_blocks_0_x_block_mlp_fc1", 32, 128),
        ("joint_blocks_0_x_block_mlp_fc2", 128, 32),
        ("joint_blocks_0_context_block_attn_qkv", 32, 96),
        ("joint_blocks_0_context_block_attn_proj", 32, 32),
        ("joint_blocks_0_context_block_adaLN_modulation_1", 32, 192),
        ("joint_blocks_0_x_block_attn2_qkv", 32, 96),  # SD 3.5 Medium's second attention (block 0)
        ("joint_blocks_1_x_block_attn_qkv", 32, 96),
        ("joint_blocks_1_context_block_attn_qkv", 32, 96),
    ]
    if with_te:  # CLIP-L (32 wide) and CLIP-G (48 wide)
        modules += [
            ("te1_text_model_encoder_layers_0_self_attn_q_proj", 32, 32),
            ("te1_text_model_encoder_layers_1_mlp_fc1", 32, 64),
            ("te2_text_model_encoder_layers_0_self_attn_out_proj", 48, 48),
        ]
    if with_t5:
        modules.append(("te3_encoder_block_0_layer_0_SelfAttention_q", 96, 32))
    for name, d_in, d_out in modules:
        down, up = _pair(gen, rank, d_in, d_out, scale)
        key = f"lora_{name}" if name.startswith("te") else f"lora_unet_{name}"
        sd[f"{key}.lora_down.weight"] = down
        sd[f"{key}.lora_up.weight"] = up
        sd[f"{key}.alpha"] = torch.tensor(float(rank) / 2)
    return _save(path, sd)
