"""Which base model a LoRA was made for, and whether it fits the loaded checkpoint (the Extra networks cards).

The base comes, first to last, from A1111's user metadata (`<name>.json` "sd version": SD1, SD2, SDXL), kohya's
`ss_base_model_version` header field (sd_v1, sd_v2[_v], sdxl_base_v1-0, sd3, flux1, …) and the file's key names
(catalog.detect_family: FLUX.1, SD 3, or a UNet of unknown version)."""

from __future__ import annotations

from typing import Any

LABELS = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL", "sd3": "SD 3", "flux": "FLUX.1", "sd": "SD (UNet)"}
UNET_FAMILIES = ("sd1", "sd2", "sdxl")  # what a UNet LoRA of unknown version may fit
_USER_VERSIONS = {"sd1": "sd1", "sd2": "sd2", "sdxl": "sdxl"}
# ss_base_model_version prefixes, most specific first
_KOHYA_PREFIXES = (("sdxl", "sdxl"), ("sd_v1", "sd1"), ("sd_v2", "sd2"), ("sd3", "sd3"), ("flux", "flux"))


def lora_base(key_family: str | None, metadata: dict[str, Any], user: dict[str, Any]) -> str | None:
    """One of LABELS' keys, or None when nothing tells."""
    version = str(user.get("sd version") or "").strip().lower()
    if version in _USER_VERSIONS:
        return _USER_VERSIONS[version]
    kohya = str(metadata.get("ss_base_model_version") or "").strip().lower()
    for prefix, base in _KOHYA_PREFIXES:
        if kohya.startswith(prefix):
            return base
    return key_family if key_family in LABELS else None


def unfit_reason(base: str | None, active_family: str | None, active_label: str = "") -> str | None:
    """Why a LoRA made for `base` does not fit the loaded checkpoint (family value `active_family`), or None when it
    fits or either side is unknown."""
    if base is None or active_family is None:
        return None
    if base == active_family or (base == "sd" and active_family in UNET_FAMILIES):
        return None
    loaded = active_label or LABELS.get(active_family, active_family)
    return f"Made for {LABELS[base]}; the loaded checkpoint is {loaded}"
