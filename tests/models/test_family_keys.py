"""The FLUX/SD3 key converters: the fixtures' reverse converters round-trip exactly through the forward ones
(diffusers' own for SD3; Easel's for FLUX), and Easel's FLUX converter gives what diffusers' gives at FLUX.1's width."""

from __future__ import annotations

import torch


def test_flux_round_trip_is_exact():
    from diffusers import FluxTransformer2DModel

    from tests.factories_families import FLUX_TINY
    from webui.models.flux_keys import bfl_to_diffusers, diffusers_to_bfl

    torch.manual_seed(0)
    model = FluxTransformer2DModel(guidance_embeds=True, **FLUX_TINY)
    sd = model.state_dict()
    bfl = diffusers_to_bfl(sd, prefix="model.diffusion_model.")
    assert "model.diffusion_model.double_blocks.0.img_attn.qkv.weight" in bfl
    assert "model.diffusion_model.guidance_in.in_layer.weight" in bfl
    back = bfl_to_diffusers(bfl)
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)


def test_flux_converter_matches_diffusers_at_flux1_width():
    """diffusers' converter fixes the width at 3072: compare on tensors of FLUX.1's row counts (1 column wide)."""
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    from webui.models.flux_keys import bfl_to_diffusers

    d, mlp = 3072, 4 * 3072
    rows = {
        "img_attn.qkv": 3 * d,
        "txt_attn.qkv": 3 * d,
        "img_mod.lin": 6 * d,
        "txt_mod.lin": 6 * d,
        "img_mlp.0": mlp,
        "img_mlp.2": d,
        "txt_mlp.0": mlp,
        "txt_mlp.2": d,
        "img_attn.proj": d,
        "txt_attn.proj": d,
    }
    g = torch.Generator().manual_seed(0)
    bfl = {}
    for name, n in rows.items():
        bfl[f"double_blocks.0.{name}.weight"] = torch.randn(n, 1, generator=g)
        bfl[f"double_blocks.0.{name}.bias"] = torch.randn(n, generator=g)
    for name in (
        "img_attn.norm.query_norm",
        "img_attn.norm.key_norm",
        "txt_attn.norm.query_norm",
        "txt_attn.norm.key_norm",
    ):
        bfl[f"double_blocks.0.{name}.scale"] = torch.randn(128, generator=g)
    bfl.update(
        {
            "single_blocks.0.linear1.weight": torch.randn(3 * d + mlp, 1, generator=g),
            "single_blocks.0.linear1.bias": torch.randn(3 * d + mlp, generator=g),
            "single_blocks.0.linear2.weight": torch.randn(d, d + mlp, dtype=torch.float16),
            "single_blocks.0.linear2.bias": torch.randn(d, generator=g),
            "single_blocks.0.modulation.lin.weight": torch.randn(3 * d, 1, generator=g),
            "single_blocks.0.modulation.lin.bias": torch.randn(3 * d, generator=g),
            "single_blocks.0.norm.query_norm.scale": torch.randn(128, generator=g),
            "single_blocks.0.norm.key_norm.scale": torch.randn(128, generator=g),
        }
    )
    for name in ("time_in", "vector_in", "guidance_in"):
        for layer in ("in_layer", "out_layer"):
            bfl[f"{name}.{layer}.weight"] = torch.randn(4, 2, generator=g)
            bfl[f"{name}.{layer}.bias"] = torch.randn(4, generator=g)
    for name in ("txt_in", "img_in", "final_layer.linear", "final_layer.adaLN_modulation.1"):
        bfl[f"{name}.weight"] = torch.randn(2 * d, 1, generator=g)
        bfl[f"{name}.bias"] = torch.randn(2 * d, generator=g)
    ours = bfl_to_diffusers(bfl)
    theirs = convert_flux_transformer_checkpoint_to_diffusers({"model.diffusion_model." + k: v for k, v in bfl.items()})
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_sd3_reverse_round_trips_through_diffusers_converter():
    from diffusers import SD3Transformer2DModel
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    from tests.factories_families import SD3_TINY, sd3_to_original

    for extra in ({}, {"qk_norm": "rms_norm", "dual_attention_layers": (0,)}):
        torch.manual_seed(0)
        sd = SD3Transformer2DModel(**SD3_TINY, **extra).state_dict()
        original = sd3_to_original(sd)
        assert "model.diffusion_model.joint_blocks.1.context_block.adaLN_modulation.1.weight" in original
        back = convert_sd3_transformer_checkpoint_to_diffusers(dict(original))
        assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
