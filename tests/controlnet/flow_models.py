"""Tiny FLUX.1 and SD 3 ControlNets in diffusers' folder layout, made with diffusers' own `from_transformer` from the
tiny transformers of tests/factories_families.py (the same seeds as the checkpoints written there, so they fit them),
their zero-initialised input embedder and output blocks given small random weights so control visibly changes the
output."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.factories_families import FLUX_TINY, SD3_TINY, SD3_VARIANTS


def flux_transformer(seed: int):
    """tiny_flux_pipeline(seed, dev=True).transformer, without the rest of the pipeline (it is made first)."""
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    return FluxTransformer2DModel(guidance_embeds=True, **FLUX_TINY).eval()


def sd3_transformer(seed: int, variant: str):
    """tiny_sd3_pipeline(seed, variant=variant).transformer, without the rest of the pipeline."""
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(seed)
    return SD3Transformer2DModel(**SD3_TINY, **SD3_VARIANTS[variant]).eval()


def _randomize(modules, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in modules:
            for p in module.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def tiny_flux_controlnet(seed: int = 0, *, checkpoint_seed: int = 0, transformer=None, **config):
    """A FluxControlNetModel (1 double + 1 single block) for the tiny FLUX dev transformer of `checkpoint_seed` (or
    `transformer`); `config` overrides (e.g. num_mode for a union ControlNet) make a fresh model of that config."""
    from diffusers import FluxControlNetModel

    transformer = transformer if transformer is not None else flux_transformer(checkpoint_seed)
    if config:
        keep = ("patch_size", "in_channels", "attention_head_dim", "num_attention_heads", "joint_attention_dim")
        base = {k: FLUX_TINY[k] for k in keep}
        base.update(pooled_projection_dim=32, axes_dims_rope=[2, 2, 4], guidance_embeds=True)
        net = FluxControlNetModel(num_layers=1, num_single_layers=1, **{**base, **config})
    else:
        heads, head_dim = transformer.config.num_attention_heads, transformer.config.attention_head_dim
        net = FluxControlNetModel.from_transformer(
            transformer, num_layers=1, num_single_layers=1, attention_head_dim=head_dim, num_attention_heads=heads
        )
    _randomize([net.controlnet_x_embedder, *net.controlnet_blocks, *net.controlnet_single_blocks], seed)
    return net.eval()


def tiny_sd3_controlnet(seed: int = 0, *, checkpoint_seed: int = 0, variant: str = "sd35-medium"):
    """An SD3ControlNetModel (1 block) for the tiny SD 3 transformer of `checkpoint_seed` and `variant`."""
    from diffusers import SD3ControlNetModel

    transformer = sd3_transformer(checkpoint_seed, variant)
    net = SD3ControlNetModel.from_transformer(transformer, num_layers=1, num_extra_conditioning_channels=0)
    _randomize([net.pos_embed_input, *net.controlnet_blocks], seed)
    return net.eval()


def write_flow_controlnets(root: Path) -> Path:
    """models/ControlNet/: tiny-flux (FLUX dev, diffusers folder), tiny-flux-b (another one), tiny-sd3 (SD 3.5
    Medium), tiny-flux-union (a union ControlNet: listed with why it can't be used), tiny-flux-wide (for a
    wider FLUX transformer), tiny-flux-w32 (for the GGUF test file's), tiny-flux-single.safetensors (a
    FLUX ControlNet's weights as one file: diffusers can't load those)."""
    from safetensors.torch import save_file

    tiny_flux_controlnet(1).save_pretrained(root / "tiny-flux")
    tiny_flux_controlnet(2).save_pretrained(root / "tiny-flux-b")
    tiny_sd3_controlnet(3).save_pretrained(root / "tiny-sd3")
    tiny_flux_controlnet(4, num_mode=3).save_pretrained(root / "tiny-flux-union")
    tiny_flux_controlnet(6, num_attention_heads=4).save_pretrained(root / "tiny-flux-wide")  # another model size
    from tests.factories_gguf import tiny_flux_transformer

    # for write_flux_gguf's 32-wide FLUX (flux1-dev-tiny-Q4_0.gguf)
    tiny_flux_controlnet(7, transformer=tiny_flux_transformer(0)).save_pretrained(root / "tiny-flux-w32")
    state = {k: v.contiguous() for k, v in tiny_flux_controlnet(5).state_dict().items()}
    save_file(state, str(root / "tiny-flux-single.safetensors"))
    return root
