"""VAE tiling and slicing per request: diffusers' own `enable_tiling()` / `enable_slicing()` on the shared VAE.

Tiling (decode, and encode for img2img, in overlapping tiles blended at the seams) bounds the VAE's peak memory
at large sizes, where a full-frame decode on a CPU needs many GB; it changes pixels slightly, so it is switched on
only above `vae_tiling_min_pixels` and recorded in the infotext (`VAE tiling: True`). Slicing (one image of the
batch at a time) only lowers peak memory and leaves the result unchanged, so it is on for every batch > 1 and not
recorded. Both are set on every request, because the VAE object is shared by every request on this model.
"""

from __future__ import annotations

from typing import Any


def tiling_wanted(width: int, height: int, min_pixels: int) -> bool:
    """Tile when the image is larger than the threshold; 0 turns tiling off."""
    return min_pixels > 0 and width * height > min_pixels


def configure_vae_memory(vae, width: int, height: int, batch_size: int, min_pixels: int) -> dict[str, Any]:
    """Set tiling and slicing on `vae` for this size; returns the infotext fields to add (empty when untiled)."""
    tiled = tiling_wanted(width, height, min_pixels) and hasattr(vae, "enable_tiling")
    if hasattr(vae, "enable_tiling"):
        vae.enable_tiling() if tiled else vae.disable_tiling()
    if hasattr(vae, "enable_slicing"):
        vae.enable_slicing() if batch_size > 1 else vae.disable_slicing()
    return {"VAE tiling": True} if tiled else {}


def vae_memory_status(vae) -> dict[str, Any]:
    """What /easel/v1/system reports: the VAE's current tiling/slicing state and its tile size."""
    if vae is None:
        return {"tiling": None, "slicing": None}
    return {
        "tiling": bool(getattr(vae, "use_tiling", False)),
        "slicing": bool(getattr(vae, "use_slicing", False)),
        "tile_pixels": getattr(vae, "tile_sample_min_size", None),
    }
