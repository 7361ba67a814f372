"""Live previews of latents during sampling: A1111's `show_progress_type` methods.

- "Approx cheap": a fixed linear latent → RGB map, no network at all (decode cost ~0). SD 1.x/2.x and SDXL latents
  use the widely published 4×3 fits; any other VAE (the bundled demo model's f=4 VAE, say) gets its own map, fitted
  once per VAE by least squares from the encodings of flat colour patches.
- "TAESD": diffusers' `AutoencoderTiny` from `models/VAE-approx/` (A1111's taesd_decoder.pth / taesdxl_decoder.pth,
  .safetensors, or a diffusers folder), only for the SD/SDXL latent spaces it was trained on; when the file is
  missing or doesn't fit the model, previews fall back to "Approx cheap" and `preview_status` says why.
- "Full": the model's own VAE decode (slow on a CPU: a full decode per preview).

What is loaded or fitted for a VAE is kept in its `PreviewSource`; the generation services own one `PreviewSources`
(keyed weakly by the VAE object, so it lives and dies with the loaded model) and nothing here is module-level state.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

log = logging.getLogger("easel.preview")

METHODS = ("Approx cheap", "TAESD", "Full")
# Published linear latent → RGB fits (rows: latent channels; columns: R, G, B), for scaled latents.
SD_FACTORS = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))
SDXL_FACTORS = (
    (0.3448, 0.4168, 0.4395),
    (-0.1953, -0.0290, 0.0250),
    (0.1074, 0.0886, -0.0163),
    (-0.3730, -0.2499, -0.2088),
)
SD_SCALE, SDXL_SCALE = 0.18215, 0.13025


@dataclass
class PreviewSource:
    """Per-VAE preview state: where TAESD files live, and what was loaded or fitted for this VAE."""

    approx_dir: Path | None = None
    taesd: Any = None
    taesd_reason: str = ""  # why TAESD is not used (empty once loaded)
    linear: tuple[torch.Tensor, torch.Tensor] | None = None  # (weight C×3, bias 3)
    tried: set = field(default_factory=set)


class PreviewSources:
    """Each VAE's PreviewSource (`GenerationServices.previews`), held weakly by the VAE object."""

    def __init__(self) -> None:
        self._by_vae: weakref.WeakKeyDictionary[Any, PreviewSource] = weakref.WeakKeyDictionary()

    def get(self, vae) -> PreviewSource | None:
        return self._by_vae.get(vae) if vae is not None else None

    def attach(self, vae, approx_dir: Path | None) -> PreviewSource:
        """Tell this VAE's previews where `VAE-approx` is (run_batches calls this once per job)."""
        src = self._by_vae.get(vae)
        if src is None:
            src = self._by_vae[vae] = PreviewSource()
        if src.approx_dir != approx_dir:
            src.approx_dir, src.taesd, src.taesd_reason = approx_dir, None, ""
            src.tried.clear()
        return src


def latent_space(vae) -> str:
    """ "sd" | "sdxl" | "other": which published latent space this VAE encodes to (by channels and scale)."""
    cfg = vae.config
    if getattr(cfg, "latent_channels", 4) != 4 or len(getattr(cfg, "block_out_channels", ())) != 4:
        return "other"
    scale = float(getattr(cfg, "scaling_factor", 0))
    return "sd" if abs(scale - SD_SCALE) < 1e-4 else "sdxl" if abs(scale - SDXL_SCALE) < 1e-4 else "other"


def _scale_factor(vae) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


# --- Approx cheap ---------------------------------------------------------------------------------------------------


def linear_map(vae, src: PreviewSource) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the cheap map for this VAE: a published table, else a least-squares fit kept in `src`."""
    space = latent_space(vae)
    if space != "other":
        table = SD_FACTORS if space == "sd" else SDXL_FACTORS
        return torch.tensor(table), torch.zeros(3)
    if src.linear is None:
        src.linear = fit_linear_map(vae)
    return src.linear


@torch.no_grad()
def fit_linear_map(vae) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode 27 flat colour patches, regress RGB on the mean latent: the same kind of fit as the published tables,
    for a VAE that has none (one small encode per VAE, milliseconds for small VAEs)."""
    levels = torch.tensor([-0.8, 0.0, 0.8])
    colours = torch.cartesian_prod(levels, levels, levels)  # (27, 3) in [-1, 1]
    size = 8 * _scale_factor(vae)
    x = colours[:, :, None, None].expand(-1, -1, size, size).to(vae.device, vae.dtype)
    lat = vae.encode(x).latent_dist.mean.float().cpu() * float(vae.config.scaling_factor)
    c = lat.shape[-1] // 2
    feats = lat[:, :, c - 1 : c + 1, c - 1 : c + 1].mean(dim=(2, 3))  # the centre: away from the padding
    a = torch.cat([feats, torch.ones(len(feats), 1)], dim=1)
    sol = torch.linalg.lstsq(a, colours).solution  # (C + 1, 3)
    return sol[:-1].contiguous(), sol[-1].contiguous()


