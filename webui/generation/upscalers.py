"""Upscalers: the built-in pixel ones, A1111's latent modes, and model files in models/ESRGAN & co.

Upscaler model files are listed even when they can't be used, with the reason (spandrel missing, a load error):
never faked, never hidden. They run through spandrel (webui/generation/upscaler_models.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from webui.errors import InvalidRequest
from webui.generation.upscaler_models import load_model, missing_reason, run_model

# A1111's latent upscale modes → (torch interpolate mode, antialias)
LATENT_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
PIXEL = {"None": None, "Lanczos": Image.LANCZOS, "Nearest": Image.NEAREST}
MODEL_DIRS = ("ESRGAN", "RealESRGAN", "SwinIR", "DAT", "ScuNET", "HAT")
MODEL_EXTENSIONS = (".pth", ".pt", ".safetensors")


@dataclass(frozen=True)
class UpscalerInfo:
    name: str
    path: Path | None = None
    scale: float = 4.0
    error: str | None = None  # why a model file can't be used

    def api(self) -> dict:
        return {
            "name": self.name,
            "model_name": self.path.stem if self.path else None,
            "model_path": str(self.path) if self.path else None,
            "model_url": None,
            "scale": self.scale,
            "error": self.error,
        }


def list_upscalers(models_dir: Path) -> list[UpscalerInfo]:
    out = [UpscalerInfo(name, scale=1.0 if name == "None" else 4.0) for name in PIXEL]
    reason = missing_reason()
    for sub in MODEL_DIRS:
        folder = models_dir / sub
        if folder.is_dir():
            for p in sorted(folder.rglob("*")):
                if p.suffix.lower() in MODEL_EXTENSIONS:
                    out.append(UpscalerInfo(p.stem, path=p, error=reason))
    return out


def find_upscaler(name: str | None, models_dir: Path) -> UpscalerInfo:
    if name is None or name == "":
        return UpscalerInfo("None")
    for u in list_upscalers(models_dir):
        if u.name.lower() == name.lower():
            if u.error:
                raise InvalidRequest(f"upscaler {name!r} can't be used: {u.error}")
            return u
    valid = [u.name for u in list_upscalers(models_dir)] + list(LATENT_MODES)
    raise InvalidRequest(f"unknown upscaler {name!r}; valid: {', '.join(valid)}")


def upscale_image(
    image: Image.Image, upscaler: UpscalerInfo, width: int, height: int, loaded: dict[Path, Any] | None = None
) -> Image.Image:
    """Resize to exactly width×height with a pixel upscaler ("None" also resizes, with Lanczos, as A1111 does).
    `loaded` (path → model) is the caller's per-request cache: a batch reads a model file once, not per image."""
    if upscaler.path is not None:
        loaded = {} if loaded is None else loaded
        if upscaler.path not in loaded:
            loaded[upscaler.path] = _load_model(upscaler)
        image = run_model(loaded[upscaler.path], image)
    mode = PIXEL.get(upscaler.name) or Image.LANCZOS
    return image.convert("RGB").resize((width, height), mode) if image.size != (width, height) else image


def upscale_latents(latents: torch.Tensor, mode: str, height: int, width: int) -> torch.Tensor:
    interp, antialias = LATENT_MODES[mode]
    kwargs = {"antialias": antialias} if interp in ("bilinear", "bicubic") else {}
    return F.interpolate(latents, size=(height, width), mode=interp, **kwargs)


def _load_model(upscaler: UpscalerInfo):
    assert upscaler.path is not None  # a model upscaler has its file
    try:
        return load_model(upscaler.path)
    except ValueError as e:  # not an upscaler, unreadable: the user's file, a clear 4xx
        raise InvalidRequest(f"upscaler {upscaler.name!r} can't be used: {e}") from None
