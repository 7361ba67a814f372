"""Live previews of latents during sampling."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

# Linear latent → RGB approximation for SD 1.x/2.x 4-channel latents (a published, widely used fit).
_SD_FACTORS = torch.tensor([[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264],
                            [-0.184, -0.271, -0.473]])


def approx_cheap(latent: torch.Tensor) -> Image.Image:
    """One latent (4, h, w) → a small RGB image, by a fixed linear map: no VAE call."""
    rgb = torch.einsum("chw,cr->hwr", latent.float().cpu(), _SD_FACTORS)
    arr = ((rgb + 1) * 127.5).clamp(0, 255).byte().numpy()
    return Image.fromarray(np.ascontiguousarray(arr))


@torch.no_grad()
def full_decode(vae, latent: torch.Tensor) -> Image.Image:
    x = vae.decode(latent[None].to(vae.device, vae.dtype) / vae.config.scaling_factor).sample[0]
    arr = ((x.float().clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).byte().cpu().numpy()
    return Image.fromarray(arr)


def make_preview(method: str, vae, latent: torch.Tensor) -> Image.Image:
    # The cheap fit only holds for SD's own 4-channel VAE latent space; other VAEs (such as the demo model's)
    # are decoded in full, which is affordable because such VAEs are small.
    small_vae = sum(p.numel() for p in vae.parameters()) < 5_000_000
    if method == "Full" or small_vae or latent.shape[0] != 4:
        return full_decode(vae, latent)
    return approx_cheap(latent)
