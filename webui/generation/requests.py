"""Typed requests with A1111's field names and defaults, validated once at the edge (API or UI).

Every number a remote user can send is bounded here (and NaN/±Infinity refused), so a request that would take the
server down is a 422 before any work starts; the job's total cost is checked in webui/generation/cost.py."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from webui.errors import InvalidRequest
from webui.generation.slg import parse_layers

MAX_SEED = 2**63 - 1  # torch's generators take any 64-bit seed; seed + batch index + ENSD must stay below 2**64
MAX_SIDE = 16384  # pixels, for every width/height-like field (the pixel count is held to max_generation_pixels)
MAX_STEPS = 1000
# A1111's hires dropdown labels for "as the first pass" (its API takes them too): None once the request is validated
SAME_SAMPLER, SAME_SCHEDULER, SAME_CHECKPOINT = "Use same sampler", "Use same scheduler", "Use same checkpoint"


def size_or_native(req: Any, native: int) -> tuple[int, int]:
    """(width, height) of a request, the model's native size for a side left unset (0/None: A1111's default)."""
    return req.width or native, req.height or native


def latent_floor(size: int) -> int:
    """A1111 floors an image side to the latent grid: the multiple of 8 at or below it, at least 8."""
    return max(8, size - size % 8)


def hires_size(width: int, height: int, scale: float, resize_x: int = 0, resize_y: int = 0) -> tuple[int, int]:
    """The second pass' size: "Resize width/height to" when given (the other side keeps the aspect ratio), else
    the base size times `scale`; floored to multiples of 8. The txt2img tab shows it ("from 512×512 to …")."""
    if resize_x > 0 or resize_y > 0:
        w = resize_x if resize_x > 0 else round(resize_y * width / height)
        h = resize_y if resize_y > 0 else round(resize_x * height / width)
    else:
        if scale <= 0:
            raise InvalidRequest("hr_scale must be positive")
        w, h = int(width * scale), int(height * scale)
    return latent_floor(w), latent_floor(h)


class Txt2ImgRequest(BaseModel):
    """A1111's `StableDiffusionTxt2ImgProcessingAPI` fields. Unknown fields are ignored, as A1111 clients send many."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] = Field(default_factory=list)
    seed: int = Field(-1, ge=-1, le=MAX_SEED)  # -1: random
    subseed: int = Field(-1, ge=-1, le=MAX_SEED)
    subseed_strength: float = Field(0.0, ge=0.0, le=1.0)
    seed_resize_from_h: int = Field(-1, ge=-1, le=MAX_SIDE)
    seed_resize_from_w: int = Field(-1, ge=-1, le=MAX_SIDE)
    sampler_name: Optional[str] = None
    sampler_index: Optional[str] = None  # deprecated alias of sampler_name
    scheduler: Optional[str] = None
    batch_size: int = Field(1, ge=1, le=64)
    n_iter: int = Field(1, ge=1, le=1000)
    steps: int = Field(50, ge=1, le=MAX_STEPS)
    cfg_scale: float = Field(7.0, ge=0.0, le=100.0)
    distilled_cfg_scale: float = Field(3.5, ge=0.0, le=100.0)  # Forge's FLUX dev guidance ("Distilled CFG Scale")
    slg_scale: float = Field(0.0, ge=0.0, le=20.0)  # SD 3/3.5 skip-layer guidance (generation/slg.py); 0: off
    slg_layers: list[int] = Field(default_factory=lambda: [7, 8, 9])  # or "7,8,9"; SD 3.5 Medium's recommended
    slg_start: float = Field(0.01, ge=0.0, le=1.0)  # fractions of the steps
    slg_end: float = Field(0.2, ge=0.0, le=1.0)
    width: Optional[int] = Field(None, ge=8, le=MAX_SIDE)  # None: the checkpoint's native size
    height: Optional[int] = Field(None, ge=8, le=MAX_SIDE)
    restore_faces: Optional[bool] = None
    tiling: Optional[bool] = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: Optional[float] = Field(None, ge=0.0, le=1.0)
    denoising_strength: Optional[float] = Field(None, ge=0.0, le=1.0)
    s_min_uncond: Optional[float] = Field(None, ge=0.0, le=100.0)  # A1111's sampler parameters (sliders 0..<100)
    s_churn: Optional[float] = Field(None, ge=0.0, le=100.0)
    s_tmax: Optional[float] = Field(None, ge=0.0, le=1000.0)
    s_tmin: Optional[float] = Field(None, ge=0.0, le=1000.0)
    s_noise: Optional[float] = Field(None, ge=0.0, le=10.0)
    override_settings: dict[str, Any] = Field(default_factory=dict)
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: Optional[str] = None
    refiner_switch_at: Optional[float] = Field(None, ge=0.0, le=1.0)
    disable_extra_networks: bool = False
    firstpass_image: Optional[str] = None
    comments: Optional[dict[str, Any]] = None
    enable_hr: bool = False
    firstphase_width: int = Field(0, ge=0, le=MAX_SIDE)
    firstphase_height: int = Field(0, ge=0, le=MAX_SIDE)
    hr_scale: float = Field(2.0, gt=0.0, le=16.0)  # the target size is also held to max_generation_pixels
    hr_upscaler: Optional[str] = None
    hr_second_pass_steps: int = Field(0, ge=0, le=MAX_STEPS)  # 0: the first pass's steps
    hr_resize_x: int = Field(0, ge=0, le=MAX_SIDE)
    hr_resize_y: int = Field(0, ge=0, le=MAX_SIDE)
    hr_checkpoint_name: Optional[str] = None
    hr_sampler_name: Optional[str] = None
    hr_scheduler: Optional[str] = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    force_task_id: Optional[str] = None
    script_name: Optional[str] = None
    script_args: list[Any] | dict[str, Any] = Field(default_factory=list)  # a dict: arguments by name
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    infotext: Optional[str] = None

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, v: Optional[int]) -> Optional[int]:
        return None if v is None else latent_floor(v)

    @field_validator("hr_sampler_name", "hr_scheduler", "hr_checkpoint_name")
    @classmethod
    def _same_as_first_pass(cls, v: Optional[str]) -> Optional[str]:
        """The hires pass's own sampler / schedule type / checkpoint; None (empty or A1111's "Use same …" label):
        the first pass's. The hires code reads None only."""
        return None if v is None or not v.strip() or v in (SAME_SAMPLER, SAME_SCHEDULER, SAME_CHECKPOINT) else v

    @field_validator("slg_layers", mode="before")
    @classmethod
    def _slg_layers(cls, v: Any) -> list[int]:
        return parse_layers(v)

    @model_validator(mode="after")
    def _slg_window(self) -> "Txt2ImgRequest":
        if self.slg_scale > 0 and not self.slg_start < self.slg_end:
            raise ValueError(f"slg_start ({self.slg_start:g}) must be below slg_end ({self.slg_end:g})")
        return self

    @property
    def sampler(self) -> Optional[str]:
        return self.sampler_name or self.sampler_index


