"""Tiny FLUX.1 Fill (and Depth) transformers in the real FluxTransformer2DModel layout, written as users have them:
BFL's transformer-only file (`flux1-fill-dev.safetensors`), city96's GGUF (`flux1-fill-dev-Q4_0.gguf`) and a
FluxFillPipeline diffusers folder (black-forest-labs/FLUX.1-Fill-dev). Fill widens img_in to 384 inputs (64 noise +
64 masked-image latents + 256 mask, packed 2×2) and keeps 64 outputs; Depth takes 128. The text encoders and VAE are
tests.factories_families.write_flux_split's (same seeds), so its clip_l / t5xxl / ae files fit these too."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.factories_families import FLUX_TINY, FLUX_TINY_EASEL, _save, tiny_flux_pipeline

FILL = dict(in_channels=384, out_channels=64)
DEPTH = dict(in_channels=128, out_channels=64)


def tiny_fill_transformer(seed: int = 0, *, base: dict | None = None, channels: dict | None = None):
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    cfg = dict(base or FLUX_TINY, **(channels or FILL))
    return FluxTransformer2DModel(guidance_embeds=True, **cfg).eval()


def write_fill_file(models: Path, seed: int = 0, *, name: str = "flux1-fill-dev-tiny", channels=None) -> Path:
    """models/Stable-diffusion/<name>.safetensors: the transformer in BFL names (the parts: write_flux_split)."""
    from webui.models.flux_keys import diffusers_to_bfl

    state = diffusers_to_bfl(tiny_fill_transformer(seed, channels=channels).state_dict())
    return _save(
        models / "Stable-diffusion" / f"{name}.safetensors", state, {"easel.config": json.dumps(FLUX_TINY_EASEL)}
    )


def write_fill_gguf(models: Path, qtype: str = "Q4_0", seed: int = 0) -> Path:
    """models/Stable-diffusion/flux1-fill-dev-tiny-<qtype>.gguf (GGML blocks need 32-wide rows: the GGUF tiny
    widths of tests.factories_gguf)."""
    from tests.factories_gguf import FLUX_GGUF_EASEL, FLUX_GGUF_TINY, write_gguf
    from webui.models.flux_keys import diffusers_to_bfl

    state = diffusers_to_bfl(tiny_fill_transformer(seed, base=FLUX_GGUF_TINY).state_dict())
    out = models / "Stable-diffusion" / f"flux1-fill-dev-tiny-{qtype}.gguf"
    write_gguf(out, state, qtype, arch="flux", meta=FLUX_GGUF_EASEL)
    return out


def write_fill_folder(folder: Path, seed: int = 0) -> Path:
    """A FluxFillPipeline folder (model_index.json `_class_name: FluxFillPipeline`) with the tiny parts."""
    from diffusers import FluxFillPipeline

    base = tiny_flux_pipeline(seed, dev=True)
    keep = ("scheduler", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")
    parts = {k: base.components[k] for k in keep}
    FluxFillPipeline(transformer=tiny_fill_transformer(seed), **parts).save_pretrained(
        str(folder), safe_serialization=True
    )
    return folder
