"""kohya sd-scripts' SD 3/3.5 LoRA names → diffusers' (peft) names for SD3Transformer2DModel.

Hand-written because diffusers 0.42's SD3LoraLoaderMixin has no converter for these files (it converts kohya FLUX,
XLabs and ComfyUI FLUX files, but takes SD 3 LoRAs only in diffusers/peft names). sd-scripts names a module of
Stability's MMDiT with its dots as underscores under `lora_unet_` (`lora_unet_joint_blocks_0_x_block_attn_qkv`),
with `.lora_down.weight`, `.lora_up.weight` and `.alpha`. A fused qkv becomes three peft LoRAs sharing the down
matrix, the up matrix split in three (as diffusers does for XLabs FLUX files); alpha/rank is folded into the up
matrices. The CLIP parts (`lora_te1_` CLIP-L, `lora_te2_` CLIP-G: `text_model_encoder_layers_N_{self_attn_*_proj,
mlp_fc1,fc2}`) map onto `text_encoder`/`text_encoder_2`; T5 parts (`lora_te3_`) have no loader in diffusers' SD 3
pipeline: `convert` returns them, and any other module it can't map, as left out, for the caller to report."""

from __future__ import annotations

import re

import torch

PREFIX = "lora_unet_joint_blocks_"
_MODULE = re.compile(r"^lora_unet_joint_blocks_(\d+)_(x_block|context_block)_(.+)$")
# (block side, module) → diffusers module(s) under transformer_blocks.<i>.
_X = {
    "attn_qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "attn_proj": ("attn.to_out.0",),
    "attn2_qkv": ("attn2.to_q", "attn2.to_k", "attn2.to_v"),
    "attn2_proj": ("attn2.to_out.0",),
    "mlp_fc1": ("ff.net.0.proj",),
    "mlp_fc2": ("ff.net.2",),
    "adaLN_modulation_1": ("norm1.linear",),
}
_CONTEXT = {
    "attn_qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    "attn_proj": ("attn.to_add_out",),
    "mlp_fc1": ("ff_context.net.0.proj",),
    "mlp_fc2": ("ff_context.net.2",),
    "adaLN_modulation_1": ("norm1_context.linear",),
}


_TE = re.compile(r"^lora_te([12])_text_model_encoder_layers_(\d+)_(self_attn_(?:q|k|v|out)_proj|mlp_fc[12])$")


def _te_target(module: str) -> str | None:
    m = _TE.match(module)
    if m is None:
        return None
    part = m.group(3)
    name = f"self_attn.{part[len('self_attn_') :]}" if part.startswith("self_attn_") else f"mlp.{part[len('mlp_') :]}"
    encoder = "text_encoder" if m.group(1) == "1" else "text_encoder_2"
    return f"{encoder}.text_model.encoder.layers.{m.group(2)}.{name}"


def is_kohya_sd3(keys) -> bool:
    return any(k.startswith(PREFIX) for k in keys)


def convert(state: dict[str, torch.Tensor], num_layers: int) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(diffusers-named state dict with `transformer.` prefixes, modules left out). `num_layers`: the transformer's
    depth, since the last block's context side is Stability's pre-only AdaLayerNormContinuous, whose modulation
    rows diffusers keeps as (scale, shift) where Stability has (shift, scale)."""
    out: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    modules = sorted({k.split(".", 1)[0] for k in state})
    for module in modules:
        m = _MODULE.match(module)
        targets = (_X if m and m.group(2) == "x_block" else _CONTEXT).get(m.group(3)) if m else None
        down, up = state.get(module + ".lora_down.weight"), state.get(module + ".lora_up.weight")
        te = _te_target(module)
        if (targets is None and te is None) or down is None or up is None:
            skipped.append(module)
            continue
        alpha = state.get(module + ".alpha")
        up = up * (float(alpha) / down.shape[0] if alpha is not None else 1.0)
        if te is not None:
            out[te + ".lora_A.weight"], out[te + ".lora_B.weight"] = down, up.contiguous()
            continue
        assert m is not None and targets is not None
        block = int(m.group(1))
        if m.group(3) == "adaLN_modulation_1" and m.group(2) == "context_block" and block == num_layers - 1:
            shift, scale = up.chunk(2, dim=0)
            up = torch.cat([scale, shift], dim=0)
        ups = up.chunk(len(targets), dim=0)
        for target, part in zip(targets, ups):
            name = f"transformer.transformer_blocks.{block}.{target}"
            out[name + ".lora_A.weight"] = down
            out[name + ".lora_B.weight"] = part.contiguous()
    return out, skipped
