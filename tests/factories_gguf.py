"""Tiny GGUF transformer files as city96's converter writes them (`flux1-dev-Q4_0.gguf`, `sd3.5_large-Q8_0.gguf`):
original BFL/Stability names without a prefix, 2-D weights quantized in GGML blocks where the row length allows,
everything else F16 (matrices, convs) or F32 (vectors). Written with the `gguf` package's own writer and quantizers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

# FLUX with 2 heads × 16 (width 32): the attention, MLP and modulation matrices are then 32/64/128 wide, so they
# quantize (GGML blocks are 32 values), the fused qkv and linear1 tensors included; the text widths stay the tiny
# ones (32), so the same clip_l / t5xxl / ae files fit it.
FLUX_GGUF_TINY = dict(
    patch_size=1,
    in_channels=64,
    num_layers=1,
    num_single_layers=1,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=32,
    pooled_projection_dim=32,
    axes_dims_rope=(4, 4, 8),
)
FLUX_GGUF_EASEL = {"transformer": {"axes_dims_rope": [4, 4, 8]}, "native_size": 64}


# K-quants work on 256-value super-blocks: 2 heads × 128 make the matrices 256/1024/1280 wide (the text widths stay
# the tiny 32, so the same clip_l / t5xxl / ae files fit it, and those rows stay F16).
FLUX_K_TINY = dict(FLUX_GGUF_TINY, attention_head_dim=128, axes_dims_rope=(16, 56, 56))
FLUX_K_EASEL = {"transformer": {"axes_dims_rope": [16, 56, 56]}, "native_size": 64}
QK_K = 256


def tiny_flux_transformer(seed: int = 0, *, dev: bool = True, config: dict | None = None):
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    return FluxTransformer2DModel(guidance_embeds=dev, **(config or FLUX_GGUF_TINY)).eval()


# The `gguf` package (0.19) quantizes Q4_0/Q8_0 and friends but has no quantizer for the K-quants (it only
# dequantizes them), so these two write GGML's Q4_K and Q6_K block layouts directly, with a plain min/max fit per
# sub-block (llama.cpp searches for better scales; the layout, not the fit, is what a reader depends on). The test
# checks them against the package's own dequantizers.


def quantize_q4_k(a: np.ndarray) -> np.ndarray:
    """[rows, cols] float (cols % 256 == 0) → Q4_K blocks as uint8 [rows, cols // 256 * 144]: per 256 values f16 d,
    f16 dmin, 12 bytes of 6-bit scales/mins for 8 sub-blocks of 32, 128 bytes of 4-bit quants; x ≈ d·sc·q − dmin·m."""
    rows = a.shape[0]
    x: np.ndarray = a.astype(np.float32).reshape(-1, 8, 32)
    lo = np.minimum(x.min(axis=-1), 0.0)
    scale, mins = (x.max(axis=-1) - lo) / 15.0, -lo
    d = (scale.max(axis=-1) / 63.0).astype(np.float16)
    dmin = (mins.max(axis=-1) / 63.0).astype(np.float16)
    df, dmf = d.astype(np.float32)[:, None], dmin.astype(np.float32)[:, None]
    sc = np.clip(np.rint(np.divide(scale, df, out=np.zeros_like(scale), where=df > 0)), 0, 63).astype(np.uint8)
    m = np.clip(np.rint(np.divide(mins, dmf, out=np.zeros_like(mins), where=dmf > 0)), 0, 63).astype(np.uint8)
    step = (df * sc)[..., None]
    q = np.clip(np.rint(np.divide(x + (dmf * m)[..., None], step, out=np.zeros_like(x), where=step > 0)), 0, 15)
    q = q.astype(np.uint8)
    packed = np.concatenate(
        [
            (sc[:, :4] & 63) | ((sc[:, 4:] >> 4) << 6),
            (m[:, :4] & 63) | ((m[:, 4:] >> 4) << 6),
            (sc[:, 4:] & 15) | ((m[:, 4:] & 15) << 4),
        ],
        axis=-1,
    )
    pairs = q.reshape(-1, 4, 2, 32)
    qs = (pairs[:, :, 0] | (pairs[:, :, 1] << 4)).reshape(-1, 128)
    blocks = np.concatenate([d.view(np.uint8).reshape(-1, 2), dmin.view(np.uint8).reshape(-1, 2), packed, qs], -1)
    return blocks.reshape(rows, -1)


def quantize_q6_k(a: np.ndarray) -> np.ndarray:
    """[rows, cols] float (cols % 256 == 0) → Q6_K blocks as uint8 [rows, cols // 256 * 210]: 128 bytes of low
    nibbles, 64 of high bit pairs, 16 int8 scales (sub-blocks of 16), f16 d; x ≈ d·sc·(q − 32)."""
    rows = a.shape[0]
    x: np.ndarray = a.astype(np.float32).reshape(-1, 16, 16)
    scale = np.abs(x).max(axis=-1) / 31.0
    d = (scale.max(axis=-1) / 127.0).astype(np.float16)
    df = d.astype(np.float32)[:, None]
    sc = np.clip(np.rint(np.divide(scale, df, out=np.zeros_like(scale), where=df > 0)), -128, 127).astype(np.int8)
    step = (df * sc)[..., None]
    q = np.clip(np.rint(np.divide(x, step, out=np.zeros_like(x), where=step > 0)), -32, 31)
    qu = (q + 32).astype(np.uint8).reshape(-1, QK_K)
    low, high = qu & 15, qu >> 4
    halves = low.reshape(-1, 2, 2, 64)
    ql = (halves[:, :, 0] | (halves[:, :, 1] << 4)).reshape(-1, 128)
    quads = high.reshape(-1, 2, 4, 32)
    qh = (quads[:, :, 0] | (quads[:, :, 1] << 2) | (quads[:, :, 2] << 4) | (quads[:, :, 3] << 6)).reshape(-1, 64)
    blocks = np.concatenate([ql, qh, sc.view(np.uint8), d.view(np.uint8).reshape(-1, 2)], axis=-1)
    return blocks.reshape(rows, -1)


def q4_k_m_type(name: str) -> str:
    """Q4_K_M's mix as llama.cpp makes it: the MLP down projections in Q6_K, the other matrices in Q4_K."""
    down = ("img_mlp.2.weight", "txt_mlp.2.weight", "linear2.weight", "mlp.fc2.weight")  # FLUX's and SD 3's
    return "Q6_K" if name.endswith(down) else "Q4_K"


def write_gguf(
    path: Path, state: dict[str, torch.Tensor], qtype: str, *, arch: str, meta: dict | None = None
) -> dict[str, str]:
    """`state` (original names) as a GGUF file; returns each tensor's stored type."""
    import gguf

    own = {"Q4_K": quantize_q4_k, "Q6_K": quantize_q6_k}  # K-quants: see quantize_q4_k
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch)
    if meta:
        writer.add_string("easel.config", json.dumps(meta))
    kinds = {}
    for name, t in state.items():
        a = t.detach().float().numpy()
        kind = q4_k_m_type(name) if qtype == "Q4_K_M" else qtype
        q = gguf.GGMLQuantizationType[kind]
        if a.ndim == 2 and a.shape[1] % gguf.GGML_QUANT_SIZES[q][0] == 0:
            writer.add_tensor(name, own[kind](a) if kind in own else gguf.quants.quantize(a, q), raw_dtype=q)
            kinds[name] = kind
        else:
            writer.add_tensor(name, a.astype(np.float16) if a.ndim > 1 else a)
            kinds[name] = "F16" if a.ndim > 1 else "F32"
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return kinds


def write_flux_gguf(models: Path, qtype: str = "Q4_0", seed: int = 0, *, twin: bool = True) -> Path:
    """models/Stable-diffusion/flux1-dev-tiny-<qtype>.gguf, and (twin) the same weights unquantized in BFL layout
    as flux1-dev-tiny-w32.safetensors. The parts come from tests.factories_families.write_flux_split."""
    from tests.factories_families import _save
    from webui.models.flux_keys import diffusers_to_bfl

    state = diffusers_to_bfl(tiny_flux_transformer(seed).state_dict())
    out = models / "Stable-diffusion" / f"flux1-dev-tiny-{qtype}.gguf"
    write_gguf(out, state, qtype, arch="flux", meta=FLUX_GGUF_EASEL)
    if twin:
        _save(
            models / "Stable-diffusion" / "flux1-dev-tiny-w32.safetensors",
            state,
            {"easel.config": json.dumps(FLUX_GGUF_EASEL)},
        )
    return out


def write_sd3_gguf(models: Path, qtype: str = "Q8_0", seed: int = 0, *, variant: str = "sd35-medium") -> Path:
    """The transformer of tiny_sd3_pipeline(seed) as models/Stable-diffusion/sd3.5_medium_tiny-<qtype>.gguf (its
    unquantized twin is write_sd3_split's sd35_medium_tiny.safetensors at the same seed)."""
    from tests.factories_families import SD3_TINY_EASEL, sd3_to_original, tiny_sd3_pipeline

    state = sd3_to_original(tiny_sd3_pipeline(seed, variant=variant).transformer.state_dict(), prefix="")
    out = models / "Stable-diffusion" / f"sd3.5_medium_tiny-{qtype}.gguf"
    write_gguf(out, state, qtype, arch="sd3", meta=SD3_TINY_EASEL)
    return out


def write_flux_gguf_k(models: Path, seed: int = 0) -> Path:
    """models/Stable-diffusion/flux1-dev-tiny-Q4_K_M.gguf (256-wide FLUX_K_TINY, Q4_K with Q6_K MLP-down matrices)
    and its unquantized twin flux1-dev-tiny-k32.safetensors (BFL layout)."""
    from tests.factories_families import _save
    from webui.models.flux_keys import diffusers_to_bfl

    state = diffusers_to_bfl(tiny_flux_transformer(seed, config=FLUX_K_TINY).state_dict())
    out = models / "Stable-diffusion" / "flux1-dev-tiny-Q4_K_M.gguf"
    write_gguf(out, state, "Q4_K_M", arch="flux", meta=FLUX_K_EASEL)
    _save(
        models / "Stable-diffusion" / "flux1-dev-tiny-k32.safetensors",
        state,
        {"easel.config": json.dumps(FLUX_K_EASEL)},
    )
    return out


# SD 3.5 for K-quants: 4 heads × 64 make the matrices 256/1024 wide (caption projection = width); the text widths stay
# SD3_TINY's (96 T5, 80 pooled), so write_sd3_split's clip_l / clip_g / t5xxl / VAE files fit it (their rows: F16).
SD3_K_CONFIG = {"attention_head_dim": 64, "caption_projection_dim": 256}
SD3_K_EASEL = {"transformer": {"attention_head_dim": 64}, "native_size": 64}


def write_sd3_gguf_k(models: Path, seed: int = 0, *, variant: str = "sd35-large") -> Path:
    """models/Stable-diffusion/sd3.5_large_tiny-Q4_K_M.gguf (256-wide SD 3.5, Q4_K with Q6_K MLP-down matrices, as
    city96's sd3.5_large-Q4_K_M.gguf) and its unquantized twin sd3.5_large_tiny-k32.safetensors (Stability layout)."""
    from diffusers import SD3Transformer2DModel

    from tests.factories_families import SD3_TINY, SD3_VARIANTS, _save, sd3_to_original

    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(**{**SD3_TINY, **SD3_K_CONFIG}, **SD3_VARIANTS[variant]).eval()
    state = sd3_to_original(transformer.state_dict(), prefix="")
    out = models / "Stable-diffusion" / "sd3.5_large_tiny-Q4_K_M.gguf"
    write_gguf(out, state, "Q4_K_M", arch="sd3", meta=SD3_K_EASEL)
    _save(
        models / "Stable-diffusion" / "sd3.5_large_tiny-k32.safetensors",
        sd3_to_original(transformer.state_dict()),
        {"easel.config": json.dumps(SD3_K_EASEL)},
    )
    return out
