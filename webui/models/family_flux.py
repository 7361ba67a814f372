"""FLUX.1 (dev, schnell): recognised from BFL's transformer keys, configs from the tensor shapes.

dev and schnell differ in one part: dev is guidance-distilled and has the guidance embedder (`guidance_in.*`), which
takes Forge's "Distilled CFG Scale"; schnell has none. FLUX Fill/Depth (img_in widened to 384/128 inputs) are refused.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from webui.errors import ModelLoadError

Shapes = Mapping[str, Sequence[int]]
MARK = "double_blocks.0.img_attn.norm.key_norm.scale"


def prefix_of(shapes: Shapes) -> str | None:
    """The key prefix of a FLUX transformer ("" for BFL files, "model.diffusion_model." in ComfyUI saves)."""
    for k in shapes:
        if k.endswith(MARK):
            return k[: -len(MARK)]
    return None


def _count(shapes: Shapes, p: str, block: str) -> int:
    rx = re.compile(re.escape(p + block) + r"\.(\d+)\.")
    return len({m.group(1) for k in shapes if (m := rx.match(k))})


def variant(shapes: Shapes, p: str) -> str:
    if p + "guidance_in.in_layer.weight" not in shapes:
        return "flux-schnell"
    in_ch = shapes[p + "img_in.weight"][1]
    if in_ch != 64:
        kind = {384: "Fill", 128: "Depth"}.get(in_ch, f"{in_ch}-channel")
        raise ModelLoadError(f"a FLUX.1 {kind} checkpoint: not supported yet (FLUX.1 dev and schnell are)")
    return "flux-dev"


def transformer_config(shapes: Shapes, p: str, template: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    head = shapes[p + "double_blocks.0.img_attn.norm.query_norm.scale"][0]
    inner = shapes[p + "img_in.weight"][0]
    cfg = dict(template)
    cfg.update(
        num_layers=_count(shapes, p, "double_blocks"),
        num_single_layers=_count(shapes, p, "single_blocks"),
        attention_head_dim=head,
        num_attention_heads=inner // head,
        in_channels=shapes[p + "img_in.weight"][1],
        joint_attention_dim=shapes[p + "txt_in.weight"][1],
        pooled_projection_dim=shapes[p + "vector_in.in_layer.weight"][1],
        guidance_embeds=p + "guidance_in.in_layer.weight" in shapes,
    )
    cfg.update(overrides)
    return cfg


def needs(cfg: dict[str, Any]) -> dict[str, Any]:
    """What the separate parts must be to fit: CLIP-L's width is the pooled input, T5's the text input, and the VAE's
    latent channels a quarter of the packed 2×2 input."""
    return {"clip_l": cfg["pooled_projection_dim"], "t5": cfg["joint_attention_dim"], "vae": cfg["in_channels"] // 4}
