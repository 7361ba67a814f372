"""The demo model's architecture: sizes, and builders for the VAE, UNet and text encoder from the shipped SD 1.5
templates (the same configs the loader's probe rebuilds from the exported file and its `easel.config`)."""

from __future__ import annotations

NATIVE = 64

VAE_CHANNELS = (16, 32, 64)
VAE_GROUPS = 16
UNET_CHANNELS = (32, 64, 128)
UNET_GROUPS = 16  # 32 groups would normalise single channels at the first level
UNET_HEADS = 4  # diffusers' `attention_head_dim` on UNet2DConditionModel is the number of heads
TE_HIDDEN, TE_LAYERS, TE_HEADS, TE_FFN = 128, 3, 4, 512
SCHEDULER_OVERRIDES = {"timestep_spacing": "trailing", "steps_offset": 1, "clip_sample": False}


def template(component: str, filename: str = "config.json") -> dict:
    from webui.models.probe import load_template

    return load_template("sd15", component, filename)


def build_vae():
    from diffusers import AutoencoderKL

    n = len(VAE_CHANNELS)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=VAE_CHANNELS,
        layers_per_block=1,
        norm_num_groups=VAE_GROUPS,
        sample_size=NATIVE,
        down_block_types=["DownEncoderBlock2D"] * n,
        up_block_types=["UpDecoderBlock2D"] * n,
    )


def build_unet():
    """The same config the loader's probe rebuilds from the file (sd15 template + shapes + easel.config)."""
    from diffusers import UNet2DConditionModel

    cfg = template("unet")
    n = len(UNET_CHANNELS)
    cfg.update(
        block_out_channels=list(UNET_CHANNELS),
        layers_per_block=1,
        cross_attention_dim=TE_HIDDEN,
        attention_head_dim=UNET_HEADS,
        norm_num_groups=UNET_GROUPS,
        sample_size=NATIVE // 4,
        down_block_types=["CrossAttnDownBlock2D"] * (n - 1) + ["DownBlock2D"],
        up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (n - 1),
    )
    return UNet2DConditionModel.from_config(cfg)


def build_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = template("text_encoder")
    for k in ("architectures", "model_type"):
        cfg.pop(k, None)
    cfg.update(
        hidden_size=TE_HIDDEN,
        intermediate_size=TE_FFN,
        num_hidden_layers=TE_LAYERS,
        num_attention_heads=TE_HEADS,
        projection_dim=TE_HIDDEN,
    )
    return CLIPTextModel(CLIPTextConfig(**cfg))


def scheduler_config() -> dict:
    cfg = template("scheduler", "scheduler_config.json")
    cfg.update(SCHEDULER_OVERRIDES)
    return cfg


def easel_config(scaling_factor: float) -> dict:
    return {
        "unet": {"attention_head_dim": UNET_HEADS, "norm_num_groups": UNET_GROUPS},
        "vae": {"scaling_factor": round(scaling_factor, 5), "norm_num_groups": VAE_GROUPS},
        "text_encoder": {"num_attention_heads": TE_HEADS},
        "scheduler": SCHEDULER_OVERRIDES,
        "native_size": NATIVE,
        "demo": {"name": "easel-demo", "grammar": "a {color} {shape} on a {background} background"},
    }
