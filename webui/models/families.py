"""Typed model families and what is known about each without reading weights."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Family(str, enum.Enum):
    SD1 = "sd1"
    SD2 = "sd2"
    SDXL = "sdxl"
    SD3 = "sd3"  # SD 3 Medium, SD 3.5 Medium/Large (webui/models/family_sd3.py)
    FLUX = "flux"  # FLUX.1 dev/schnell (webui/models/family_flux.py)


# Native (training) resolution per family; a checkpoint may override it in its `easel.config` metadata.
NATIVE_SIZE = {Family.SD1: 512, Family.SD2: 768, Family.SDXL: 1024, Family.SD3: 1024, Family.FLUX: 1024}
# Family template folders under webui/models/configs/ (copies of the published diffusers configs).
TEMPLATE = {Family.SD1: "sd15", Family.SD2: "sd21v", Family.SDXL: "sdxl"}
DEFAULT_VAE_SCALE = {Family.SD1: 0.18215, Family.SD2: 0.18215, Family.SDXL: 0.13025}

# Where each part's weights sit in an A1111/LDM single file: the probe reads them, ldm_keys.py/ldm_openclip.py write
# them (here, below both, so neither imports the other for a name).
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."  # SD 1.x's CLIP-L
SD2_TEXT_PREFIX = "cond_stage_model.model."  # SD 2.x's OpenCLIP-H
SDXL_CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
SDXL_CLIP_G_PREFIX = "conditioner.embedders.1.model."


@dataclass
class ProbeResult:
    """What a checkpoint is, and the diffusers configs that build it."""

    family: Family
    inpainting: bool
    prediction_type: str
    native_size: int
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # component → config dict
    variant: str = ""  # the family's config template for SD3/FLUX: "flux-dev", "sd35-large", …
    modules: list[str] = field(default_factory=list)  # separate parts loaded with it (Forge's infotext "Module N")
    quantization: str = ""  # GGUF quant types of the transformer's weights ("Q4_0", "Q8_0+F16"); "" when unquantized

    @property
    def label(self) -> str:
        if self.family in (Family.SD3, Family.FLUX):
            from webui.models.family_flow import VARIANT_LABELS

            return VARIANT_LABELS.get(self.variant, self.family.value)
        name = {Family.SD1: "SD 1.x", Family.SD2: "SD 2.x", Family.SDXL: "SDXL"}[self.family]
        if self.family == Family.SD2 and self.prediction_type == "v_prediction":
            name += " (v)"
        return name + (" inpainting" if self.inpainting else "")