class GenerationResult(BaseModel):
    """What one job produced. `images` are PIL images (not serialised); `info` is A1111's info dict."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    images: list[Any] = Field(default_factory=list)
    infotexts: list[str] = Field(default_factory=list)
    paths: list[str] = Field(default_factory=list)
    info: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    interrupted: bool = False


class Img2ImgRequest(Txt2ImgRequest):
    """A1111's `StableDiffusionImg2ImgProcessingAPI`: txt2img's fields plus the init image and inpainting ones."""

    init_images: list[str] = Field(default_factory=list)  # base64 (or data: URLs) at the API edge
    resize_mode: int = Field(0, ge=0, le=3)
    image_cfg_scale: Optional[float] = Field(None, ge=0.0, le=100.0)
    mask: Optional[str] = None
    mask_blur_x: int = Field(4, ge=0, le=256)
    mask_blur_y: int = Field(4, ge=0, le=256)
    mask_blur: Optional[int] = Field(None, ge=0, le=256)
    mask_round: bool = True
    inpainting_fill: int = Field(0, ge=0, le=3)
    inpaint_full_res: bool = False
    inpaint_full_res_padding: int = Field(32, ge=0, le=1024)
    inpainting_mask_invert: int = Field(0, ge=0, le=1)
    initial_noise_multiplier: Optional[float] = Field(None, ge=0.0, le=2.0)
    latent_mask: Optional[str] = None
    include_init_images: bool = False
    denoising_strength: float = Field(0.75, ge=0.0, le=1.0)

    @property
    def blur(self) -> int:
        return self.mask_blur if self.mask_blur is not None else max(self.mask_blur_x, self.mask_blur_y)