def approx_cheap(
    latent: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None, scale: int = 8
) -> Image.Image:
    """One latent (C, h, w) → an RGB image of the output size, by a fixed linear map: no VAE call."""
    weight = torch.tensor(SD_FACTORS) if weight is None else weight
    rgb = torch.einsum("chw,cr->hwr", latent.float().cpu(), weight)
    if bias is not None:
        rgb = rgb + bias
    arr = ((rgb + 1) * 127.5).clamp(0, 255).byte().numpy()
    image = Image.fromarray(np.ascontiguousarray(arr))
    return image.resize((image.width * scale, image.height * scale), Image.BILINEAR) if scale > 1 else image


# --- TAESD ----------------------------------------------------------------------------------------------------------


def taesd_candidates(approx_dir: Path, space: str) -> list[Path]:
    """A1111's file names first, then a diffusers folder (config.json + weights)."""
    stem = {"sd": "taesd", "sdxl": "taesdxl"}[space]
    return [approx_dir / f"{stem}_decoder.safetensors", approx_dir / f"{stem}_decoder.pth", approx_dir / stem]


def find_taesd(approx_dir: Path | None, vae) -> tuple[Path | None, str]:
    """The TAESD decoder for this VAE's latent space, or (None, why not)."""
    space = latent_space(vae)
    if space == "other":
        return None, "TAESD only fits the SD and SDXL latent spaces; this model's VAE has its own"
    if approx_dir is None:
        return None, "no VAE-approx folder configured"
    for path in taesd_candidates(approx_dir, space):
        if path.is_file() or (path / "config.json").is_file():
            return path, ""
    stem = taesd_candidates(approx_dir, space)[0].stem
    return None, f"no {stem}.safetensors/.pth (or diffusers folder) in {approx_dir}"


def load_taesd(path: Path):
    """diffusers' AutoencoderTiny with the decoder weights of `path` (A1111's decoder-only files or a folder)."""
    from diffusers import AutoencoderTiny

    if path.is_dir():
        return AutoencoderTiny.from_pretrained(str(path), local_files_only=True).eval()
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    model = AutoencoderTiny().eval()
    model.decoder.load_state_dict(decoder_keys(state))
    return model


def decoder_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """madebyollin's decoder keys ("1.weight", "3.conv.0.weight" …: index 0 is the clamp, which diffusers applies
    in forward()) → diffusers' DecoderTiny keys ("layers.0.weight" …). Keys already in diffusers' form pass."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("decoder.")
        if key.startswith("layers."):
            out[key] = value
            continue
        index, _, rest = key.partition(".")
        out[f"layers.{int(index) - 1}.{rest}"] = value
    return out


def taesd_for(vae, src: PreviewSource) -> Any:
    """The loaded TAESD for this VAE, or None (the reason is kept in its PreviewSource `src`)."""
    if src.taesd is not None or "taesd" in src.tried:
        return src.taesd
    src.tried.add("taesd")
    path, reason = find_taesd(src.approx_dir, vae)
    if path is None:
        src.taesd_reason = reason
        return None
    try:
        src.taesd = load_taesd(path)
        src.taesd_reason = ""
    except Exception as e:  # a bad file means cheap previews, never a failed job
        src.taesd_reason = f"could not load {path.name}: {type(e).__name__}: {e}"[:300]
        log.warning("TAESD previews unavailable: %s", src.taesd_reason)
    return src.taesd


@torch.no_grad()
def taesd_decode(taesd, latent: torch.Tensor) -> Image.Image:
    x = taesd.decode(latent[None].float().cpu()).sample[0]
    return _to_pil(x)


# --- Full -----------------------------------------------------------------------------------------------------------


@torch.no_grad()
def full_decode(vae, latent: torch.Tensor) -> Image.Image:
    x = vae.decode(latent[None].to(vae.device, vae.dtype) / vae.config.scaling_factor).sample[0]
    return _to_pil(x)


def _to_pil(x: torch.Tensor) -> Image.Image:
    arr = ((x.float().clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).byte().cpu().numpy()
    return Image.fromarray(arr)


def make_preview(method: str, vae, latent: torch.Tensor, src: PreviewSource | None = None) -> Image.Image:
    """The preview image of one latent (C, h, w) by `method` (show_progress_type), at the output size. `src`: the
    VAE's PreviewSource (what was loaded or fitted for it; without one, nothing is kept)."""
    src = src if src is not None else PreviewSource()
    if method == "Full":
        return full_decode(vae, latent)
    if method == "TAESD":
        taesd = taesd_for(vae, src)
        if taesd is not None:
            return taesd_decode(taesd, latent)
    weight, bias = linear_map(vae, src)
    return approx_cheap(latent, weight, bias, scale=_scale_factor(vae))


def preview_status(
    setting: str, vae=None, approx_dir: Path | None = None, src: PreviewSource | None = None
) -> dict[str, Any]:
    """What /easel/v1/system reports: the setting, the method actually used for the loaded model (`src`: its VAE's
    PreviewSource, when previews were made), and why."""
    status: dict[str, Any] = {"setting": setting, "method": setting, "reason": None}
    if setting == "TAESD":
        if vae is None:
            path, reason = None, "no model loaded"
        else:
            if src is not None and src.taesd is not None:
                return status
            if src is not None and src.taesd_reason:
                path, reason = None, src.taesd_reason
            else:
                path, reason = find_taesd(approx_dir, vae)
        if path is None:
            status.update(method="Approx cheap", reason=reason)
    if status["method"] == "Approx cheap" and vae is not None:
        status["approx_map"] = "published table" if latent_space(vae) != "other" else "fitted to this VAE"
    return status
