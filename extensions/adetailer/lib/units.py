"""ADetailer's arguments (`alwayson_scripts: {"ADetailer": {"args": [enable, skip_img2img, unit, ...]}}`), their
bounds, and ADetailer's infotext fields ("ADetailer model", "ADetailer prompt 2nd", …)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from webui.extensions.api import ScriptError

NONE = "None"
SUFFIXES = ("", " 2nd", " 3rd", " 4th", " 5th", " 6th", " 7th", " 8th", " 9th", " 10th")
MAX_TEXT = 10_000


class Unit(BaseModel):
    """One ADetailer tab. Field names and defaults are ADetailer's; fields it has that Easel doesn't use (mediapipe,
    ControlNet inside ADetailer, per-unit checkpoint/VAE/sampler) are ignored."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    ad_model: str = Field(NONE, max_length=255)
    ad_prompt: str = Field("", max_length=MAX_TEXT)
    ad_negative_prompt: str = Field("", max_length=MAX_TEXT)
    ad_confidence: float = Field(0.3, ge=0.0, le=1.0)
    ad_mask_k_largest: int = Field(0, ge=0, le=64)
    ad_mask_min_ratio: float = Field(0.0, ge=0.0, le=1.0)
    ad_mask_max_ratio: float = Field(1.0, ge=0.0, le=1.0)
    ad_dilate_erode: int = Field(4, ge=-128, le=128)
    ad_mask_blur: int = Field(4, ge=0, le=256)
    ad_denoising_strength: float = Field(0.4, ge=0.0, le=1.0)
    ad_inpaint_only_masked: bool = True
    ad_inpaint_only_masked_padding: int = Field(32, ge=0, le=1024)
    ad_use_inpaint_width_height: bool = False
    ad_inpaint_width: int = Field(512, ge=64, le=4096)
    ad_inpaint_height: int = Field(512, ge=64, le=4096)
    ad_use_steps: bool = False
    ad_steps: int = Field(28, ge=1, le=150)
    ad_use_cfg_scale: bool = False
    ad_cfg_scale: float = Field(7.0, ge=0.0, le=30.0)

    @property
    def enabled(self) -> bool:
        return self.ad_model.strip() not in ("", NONE, "none")

    def prompt_for(self, i: int, main: str, negative: bool = False) -> str | None:
        """ADetailer's prompt syntax: `[SEP]` gives each detection its own prompt (the last repeats), `[PROMPT]` is
        the job's prompt; empty: the job's own (None)."""
        raw = (self.ad_negative_prompt if negative else self.ad_prompt).strip()
        if not raw:
            return None
        parts = [p.strip() for p in raw.split("[SEP]")]
        return parts[min(i, len(parts) - 1)].replace("[PROMPT]", main)


def parse_args(args: dict[str, Any], names: tuple[str, ...]) -> tuple[bool, bool, list[Unit]]:
    """(enable, skip_img2img, units) from the named args. ADetailer's older clients send only unit dicts (no
    leading booleans): a dict where a boolean is expected is taken as the first unit."""
    values = [args.get(n) for n in names]
    flags: list[bool] = []
    while values and len(flags) < 2 and not isinstance(values[0], dict):
        value = values.pop(0)
        if value is not None and not isinstance(value, bool):
            raise ScriptError(f"ADetailer: argument {len(flags) + 1} must be true/false, got {type(value).__name__}")
        flags.append(True if value is None and not flags else bool(value))
    enable = flags[0] if flags else True
    skip_img2img = flags[1] if len(flags) > 1 else False
    units = []
    for i, raw in enumerate(v for v in values if v is not None):
        if not isinstance(raw, dict):
            raise ScriptError(f"ADetailer: unit {i + 1} must be an object of ad_* fields")
        try:
            units.append(Unit(**raw))
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise ScriptError(f"ADetailer unit {i + 1}: {where}: {first.get('msg')}") from None
    return enable, skip_img2img, units


def infotext(units: list[Unit], version: str) -> dict[str, Any]:
    """ADetailer's infotext fields, suffixed " 2nd", " 3rd" … from the second enabled tab on."""
    out: dict[str, Any] = {}
    for i, u in enumerate(units[: len(SUFFIXES)]):
        s = SUFFIXES[i]
        out[f"ADetailer model{s}"] = u.ad_model
        if u.ad_prompt:
            out[f"ADetailer prompt{s}"] = u.ad_prompt
        if u.ad_negative_prompt:
            out[f"ADetailer negative prompt{s}"] = u.ad_negative_prompt
        out[f"ADetailer confidence{s}"] = u.ad_confidence
        out[f"ADetailer dilate erode{s}"] = u.ad_dilate_erode
        out[f"ADetailer mask blur{s}"] = u.ad_mask_blur
        out[f"ADetailer denoising strength{s}"] = u.ad_denoising_strength
        out[f"ADetailer inpaint only masked{s}"] = u.ad_inpaint_only_masked
        out[f"ADetailer inpaint padding{s}"] = u.ad_inpaint_only_masked_padding
        if u.ad_use_inpaint_width_height:
            out[f"ADetailer inpaint width{s}"] = u.ad_inpaint_width
            out[f"ADetailer inpaint height{s}"] = u.ad_inpaint_height
        if u.ad_use_steps:
            out[f"ADetailer steps{s}"] = u.ad_steps
        if u.ad_use_cfg_scale:
            out[f"ADetailer CFG scale{s}"] = u.ad_cfg_scale
    if out:
        out["ADetailer version"] = version
    return out


FIELDS = {
    "model": ("ad_model", str),
    "prompt": ("ad_prompt", str),
    "negative prompt": ("ad_negative_prompt", str),
    "confidence": ("ad_confidence", float),
    "dilate erode": ("ad_dilate_erode", int),
    "mask blur": ("ad_mask_blur", int),
    "denoising strength": ("ad_denoising_strength", float),
    "inpaint only masked": ("ad_inpaint_only_masked", bool),
    "inpaint padding": ("ad_inpaint_only_masked_padding", int),
}


def from_infotext(params: dict[str, Any], count: int) -> list[dict[str, Any] | None]:
    """Each tab's ad_* values from a parsed infotext (None: the infotext has no such tab)."""
    out: list[dict[str, Any] | None] = []
    for i in range(count):
        s = SUFFIXES[i] if i < len(SUFFIXES) else None
        if s is None or f"ADetailer model{s}" not in params:
            out.append(None)
            continue
        unit: dict[str, Any] = {}
        for label, (key, kind) in FIELDS.items():
            raw = params.get(f"ADetailer {label}{s}")
            if raw is None:
                continue
            try:
                unit[key] = (str(raw).strip().lower() == "true") if kind is bool else kind(raw)
            except (TypeError, ValueError):
                continue
        out.append(unit)
    return out
