"""FLUX.1 (dev, schnell, Fill): recognised from BFL's transformer keys, configs from the tensor shapes.

dev and schnell differ in one part: dev is guidance-distilled and has the guidance embedder (`guidance_in.*`), which
takes Forge's "Distilled CFG Scale"; schnell has none. FLUX.1 Fill is dev with img_in widened to 384 inputs (the
packed 2×2 noise latents 64 + masked-image latents 64 + the 8×8 pixel mask per latent 256) and 64 outputs; it runs
on diffusers' FluxFillPipeline (webui/generation/flow_fill.py). FLUX.1 Depth (128 inputs) is refused.
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
    img_in = shapes.get(p + "img_in.weight") or (0, 64)  # missing: transformer_config says which tensor
    return _variant(True, img_in[1], _out_channels(shapes, p))


def config_variant(cfg: Mapping[str, Any]) -> str:
    """The variant of a diffusers FluxTransformer2DModel config (a diffusers folder)."""
    in_ch = int(cfg.get("in_channels") or 64)
    return _variant(bool(cfg.get("guidance_embeds")), in_ch, int(cfg.get("out_channels") or in_ch))


def _variant(guided: bool, in_ch: int, out_ch: int) -> str:
    if not guided:
        return "flux-schnell"
    if in_ch == out_ch:
        return "flux-dev"
    if in_ch == 6 * out_ch:  # noise + masked image + mask (8×8 pixels × 2×2 packing per latent pixel)
        return "flux-fill"
    kind = "Depth" if in_ch == 2 * out_ch else f"{in_ch}-channel"
    raise ModelLoadError(f"a FLUX.1 {kind} checkpoint: not supported yet (FLUX.1 dev, schnell and Fill are)")


def _out_channels(shapes: Shapes, p: str) -> int:
    """The packed latent width the transformer predicts (64 for every FLUX.1 release): final_layer's rows."""
    key = p + "final_layer.linear.weight"
    return shapes[key][0] if key in shapes else 64


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
    if _out_channels(shapes, p) != cfg["in_channels"]:  # Fill; dev/schnell keep diffusers' default (= in_channels)
        cfg["out_channels"] = _out_channels(shapes, p)
    cfg.update(overrides)
    return cfg


def needs(cfg: dict[str, Any]) -> dict[str, Any]:
    """What the separate parts must be to fit: CLIP-L's width is the pooled input, T5's the text input, and the VAE's
    latent channels a quarter of the packed 2×2 output (Fill's input is wider: it also takes the mask)."""
    packed = cfg.get("out_channels") or cfg["in_channels"]
    return {"clip_l": cfg["pooled_projection_dim"], "t5": cfg["joint_attention_dim"], "vae": packed // 4}
