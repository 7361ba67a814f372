"""Tiny SD-architecture models for tests and benchmarks: the real SD 1.x classes, a few million parameters,
written in A1111 single-file layout so they load through exactly the same code as full-size checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch

# Hyperparameters that shapes don't reveal travel in the file's `easel.config` metadata, like any checkpoint's.
TINY_EASEL_CONFIG = {"text_encoder": {"num_attention_heads": 4}, "native_size": 64}


def tiny_components(seed: int = 0, *, in_channels: int = 4, unet_channels=(32, 64), cross_dim: int = 32,
                    vae_channels=(32, 32, 32, 32)):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    n = len(unet_channels)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=in_channels, out_channels=4, block_out_channels=unet_channels, layers_per_block=1,
        down_block_types=["CrossAttnDownBlock2D"] * (n - 1) + ["DownBlock2D"],
        up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (n - 1),
        cross_attention_dim=cross_dim, attention_head_dim=8, norm_num_groups=32,
    )
    vae = AutoencoderKL(block_out_channels=vae_channels, layers_per_block=1, latent_channels=4, sample_size=64,
                        down_block_types=["DownEncoderBlock2D"] * len(vae_channels),
                        up_block_types=["UpDecoderBlock2D"] * len(vae_channels))
    te = CLIPTextModel(CLIPTextConfig(hidden_size=cross_dim, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, vocab_size=49408, max_position_embeddings=77,
                                      hidden_act="quick_gelu", projection_dim=cross_dim))
    for m in (unet, vae, te):
        m.eval()
    return unet, vae, te


def write_tiny_checkpoint(path: Path, seed: int = 0, **kw) -> Path:
    from webui.models.ldm_keys import save_a1111_checkpoint

    unet, vae, te = tiny_components(seed, **kw)
    return save_a1111_checkpoint(path, unet, vae, te, easel_config=TINY_EASEL_CONFIG)
