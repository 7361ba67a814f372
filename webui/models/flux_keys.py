"""FLUX.1 transformer keys: Black Forest Labs' original layout (flux1-dev.safetensors, ComfyUI/Forge `unet` files)
↔ diffusers' FluxTransformer2DModel.

The mapping is the one in diffusers' `convert_flux_transformer_checkpoint_to_diffusers`; that function fixes the
width at 3072 (FLUX.1's), so this one reads the widths from the tensors instead and serves every size, the tiny test
models included. tests/models/test_family_keys.py checks it against diffusers' converter at FLUX.1's real width.
"""

from __future__ import annotations

import re

import torch

PREFIX = "model.diffusion_model."

# BFL name → diffusers name, for the tensors that only change name ({i}: the block index).
_TOP = {
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "txt_in": "context_embedder",
    "img_in": "x_embedder",
    "final_layer.linear": "proj_out",
}
_DOUBLE = {
    "img_mod.lin": "norm1.linear",
    "txt_mod.lin": "norm1_context.linear",
    "img_attn.norm.query_norm.scale": "attn.norm_q.weight",
    "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
    "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
    "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
    "img_mlp.0": "ff.net.0.proj",
    "img_mlp.2": "ff.net.2",
    "txt_mlp.0": "ff_context.net.0.proj",
    "txt_mlp.2": "ff_context.net.2",
    "img_attn.proj": "attn.to_out.0",
    "txt_attn.proj": "attn.to_add_out",
}
_SINGLE = {
    "modulation.lin": "norm.linear",
    "norm.query_norm.scale": "attn.norm_q.weight",
    "norm.key_norm.scale": "attn.norm_k.weight",
    "linear2": "proj_out",
}
_QKV = {
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}


def _swap_halves(t: torch.Tensor) -> torch.Tensor:
    """BFL's final adaLN gives (shift, scale), diffusers' AdaLayerNormContinuous (scale, shift)."""
    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def _rename(name: str, table: dict[str, str]) -> str | None:
    for src, dst in table.items():
        if name == src or name.startswith(src + "."):
            return dst + name[len(src) :]
    return None


def bfl_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A BFL-layout FLUX transformer state dict (with or without `model.diffusion_model.`) in diffusers names."""
    sd = {k[len(PREFIX) :] if k.startswith(PREFIX) else k: v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if m := re.match(r"double_blocks\.(\d+)\.(.+)$", k):
            i, rest = m.groups()
            base = rest.rsplit(".", 1)[0] if rest.endswith((".weight", ".bias")) else rest
            if base in _QKV:
                suffix = rest[len(base) :]
                for name, part in zip(_QKV[base], v.chunk(3, dim=0)):
                    out[f"transformer_blocks.{i}.{name}{suffix}"] = part
                continue
            new = _rename(rest, _DOUBLE)
            if new is None:
                raise KeyError(k)
            out[f"transformer_blocks.{i}.{new}"] = v
        elif m := re.match(r"single_blocks\.(\d+)\.(.+)$", k):
            i, rest = m.groups()
            if rest.startswith("linear1."):
                suffix = rest[len("linear1") :]
                inner = sd[f"single_blocks.{i}.linear2.weight"].shape[0]
                q, kk, vv, mlp = torch.split(v, [inner, inner, inner, v.shape[0] - 3 * inner], dim=0)
                for name, part in (("attn.to_q", q), ("attn.to_k", kk), ("attn.to_v", vv), ("proj_mlp", mlp)):
                    out[f"single_transformer_blocks.{i}.{name}{suffix}"] = part
                continue
            new = _rename(rest, _SINGLE)
            if new is None:
                raise KeyError(k)
            out[f"single_transformer_blocks.{i}.{new}"] = v
        elif k.startswith("final_layer.adaLN_modulation.1."):
            out["norm_out.linear." + k.rsplit(".", 1)[1]] = _swap_halves(v)
        else:
            new = _rename(k, _TOP)
            if new is None:
                raise KeyError(k)
            out[new] = v
    return out


def diffusers_to_bfl(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """The reverse: a FluxTransformer2DModel state dict in BFL names (for writing test fixtures)."""
    inv_top = {v: k for k, v in _TOP.items()}
    inv_double = {v: k for k, v in _DOUBLE.items()}
    inv_single = {v: k for k, v in _SINGLE.items()}
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if m := re.match(r"transformer_blocks\.(\d+)\.(.+)$", k):
            i, rest = m.groups()
            hit = next(((src, names) for src, names in _QKV.items() if rest.startswith(names[0] + ".")), None)
            if hit:
                src, names = hit
                suffix = rest[len(names[0]) :]
                out[f"double_blocks.{i}.{src}{suffix}"] = torch.cat(
                    [state[f"transformer_blocks.{i}.{n}{suffix}"] for n in names], dim=0
                )
                continue
            if any(rest.startswith(n + ".") for names in _QKV.values() for n in names[1:]):
                continue
            new = _rename(rest, inv_double)
            if new is None:
                raise KeyError(k)
            out[f"double_blocks.{i}.{new}"] = v
        elif m := re.match(r"single_transformer_blocks\.(\d+)\.(.+)$", k):
            i, rest = m.groups()
            parts = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")
            if rest.startswith(parts[0] + "."):
                suffix = rest[len(parts[0]) :]
                out[f"single_blocks.{i}.linear1{suffix}"] = torch.cat(
                    [state[f"single_transformer_blocks.{i}.{n}{suffix}"] for n in parts], dim=0
                )
                continue
            if any(rest.startswith(n + ".") for n in parts[1:]):
                continue
            new = _rename(rest, inv_single)
            if new is None:
                raise KeyError(k)
            out[f"single_blocks.{i}.{new}"] = v
        elif k.startswith("norm_out.linear."):
            out["final_layer.adaLN_modulation.1." + k.rsplit(".", 1)[1]] = _swap_halves(v)
        else:
            new = _rename(k, inv_top)
            if new is None:
                raise KeyError(k)
            out[new] = v
    return {prefix + k: v for k, v in out.items()}
