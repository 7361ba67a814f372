"""`--no-half-vae`: an fp32 VAE next to a half-precision (fp16/bf16) UNet and text encoder.

diffusers' SD 1.x/2.x pipelines hand the VAE latents in the UNet's dtype and put its encodings straight into the
UNet, so a VAE of another dtype fails with a dtype mismatch (only the SDXL pipelines upcast on their own). The bridge
casts at the VAE's two doors: `decode` takes latents of any dtype (the image comes out in the VAE's precision, which
is the point of the flag), and `encode` hands back its distribution in the caller's dtype. The model runtime puts
these on a VAE once, when the manager picks it (runtime.py `bridge_vae_dtype`); nothing when the dtypes agree.
"""

from __future__ import annotations

from typing import Any, Callable

import torch


KEY = "easel.vae_dtype_bridge"  # the runtime's override key for both doors


def needed(vae: Any, model_dtype: torch.dtype) -> bool:
    return vae.dtype != model_dtype and hasattr(vae, "encode") and hasattr(vae, "decode")


def decode_any(vae: Any, decode: Callable) -> Callable:
    """`decode` taking latents of any dtype."""

    def run(z, *args, **kwargs):
        return decode(z.to(vae.dtype), *args, **kwargs)

    return run


def encode_back(vae: Any, encode: Callable) -> Callable:
    """`encode` handing back its latent distribution in the dtype of the image it was given."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
    from diffusers.models.modeling_outputs import AutoencoderKLOutput

    def run(x, *args, **kwargs):
        out = encode(x.to(vae.dtype), *args, **kwargs)
        dist = out.latent_dist if hasattr(out, "latent_dist") else out[0]
        if not isinstance(dist, DiagonalGaussianDistribution):
            return out
        cast = DiagonalGaussianDistribution(dist.parameters.to(x.dtype), deterministic=dist.deterministic)
        return AutoencoderKLOutput(latent_dist=cast) if hasattr(out, "latent_dist") else (cast,)

    return run
