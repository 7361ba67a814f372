"""Tiny SD-architecture models for tests and benchmarks: the real SD 1.x classes, a few million parameters,
written in A1111 single-file layout so they load through exactly the same code as full-size checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch

# Hyperparameters that shapes don't reveal travel in the file's `easel.config` metadata, like any checkpoint's.
TINY_EASEL_CONFIG = {"text_encoder": {"num_attention_heads": 4}, "native_size": 64}


def tiny_components(
    seed: int = 0, *, in_channels: int = 4, unet_channels=(32, 64), cross_dim: int = 32, vae_channels=(32, 32, 32, 32)
):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    n = len(unet_channels)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=unet_channels,
        layers_per_block=1,
        down_block_types=["CrossAttnDownBlock2D"] * (n - 1) + ["DownBlock2D"],
        up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (n - 1),
        cross_attention_dim=cross_dim,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=vae_channels,
        layers_per_block=1,
        latent_channels=4,
        sample_size=64,
        down_block_types=["DownEncoderBlock2D"] * len(vae_channels),
        up_block_types=["UpDecoderBlock2D"] * len(vae_channels),
    )
    te = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=cross_dim,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=49408,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            projection_dim=cross_dim,
        )
    )
    for m in (unet, vae, te):
        m.eval()
    return unet, vae, te


def write_tiny_checkpoint(path: Path, seed: int = 0, **kw) -> Path:
    from webui.models.ldm_keys import save_a1111_checkpoint

    unet, vae, te = tiny_components(seed, **kw)
    return save_a1111_checkpoint(path, unet, vae, te, easel_config=TINY_EASEL_CONFIG)


# SD 2.x / SDXL tiny models. Their UNets use 8 heads (diffusers' `attention_head_dim` means heads) where the families'
# rule (64-channel heads) would give 1, and their text towers 4 heads: both travel in `easel.config`.
TINY_SD2_EASEL_CONFIG = {
    "text_encoder": {"num_attention_heads": 4},
    "unet": {"attention_head_dim": 8},
    "native_size": 64,
}
TINY_SDXL_EASEL_CONFIG = {
    "text_encoder": {"num_attention_heads": 4},
    "text_encoder_2": {"num_attention_heads": 4},
    "unet": {"attention_head_dim": 8},
    "native_size": 64,
}


def _tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(32, 32, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        sample_size=64,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
    )


def _tiny_clip(cls, hidden: int, act: str, projection_dim: int | None = None):
    from transformers import CLIPTextConfig

    return cls(
        CLIPTextConfig(
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=49408,
            max_position_embeddings=77,
            hidden_act=act,
            projection_dim=projection_dim or hidden,
            pad_token_id=1,
        )
    )


def tiny_sd2_components(seed: int = 0, *, in_channels: int = 4):
    """SD 2.x layout: linear transformer projections, an OpenCLIP-H-like (gelu) text tower of 2 used layers."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
        cross_attention_dim=32,
        attention_head_dim=8,
        use_linear_projection=True,
        upcast_attention=True,
        norm_num_groups=32,
    )
    vae = _tiny_vae()
    te = _tiny_clip(CLIPTextModel, 32, "gelu")
    for m in (unet, vae, te):
        m.eval()
    return unet, vae, te


def tiny_sdxl_components(seed: int = 0, *, in_channels: int = 4):
    """SDXL layout: no attention at the first level, transformer depth 1 then 2, text_time add-embedding, CLIP-L
    (32 wide) and OpenCLIP-bigG-like (64 wide, projection 48) towers; cross-attention sees both (96)."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
        up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"],
        transformer_layers_per_block=[1, 2],
        cross_attention_dim=96,
        attention_head_dim=8,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=48 + 6 * 8,
        norm_num_groups=32,
    )
    vae = _tiny_vae()
    te = _tiny_clip(CLIPTextModel, 32, "quick_gelu")
    te2 = _tiny_clip(CLIPTextModelWithProjection, 64, "gelu", projection_dim=48)
    for m in (unet, vae, te, te2):
        m.eval()
    return unet, vae, te, te2


def write_tiny_sd2_checkpoint(path: Path, seed: int = 0, *, prediction_type: str | None = None, **kw) -> Path:
    from webui.models.ldm_keys import save_a1111_checkpoint

    unet, vae, te = tiny_sd2_components(seed, **kw)
    cfg = dict(TINY_SD2_EASEL_CONFIG, **({"prediction_type": prediction_type} if prediction_type else {}))
    return save_a1111_checkpoint(path, unet, vae, te, family="sd2", easel_config=cfg)


def write_tiny_sdxl_checkpoint(path: Path, seed: int = 0, **kw) -> Path:
    from webui.models.ldm_keys import save_a1111_checkpoint

    unet, vae, te, te2 = tiny_sdxl_components(seed, **kw)
    return save_a1111_checkpoint(path, unet, vae, te, text_encoder_2=te2, easel_config=TINY_SDXL_EASEL_CONFIG)


MID_UNET = dict(
    block_out_channels=(96, 192, 384, 384),
    layers_per_block=2,
    cross_attention_dim=768,
    attention_head_dim=8,
    down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
)


def mid_unet(seed: int = 0):
    """The mid-size SD 1.x-layout UNet (~81M parameters, random weights) used by the precision guard and the
    benchmarks: big enough that bf16 pays off, small enough to run in a test."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(sample_size=32, **MID_UNET).eval()


def psnr(a, b, peak: float = 1.0) -> float:
    """PSNR in dB of two arrays of the same scale (peak 1.0 for [0, 1] images, 255 for uint8)."""
    import numpy as np

    mse = float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)
