"""Tiny random-weight FLUX.1 and SD 3/3.5 models with the real classes and key names, written in the layouts users
have: a diffusers folder (model_index.json), and a transformer-only file in the original BFL/Stability key layout with
the text encoders (ComfyUI/Forge `clip_l`/`clip_g`/`t5xxl` key layout) and the VAE (LDM keys) as separate files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

# FLUX: CLIP-L 32 wide (pooled → vector_in), T5 32 wide (→ txt_in), transformer 2 heads × 8, rope axes 2+2+4.
FLUX_TINY = dict(
    patch_size=1,
    in_channels=64,
    num_layers=1,
    num_single_layers=1,
    attention_head_dim=8,
    num_attention_heads=2,
    joint_attention_dim=32,
    pooled_projection_dim=32,
    axes_dims_rope=(2, 2, 4),
)
# SD3: CLIP-L 32 + CLIP-G 48 (pooled 80; the CLIP hidden states, 80 wide, are padded to T5's 96).
SD3_TINY = dict(
    sample_size=8,
    patch_size=2,
    in_channels=16,
    num_layers=2,
    attention_head_dim=8,
    num_attention_heads=4,
    joint_attention_dim=96,
    caption_projection_dim=32,
    pooled_projection_dim=80,
    out_channels=16,
    pos_embed_max_size=16,
)
# SD 3 Medium, 3.5 Medium (qk-norm, MMDiT-X dual attention in block 0) and 3.5 Large (qk-norm)
SD3_VARIANTS: dict[str, dict] = {
    "sd3-medium": {},
    "sd35-medium": dict(qk_norm="rms_norm", dual_attention_layers=(0,)),
    "sd35-large": dict(qk_norm="rms_norm"),
}
# What no tensor shape tells, carried in the transformer file's `easel.config` metadata as for the SD 1.x tiny models.
FLUX_TINY_EASEL = {"transformer": {"axes_dims_rope": [2, 2, 4]}, "native_size": 64}
SD3_TINY_EASEL = {"transformer": {"attention_head_dim": 8}, "native_size": 64}
CLIP_TINY_META = {"easel.config": json.dumps({"num_attention_heads": 4})}  # 4 heads of 8/12 (the rule says 64)


def tiny_t5_tokenizer(max_length: int = 512):
    """The real T5 tokenizer Easel ships (webui/models/configs/t5-tokenizer/)."""
    from webui.models.parts import t5_tokenizer

    return t5_tokenizer(max_length)


def tiny_t5(d_model: int, seed: int):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    return T5EncoderModel(
        T5Config(
            vocab_size=32128,
            d_model=d_model,
            d_kv=8,
            d_ff=2 * d_model,
            num_layers=2,
            num_heads=4,
            feed_forward_proj="gated-gelu",
            relative_attention_num_buckets=8,
            relative_attention_max_distance=16,
            is_encoder_decoder=False,
        )
    ).eval()


def tiny_clip(hidden: int, seed: int, *, projection: bool, act: str = "quick_gelu"):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return cls(
        CLIPTextConfig(
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=49408,
            max_position_embeddings=77,
            hidden_act=act,
            projection_dim=hidden,
        )
    ).eval()


def tiny_flow_vae(seed: int, scaling_factor: float, shift_factor: float):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(32, 32, 32, 32),
        layers_per_block=1,
        latent_channels=16,
        sample_size=64,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
    ).eval()


def clip_tokenizer():
    from webui.models.tokenizer import load_clip_tokenizer

    return load_clip_tokenizer()


def tiny_flux_pipeline(seed: int = 0, *, dev: bool = True):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    from webui.models.probe import load_template

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(guidance_embeds=dev, **FLUX_TINY).eval()
    sched = load_template("flux-dev" if dev else "flux-schnell", "scheduler", "scheduler_config.json")
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(sched),
        vae=tiny_flow_vae(seed + 1, 0.3611, 0.1159),
        text_encoder=tiny_clip(32, seed + 2, projection=False),
        tokenizer=clip_tokenizer(),
        text_encoder_2=tiny_t5(32, seed + 3),
        tokenizer_2=tiny_t5_tokenizer(),
        transformer=transformer,
    )


def tiny_sd3_pipeline(seed: int = 0, *, variant: str = "sd35-medium"):
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    from webui.models.probe import load_template

    extra = SD3_VARIANTS[variant]
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(**SD3_TINY, **extra).eval()
    sched = load_template("sd3-medium", "scheduler", "scheduler_config.json")
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(sched),
        vae=tiny_flow_vae(seed + 1, 1.5305, 0.0609),
        text_encoder=tiny_clip(32, seed + 2, projection=True),
        tokenizer=clip_tokenizer(),
        text_encoder_2=tiny_clip(48, seed + 3, projection=True, act="gelu"),
        tokenizer_2=clip_tokenizer(),
        text_encoder_3=tiny_t5(96, seed + 4),
        tokenizer_3=tiny_t5_tokenizer(),
    )


# --- diffusers → original layouts (the reverse of diffusers' single-file converters) ------------------------------


def sd3_to_original(state: dict[str, torch.Tensor], prefix: str = "model.diffusion_model.") -> dict[str, torch.Tensor]:
    """An SD3Transformer2DModel state dict in Stability's MMDiT names (the reverse of diffusers'
    convert_sd3_transformer_checkpoint_to_diffusers)."""

    def swap(t):
        a, b = t.chunk(2, dim=0)
        return torch.cat([b, a], dim=0)

    s = dict(state)
    out: dict[str, torch.Tensor] = {}
    top = {
        "pos_embed.pos_embed": "pos_embed",
        "pos_embed.proj": "x_embedder.proj",
        "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
        "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
        "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
        "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
        "context_embedder": "context_embedder",
        "proj_out": "final_layer.linear",
    }
    n = 1 + max(int(m.group(1)) for k in s if (m := re.match(r"transformer_blocks\.(\d+)\.", k)))
    for i in range(n):
        p, o = f"transformer_blocks.{i}.", f"joint_blocks.{i}."
        for sfx in ("weight", "bias"):
            out[f"{o}x_block.attn.qkv.{sfx}"] = torch.cat([s.pop(f"{p}attn.to_{x}.{sfx}") for x in "qkv"])
            out[f"{o}context_block.attn.qkv.{sfx}"] = torch.cat([s.pop(f"{p}attn.add_{x}_proj.{sfx}") for x in "qkv"])
            if f"{p}attn2.to_q.{sfx}" in s:
                out[f"{o}x_block.attn2.qkv.{sfx}"] = torch.cat([s.pop(f"{p}attn2.to_{x}.{sfx}") for x in "qkv"])
        ren = {
            "attn.norm_q.weight": "x_block.attn.ln_q.weight",
            "attn.norm_k.weight": "x_block.attn.ln_k.weight",
            "attn.norm_added_q.weight": "context_block.attn.ln_q.weight",
            "attn.norm_added_k.weight": "context_block.attn.ln_k.weight",
            "attn2.norm_q.weight": "x_block.attn2.ln_q.weight",
            "attn2.norm_k.weight": "x_block.attn2.ln_k.weight",
            "attn.to_out.0": "x_block.attn.proj",
            "attn.to_add_out": "context_block.attn.proj",
            "attn2.to_out.0": "x_block.attn2.proj",
            "norm1.linear": "x_block.adaLN_modulation.1",
            "norm1_context.linear": "context_block.adaLN_modulation.1",
            "ff.net.0.proj": "x_block.mlp.fc1",
            "ff.net.2": "x_block.mlp.fc2",
            "ff_context.net.0.proj": "context_block.mlp.fc1",
            "ff_context.net.2": "context_block.mlp.fc2",
        }
        last = i == n - 1
        for src, dst in ren.items():
            for sfx in ("", ".weight", ".bias"):
                key = p + src + sfx
                if key in s and (sfx or src.endswith(".weight")):
                    t = s.pop(key)
                    out[o + dst + sfx] = swap(t) if last and src == "norm1_context.linear" else t
    for src, dst in top.items():
        for sfx in ("", ".weight", ".bias"):
            if src + sfx in s and (sfx or src == "pos_embed.pos_embed"):
                out[dst + sfx] = s.pop(src + sfx)
    for sfx in ("weight", "bias"):
        out[f"final_layer.adaLN_modulation.1.{sfx}"] = swap(s.pop(f"norm_out.linear.{sfx}"))
    if s:
        raise KeyError(f"unmapped SD3 tensors: {sorted(s)[:5]}")
    return {prefix + k: v.contiguous() for k, v in out.items()}


def vae_to_ldm(vae) -> dict[str, torch.Tensor]:
    """An AutoencoderKL in LDM names without a prefix (BFL's ae.safetensors, Stability's VAE files)."""
    from webui.models.ldm_keys import vae_key_to_ldm

    out = {}
    for k, v in vae.state_dict().items():
        name, to_conv = vae_key_to_ldm(k, len(vae.config.block_out_channels))
        out[name] = (v[:, :, None, None] if to_conv else v).contiguous()
    return out


def clip_to_comfy(te) -> dict[str, torch.Tensor]:
    """A transformers CLIP text model as in clip_l.safetensors / clip_g.safetensors (`text_model.` names)."""
    return {
        (k if k.startswith(("text_projection", "text_model.")) else "text_model." + k): v.contiguous()
        for k, v in te.state_dict().items()
    }


def _save(path: Path, state: dict, meta: dict | None = None) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=meta)
    return path


def write_flux_split(models: Path, seed: int = 0, *, dev: bool = True, name: str | None = None) -> dict[str, Path]:
    """models/Stable-diffusion/<name>.safetensors (BFL layout), models/text_encoder/clip_l + t5xxl, models/VAE/ae,
    (the T5 tokenizer ships with Easel)."""
    from webui.models.flux_keys import diffusers_to_bfl

    pipe = tiny_flux_pipeline(seed, dev=dev)
    name = name or ("flux1-dev-tiny" if dev else "flux1-schnell-tiny")
    t5 = {k: v for k, v in pipe.text_encoder_2.state_dict().items() if k != "encoder.embed_tokens.weight"}
    files = {
        "transformer": _save(
            models / "Stable-diffusion" / f"{name}.safetensors",
            diffusers_to_bfl(pipe.transformer.state_dict()),
            {"easel.config": json.dumps(FLUX_TINY_EASEL)},
        ),
        "clip_l": _save(
            models / "text_encoder" / "clip_l.safetensors", clip_to_comfy(pipe.text_encoder), CLIP_TINY_META
        ),
        "t5xxl": _save(models / "text_encoder" / "t5xxl_fp16.safetensors", t5),
        "vae": _save(models / "VAE" / "ae.safetensors", vae_to_ldm(pipe.vae)),
    }
    return files


def write_sd3_split(
    models: Path, seed: int = 0, *, variant: str = "sd35-medium", name: str | None = None
) -> dict[str, Path]:
    pipe = tiny_sd3_pipeline(seed, variant=variant)
    name = name or f"{variant.replace('-', '_')}_tiny"
    t5 = {k: v for k, v in pipe.text_encoder_3.state_dict().items() if k != "encoder.embed_tokens.weight"}
    files = {
        "transformer": _save(
            models / "Stable-diffusion" / f"{name}.safetensors",
            sd3_to_original(pipe.transformer.state_dict()),
            {"easel.config": json.dumps(SD3_TINY_EASEL)},
        ),
        "clip_l": _save(
            models / "text_encoder" / "clip_l.safetensors", clip_to_comfy(pipe.text_encoder), CLIP_TINY_META
        ),
        "clip_g": _save(
            models / "text_encoder" / "clip_g.safetensors", clip_to_comfy(pipe.text_encoder_2), CLIP_TINY_META
        ),
        "t5xxl": _save(models / "text_encoder" / "t5xxl_fp16.safetensors", t5),
        "vae": _save(models / "VAE" / "sd3_vae.safetensors", vae_to_ldm(pipe.vae)),
    }
    return files


def write_diffusers_folder(pipe, folder: Path) -> Path:
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder


def write_flux_aio(models: Path, seed: int = 0, *, name: str = "flux1-dev-tiny-aio") -> Path:
    """An all-in-one FLUX.1 dev checkpoint as ComfyUI saves it: `model.diffusion_model.` (BFL names),
    `text_encoders.clip_l.transformer.`, `text_encoders.t5xxl.transformer.` and `vae.` (LDM names), in one file.
    Same weights as write_flux_split at the same seed."""
    from webui.models.flux_keys import diffusers_to_bfl

    pipe = tiny_flux_pipeline(seed, dev=True)
    t5 = {k: v for k, v in pipe.text_encoder_2.state_dict().items() if k != "encoder.embed_tokens.weight"}
    state = {
        **diffusers_to_bfl(pipe.transformer.state_dict(), "model.diffusion_model."),
        **{"text_encoders.clip_l.transformer." + k: v for k, v in clip_to_comfy(pipe.text_encoder).items()},
        **{"text_encoders.t5xxl.transformer." + k: v for k, v in t5.items()},
        **{"vae." + k: v for k, v in vae_to_ldm(pipe.vae).items()},
    }
    meta = dict(FLUX_TINY_EASEL, parts={"text_encoders.clip_l.transformer.": {"num_attention_heads": 4}})
    return _save(models / "Stable-diffusion" / f"{name}.safetensors", state, {"easel.config": json.dumps(meta)})


def write_sd3_aio(
    models: Path, seed: int = 0, *, variant: str = "sd35-medium", name: str = "sd3.5_medium_tiny_incl_clips_t5xxl"
) -> Path:
    """An all-in-one SD 3.5 checkpoint as Stability ships `sd3.5_medium_incl_clips_t5xxlfp8.safetensors`:
    `model.diffusion_model.`, `text_encoders.clip_l/clip_g/t5xxl.transformer.`, `first_stage_model.`."""
    pipe = tiny_sd3_pipeline(seed, variant=variant)
    t5 = {k: v for k, v in pipe.text_encoder_3.state_dict().items() if k != "encoder.embed_tokens.weight"}
    state = {
        **sd3_to_original(pipe.transformer.state_dict()),
        **{"text_encoders.clip_l.transformer." + k: v for k, v in clip_to_comfy(pipe.text_encoder).items()},
        **{"text_encoders.clip_g.transformer." + k: v for k, v in clip_to_comfy(pipe.text_encoder_2).items()},
        **{"text_encoders.t5xxl.transformer." + k: v for k, v in t5.items()},
        **{"first_stage_model." + k: v for k, v in vae_to_ldm(pipe.vae).items()},
    }
    heads = {"num_attention_heads": 4}
    meta = dict(
        SD3_TINY_EASEL, parts={"text_encoders.clip_l.transformer.": heads, "text_encoders.clip_g.transformer.": heads}
    )
    return _save(models / "Stable-diffusion" / f"{name}.safetensors", state, {"easel.config": json.dumps(meta)})
