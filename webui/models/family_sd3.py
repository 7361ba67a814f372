"""Stable Diffusion 3 Medium and 3.5 Medium/Large: recognised from Stability's MMDiT keys (`joint_blocks.*`).

SD 3.5 added RMS qk-norm (`attn.ln_q`); 3.5 Medium also has a second self-attention in its first 13 blocks
(`x_block.attn2`, MMDiT-X) and 3.5 Large 38 blocks. SD 3 Medium has neither norm nor attn2.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

Shapes = Mapping[str, Sequence[int]]
MARK = "joint_blocks.0.context_block.adaLN_modulation.1.bias"


def prefix_of(shapes: Shapes) -> str | None:
    for k in shapes:
        if k.endswith(MARK):
            return k[: -len(MARK)]
    return None


def _blocks(shapes: Shapes, p: str, pattern: str) -> list[int]:
    rx = re.compile(re.escape(p) + pattern)
    return sorted({int(m.group(1)) for k in shapes if (m := rx.match(k))})


def variant(shapes: Shapes, p: str) -> str:
    if not any(k.startswith(p + "joint_blocks.0.x_block.attn.ln_q") for k in shapes):
        return "sd3-medium"
    return "sd35-medium" if _blocks(shapes, p, r"joint_blocks\.(\d+)\.x_block\.attn2\.") else "sd35-large"


def transformer_config(shapes: Shapes, p: str, template: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    cfg = dict(template)
    proj = shapes[p + "x_embedder.proj.weight"]  # (inner, in_channels, patch, patch)
    inner, patch = proj[0], proj[2]
    ln_q = p + "joint_blocks.0.x_block.attn.ln_q.weight"
    head = overrides.get("attention_head_dim") or (shapes[ln_q][0] if ln_q in shapes else cfg["attention_head_dim"])
    cfg.update(
        num_layers=len(_blocks(shapes, p, r"joint_blocks\.(\d+)\.")),
        attention_head_dim=head,
        num_attention_heads=inner // head,
        in_channels=proj[1],
        patch_size=patch,
        caption_projection_dim=shapes[p + "context_embedder.weight"][0],
        joint_attention_dim=shapes[p + "context_embedder.weight"][1],
        pooled_projection_dim=shapes[p + "y_embedder.mlp.0.weight"][1],
        out_channels=shapes[p + "final_layer.linear.weight"][0] // (patch * patch),
        pos_embed_max_size=math.isqrt(shapes[p + "pos_embed"][1]),
        dual_attention_layers=_blocks(shapes, p, r"joint_blocks\.(\d+)\.x_block\.attn2\."),
        qk_norm="rms_norm" if ln_q in shapes else None,
    )
    cfg.update(overrides)
    return cfg


def needs(cfg: dict[str, Any]) -> dict[str, Any]:
    """CLIP-L and CLIP-G projections add up to the pooled input; T5's width is the text input (the CLIP hidden
    states, L and G side by side, are zero-padded to it); the VAE's latent channels are the input channels."""
    return {"clip_pair": cfg["pooled_projection_dim"], "t5": cfg["joint_attention_dim"], "vae": cfg["in_channels"]}
