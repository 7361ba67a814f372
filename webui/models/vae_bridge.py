"""`--no-half-vae`: an fp32 VAE next to a half-precision (fp16/bf16) UNet and text encoder.

diffusers' SD 1.x/2.x pipelines hand the VAE latents in the UNet's dtype and put its encodings straight into the
UNet, so a VAE of another dtype fails with a dtype mismatch (only the SDXL pipelines upcast on their own). The bridge
casts at the VAE's two doors: `decode` takes latents of any dtype (the image comes out in the VAE's precision, which
is the point of the flag), and `encode` hands back its distribution in the caller's dtype. Installed once per VAE
object, a no-op when the dtypes already agree.
"""

from __future__ import annotations

import torch


def bridge_vae_dtype(vae, model_dtype: torch.dtype) -> bool:
    """Make `vae` usable next to a model in `model_dtype`; True when a bridge is (or already was) installed."""
    if getattr(vae, "_easel_dtype_bridge", False):
        return True
    if vae.dtype == model_dtype or not hasattr(vae, "encode") or not hasattr(vae, "decode"):
        return False
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
    from diffusers.models.modeling_outputs import AutoencoderKLOutput

    encode, decode = vae.encode, vae.decode

    def decode_any(z, *args, **kwargs):
        return decode(z.to(vae.dtype), *args, **kwargs)

    def encode_back(x, *args, **kwargs):
        out = encode(x.to(vae.dtype), *args, **kwargs)
        dist = out.latent_dist if hasattr(out, "latent_dist") else out[0]
        if not isinstance(dist, DiagonalGaussianDistribution):
            return out
        cast = DiagonalGaussianDistribution(dist.parameters.to(x.dtype), deterministic=dist.deterministic)
        return AutoencoderKLOutput(latent_dist=cast) if hasattr(out, "latent_dist") else (cast,)

    vae.decode, vae.encode = decode_any, encode_back
    vae._easel_dtype_bridge = True
    return True
