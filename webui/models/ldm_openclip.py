"""diffusers/transformers CLIP text towers → the A1111/LDM OpenCLIP layout (SD 2.x and SDXL's second encoder).

OpenCLIP keeps one fused `attn.in_proj_weight` (q, k, v stacked) per block and names the rest differently:
`token_embedding.weight`, `positional_embedding`, `transformer.resblocks.N.{ln_1, attn, ln_2, mlp.c_fc, mlp.c_proj}`,
`ln_final` and `text_projection` (stored as a matrix applied as `x @ P`, i.e. the transpose of a Linear weight).
The mapping mirrors diffusers' `convert_open_clip_checkpoint`, which the tests use to read it back exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from webui.models.families import CLIP_PREFIX, SD2_TEXT_PREFIX, SDXL_CLIP_G_PREFIX, SDXL_CLIP_L_PREFIX

_FIXED = {
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "final_layer_norm.weight": "ln_final.weight",
    "final_layer_norm.bias": "ln_final.bias",
}
_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def _flat(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers 5 CLIPTextModel has no `text_model.` prefix; CLIPTextModelWithProjection still has it."""
    return {k.removeprefix("text_model."): v for k, v in state.items() if not k.endswith("position_ids")}


def openclip_state_dict(
    text_encoder, prefix: str, *, extra_layers: int = 0, put_projection: bool = True
) -> dict[str, torch.Tensor]:
    """One tower in OpenCLIP names under `prefix`.

    `extra_layers`: SD 2.x runs the text tower's penultimate layer, so diffusers' SD2 text encoder has one layer
    fewer than the file (it drops `resblocks.23`). A file written from it gets that many zero-filled blocks
    appended, so it has the layout of a real SD 2.x file and reads back through the same converter.
    `put_projection`: write `text_projection` (from the model's own, or an identity when the model has none, as for
    SD 2.x's CLIPTextModel which never uses it; diffusers ignores it there)."""
    src = _flat(text_encoder.state_dict())
    out: dict[str, torch.Tensor] = {}
    n_layers = text_encoder.config.num_hidden_layers
    hidden = text_encoder.config.hidden_size
    for k, v in src.items():
        if k in _FIXED:
            out[prefix + _FIXED[k]] = v
        elif k == "text_projection.weight":
            out[prefix + "text_projection"] = v.t()
        elif k.startswith("encoder.layers."):
            i, _, rest = k.removeprefix("encoder.layers.").partition(".")
            module, _, param = rest.rpartition(".")
            base = f"{prefix}transformer.resblocks.{i}."
            if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                if module == "self_attn.q_proj":
                    qkv = [src[f"encoder.layers.{i}.self_attn.{p}_proj.{param}"] for p in "qkv"]
                    out[base + f"attn.in_proj_{param}"] = _cat(qkv)
            else:
                out[base + f"{_LAYER[module]}.{param}"] = v
        else:
            raise KeyError(f"no OpenCLIP name for text encoder key {k!r}")
    for extra in range(extra_layers):
        last = f"{prefix}transformer.resblocks.{n_layers - 1}."
        for k in [k for k in out if k.startswith(last)]:
            out[k.replace(last, f"{prefix}transformer.resblocks.{n_layers + extra}.")] = _zeros_like(out[k])
    if put_projection and prefix + "text_projection" not in out:
        out[prefix + "text_projection"] = _eye(hidden, out[prefix + "token_embedding.weight"])
    return out


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    if parts[0].device.type == "meta":
        return torch.empty((sum(p.shape[0] for p in parts), *parts[0].shape[1:]), device="meta", dtype=parts[0].dtype)
    return torch.cat(parts, 0)


def _zeros_like(t: torch.Tensor) -> torch.Tensor:
    return torch.zeros(t.shape, dtype=t.dtype, device=t.device)


def _eye(n: int, like: torch.Tensor) -> torch.Tensor:
    if like.device.type == "meta":
        return torch.empty((n, n), device="meta", dtype=like.dtype)
    return torch.eye(n, dtype=like.dtype)


def clip_l_state_dict(text_encoder, prefix: str) -> dict[str, torch.Tensor]:
    """A CLIP-L (transformers names) tower under `prefix` + `text_model.`, as A1111/sgm files keep it."""
    return {prefix + "text_model." + k: v for k, v in _flat(text_encoder.state_dict()).items()}


def text_state_dict(family: str, text_encoder, text_encoder_2=None) -> dict[str, torch.Tensor]:
    """The text part of an A1111 file for a family ("sd1", "sd2", "sdxl")."""
    build: dict[str, Callable[[], dict]] = {
        "sd1": lambda: clip_l_state_dict(text_encoder, CLIP_PREFIX),
        "sd2": lambda: openclip_state_dict(text_encoder, SD2_TEXT_PREFIX, extra_layers=1),
        "sdxl": lambda: {
            **clip_l_state_dict(text_encoder, SDXL_CLIP_L_PREFIX),
            **openclip_state_dict(text_encoder_2, SDXL_CLIP_G_PREFIX),
        },
    }
    if family == "sdxl" and text_encoder_2 is None:
        raise ValueError("an SDXL checkpoint needs text_encoder_2")
    return build[family]()
