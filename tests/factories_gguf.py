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
FLUX_GGUF_TINY = dict(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
                      num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 4, 8))
FLUX_GGUF_EASEL = {"transformer": {"axes_dims_rope": [4, 4, 8]}, "native_size": 64}


def tiny_flux_transformer(seed: int = 0, *, dev: bool = True):
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    return FluxTransformer2DModel(guidance_embeds=dev, **FLUX_GGUF_TINY).eval()


def write_gguf(path: Path, state: dict[str, torch.Tensor], qtype: str, *, arch: str,
               meta: dict | None = None) -> dict[str, str]:
    """`state` (original names) as a GGUF file; returns each tensor's stored type."""
    import gguf

    q = gguf.GGMLQuantizationType[qtype]
    block = gguf.GGML_QUANT_SIZES[q][0]
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch)
    if meta:
        writer.add_string("easel.config", json.dumps(meta))
    kinds = {}
    for name, t in state.items():
        a = t.detach().float().numpy()
        if a.ndim == 2 and a.shape[1] % block == 0:
            writer.add_tensor(name, gguf.quants.quantize(a, q), raw_dtype=q)
            kinds[name] = qtype
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
        _save(models / "Stable-diffusion" / "flux1-dev-tiny-w32.safetensors", state,
              {"easel.config": json.dumps(FLUX_GGUF_EASEL)})
    return out


def write_sd3_gguf(models: Path, qtype: str = "Q8_0", seed: int = 0, *, variant: str = "sd35-medium") -> Path:
    """The transformer of tiny_sd3_pipeline(seed) as models/Stable-diffusion/sd3.5_medium_tiny-<qtype>.gguf (its
    unquantized twin is write_sd3_split's sd35_medium_tiny.safetensors at the same seed)."""
    from tests.factories_families import SD3_TINY_EASEL, sd3_to_original, tiny_sd3_pipeline

    state = sd3_to_original(tiny_sd3_pipeline(seed, variant=variant).transformer.state_dict(), prefix="")
    out = models / "Stable-diffusion" / f"sd3.5_medium_tiny-{qtype}.gguf"
    write_gguf(out, state, qtype, arch="sd3", meta=SD3_TINY_EASEL)
    return out
