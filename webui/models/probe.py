"""Recognise a checkpoint's family from tensor names and shapes, and build its diffusers configs from them.

The configs start from the family template (the published diffusers configs shipped in configs/), then every value
that the shapes determine is taken from the shapes, so a scaled-down checkpoint with the same key layout gets a
matching config through exactly the same code as a full-size one. Hyperparameters that no shape reveals (attention
heads, norm groups, the VAE scaling factor) come from the family defaults, or from an `easel.config` JSON entry in
the safetensors header when the file carries one.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from webui.errors import ModelLoadError
from webui.models.families import (
    CLIP_PREFIX,
    DEFAULT_VAE_SCALE,
    NATIVE_SIZE,
    SD2_TEXT_PREFIX,
    SDXL_CLIP_G_PREFIX,
    SDXL_CLIP_L_PREFIX,
    TEMPLATE,
    UNET_PREFIX,
    VAE_PREFIX,
    Family,
    ProbeResult,
)

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
Shapes = Mapping[str, Sequence[int]]


def load_template(folder: str, component: str, filename: str = "config.json") -> dict[str, Any]:
    return json.loads((CONFIGS_DIR / folder / component / filename).read_text())


def _indices(shapes: Shapes, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in shapes if (m := rx.match(k))})


def detect_family(shapes: Shapes) -> Family:
    if not any(k.startswith(UNET_PREFIX) for k in shapes):
        raise ModelLoadError("no UNet weights (model.diffusion_model.*): not a Stable Diffusion checkpoint")
    if any(k.startswith("conditioner.embedders.1.") for k in shapes):
        return Family.SDXL
    if UNET_PREFIX + "label_emb.0.0.weight" in shapes:
        raise ModelLoadError(
            "an SDXL-style UNet without SDXL base's two text encoders (an SDXL refiner?): not supported"
        )
    if any(k.startswith("cond_stage_model.model.") for k in shapes):
        return Family.SD2
    if any(k.startswith(CLIP_PREFIX) for k in shapes):
        return Family.SD1
    raise ModelLoadError("unknown text encoder layout: not an SD 1.x, 2.x or SDXL checkpoint")


def unet_config(shapes: Shapes, family: Family, overrides: dict[str, Any]) -> dict[str, Any]:
    p = UNET_PREFIX
    cfg = load_template(TEMPLATE[family], "unet")
    conv_in = shapes[p + "input_blocks.0.0.weight"]
    n_input = len(_indices(shapes, re.escape(p) + r"input_blocks\.(\d+)\."))
    downs = _indices(shapes, re.escape(p) + r"input_blocks\.(\d+)\.0\.op\.weight")
    levels = len(downs) + 1
    per = n_input // levels  # layers_per_block + 1
    if per * levels != n_input or per < 2:
        raise ModelLoadError(f"unexpected UNet layout: {n_input} input blocks over {levels} levels")
    channels, attn, depth = [], [], []
    for level in range(levels):
        first = 1 + level * per  # the level's first resnet
        channels.append(shapes[f"{p}input_blocks.{first}.0.out_layers.3.weight"][0])
        blocks = _indices(shapes, re.escape(f"{p}input_blocks.{first}.1.transformer_blocks.") + r"(\d+)\.")
        attn.append(bool(blocks))
        depth.append(len(blocks) or 1)
    ctx_keys = [k for k in shapes if k.startswith(p) and k.endswith("attn2.to_k.weight")]
    proj_in = [k for k in shapes if k.startswith(p) and k.endswith(".proj_in.weight")]
    cfg.update(
        in_channels=conv_in[1],
        out_channels=shapes[p + "out.2.weight"][0],
        block_out_channels=channels,
        layers_per_block=per - 1,
        down_block_types=["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn],
        up_block_types=["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)],
    )
    if ctx_keys:
        cfg["cross_attention_dim"] = shapes[ctx_keys[0]][1]
    if proj_in:
        cfg["use_linear_projection"] = len(shapes[proj_in[0]]) == 2
    if family == Family.SDXL:
        cfg["transformer_layers_per_block"] = depth
        cfg["projection_class_embeddings_input_dim"] = shapes[p + "label_emb.0.0.weight"][1]
    if family in (Family.SD2, Family.SDXL):  # these families use 64-channel heads
        cfg["attention_head_dim"] = [max(1, c // 64) for c in channels]
    cfg.update(overrides)
    return cfg


def vae_config(shapes: Shapes, family: Family, overrides: dict[str, Any]) -> dict[str, Any]:
    p = VAE_PREFIX
    cfg = load_template(TEMPLATE[family], "vae")
    levels = _indices(shapes, re.escape(p) + r"encoder\.down\.(\d+)\.")
    if not levels:
        raise ModelLoadError("no VAE weights (first_stage_model.*) in the checkpoint")
    channels = [shapes[f"{p}encoder.down.{i}.block.0.conv2.weight"][0] for i in levels]
    n = len(channels)
    cfg.update(
        in_channels=shapes[p + "encoder.conv_in.weight"][1],
        out_channels=shapes[p + "decoder.conv_out.weight"][0],
        latent_channels=shapes[p + "post_quant_conv.weight"][0],
        block_out_channels=channels,
        layers_per_block=len(_indices(shapes, re.escape(p) + r"encoder\.down\.0\.block\.(\d+)\.")),
        down_block_types=["DownEncoderBlock2D"] * n,
        up_block_types=["UpDecoderBlock2D"] * n,
    )
    cfg.setdefault("scaling_factor", DEFAULT_VAE_SCALE[family])
    cfg.update(overrides)
    return cfg


def clip_config(
    shapes: Shapes,
    family: Family,
    overrides: dict[str, Any],
    *,
    prefix: str = CLIP_PREFIX,
    component: str = "text_encoder",
) -> dict[str, Any]:
    """A CLIP-L tower in transformers names (SD 1.x's, SDXL's first encoder)."""
    cfg = load_template(TEMPLATE[family], component)
    p = prefix + ("text_model." if any(k.startswith(prefix + "text_model.") for k in shapes) else "")
    vocab, hidden = shapes[p + "embeddings.token_embedding.weight"]
    cfg.update(
        vocab_size=vocab,
        hidden_size=hidden,
        projection_dim=hidden,
        max_position_embeddings=shapes[p + "embeddings.position_embedding.weight"][0],
        num_hidden_layers=len(_indices(shapes, re.escape(p) + r"encoder\.layers\.(\d+)\.")),
        intermediate_size=shapes[p + "encoder.layers.0.mlp.fc1.weight"][0],
    )
    if hidden != 768:  # the template's 12 heads fit 768 only; CLIP uses 64-channel heads
        cfg["num_attention_heads"] = max(1, hidden // 64)
    cfg.update(overrides)
    return cfg


def openclip_config(
    shapes: Shapes, family: Family, overrides: dict[str, Any], *, prefix: str, component: str, penultimate: bool
) -> dict[str, Any]:
    """An OpenCLIP tower (SD 2.x's ViT-H text tower, SDXL's bigG) as a transformers CLIP config.

    `penultimate`: SD 2.x uses the next-to-last layer, and diffusers' SD2 text encoder leaves the file's last block
    out (num_hidden_layers 23 of 24 resblocks); SDXL's bigG keeps all of them and its `text_projection`."""
    cfg = load_template(TEMPLATE[family], component)
    vocab, hidden = shapes[prefix + "token_embedding.weight"]
    blocks = len(_indices(shapes, re.escape(prefix + "transformer.resblocks.") + r"(\d+)\."))
    cfg.update(
        vocab_size=vocab,
        hidden_size=hidden,
        max_position_embeddings=shapes[prefix + "positional_embedding"][0],
        num_hidden_layers=blocks - 1 if penultimate else blocks,
        intermediate_size=shapes[prefix + "transformer.resblocks.0.mlp.c_fc.weight"][0],
        num_attention_heads=max(1, hidden // 64),
    )
    if not penultimate and prefix + "text_projection" in shapes:
        cfg["projection_dim"] = shapes[prefix + "text_projection"][1]
    if cfg["num_hidden_layers"] < 1:
        raise ModelLoadError(f"the text tower under {prefix} has {blocks} blocks: too few")
    cfg.update(overrides)
    return cfg


def text_configs(shapes: Shapes, family: Family, extra: dict[str, Any]) -> dict[str, dict[str, Any]]:
    if family == Family.SD1:
        return {"text_encoder": clip_config(shapes, family, extra.get("text_encoder", {}))}
    if family == Family.SD2:
        return {
            "text_encoder": openclip_config(
                shapes,
                family,
                extra.get("text_encoder", {}),
                prefix=SD2_TEXT_PREFIX,
                component="text_encoder",
                penultimate=True,
            )
        }
    return {
        "text_encoder": clip_config(shapes, family, extra.get("text_encoder", {}), prefix=SDXL_CLIP_L_PREFIX),
        "text_encoder_2": openclip_config(
            shapes,
            family,
            extra.get("text_encoder_2", {}),
            prefix=SDXL_CLIP_G_PREFIX,
            component="text_encoder_2",
            penultimate=False,
        ),
    }


def probe(shapes: Shapes, metadata: Mapping[str, str] | None = None, *, name: str = "checkpoint") -> ProbeResult:
    """Identify a checkpoint from its tensor shapes (and optional `easel.config` metadata)."""
    meta = dict(metadata or {})
    try:
        extra = json.loads(meta["easel.config"]) if "easel.config" in meta else {}
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{name}: unreadable easel.config metadata: {e}") from e
    from webui.models.family_flow import probe_flow  # SD 3/3.5 and FLUX.1 transformers

    if (flow := probe_flow(shapes, extra, name)) is not None:
        return flow
    family = detect_family(shapes)
    template = TEMPLATE[family]
    try:
        unet = unet_config(shapes, family, extra.get("unet", {}))
        vae = vae_config(shapes, family, extra.get("vae", {}))
        configs: dict[str, dict[str, Any]] = {"unet": unet, "vae": vae, **text_configs(shapes, family, extra)}
        if family == Family.SDXL:
            # label_emb takes the pooled bigG projection plus 6 Fourier-embedded size/crop numbers (add_time_ids).
            pooled = configs["text_encoder_2"]["projection_dim"]
            time_dims, rest = divmod(unet["projection_class_embeddings_input_dim"] - pooled, 6)
            if rest or time_dims < 1:
                raise ModelLoadError(
                    f"{name}: label_emb input {unet['projection_class_embeddings_input_dim']} does "
                    f"not fit a {pooled}-wide pooled embedding plus 6 time embeddings"
                )
            unet["addition_time_embed_dim"] = extra.get("unet", {}).get("addition_time_embed_dim", time_dims)
    except KeyError as e:
        raise ModelLoadError(
            f"{name}: missing tensor {e.args[0]}: the file is incomplete or of an unknown layout"
        ) from e
    scheduler = copy.deepcopy(load_template(template, "scheduler", "scheduler_config.json"))
    scheduler.update(extra.get("scheduler", {}))
    inpainting = unet["in_channels"] == 9
    prediction = extra.get("prediction_type") or scheduler.get("prediction_type", "epsilon")
    default_native = NATIVE_SIZE[family]
    if family == Family.SD2 and "prediction_type" not in extra:
        # Weights don't reveal v-prediction. 768-native SD 2.x checkpoints are v; SD 2.x inpainting was trained on
        # the 512 epsilon base (A1111's v2-inpainting-inference.yaml). Metadata or a sidecar can say otherwise.
        prediction = "epsilon" if inpainting else "v_prediction"
    if family == Family.SD2 and inpainting:
        default_native = 512
    scheduler["prediction_type"] = prediction
    configs["scheduler"] = scheduler
    vae_scale = 2 ** (len(vae["block_out_channels"]) - 1)
    native = int(extra.get("native_size") or default_native)
    unet["sample_size"] = native // vae_scale
    vae["sample_size"] = native
    return ProbeResult(
        family=family, inpainting=inpainting, prediction_type=prediction, native_size=native, configs=configs
    )
