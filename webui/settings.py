"""Typed options persisted to config.json (A1111's option names), and per-request overlays.

`Options` is owned by the Application. A request's `override_settings` never mutates it: generation reads through an
`OptionsView` that layers the overrides on top, so "applied for one request, then restored" holds by construction.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from webui.errors import InvalidRequest
from webui.fsutil import atomic_write_json


@dataclass(frozen=True)
class OptionDef:
    key: str
    default: Any
    label: str
    section: str
    kind: type = str
    choices: Callable[[], list[str]] | tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None


def _opts() -> list[OptionDef]:
    o = OptionDef
    return [
        o("sd_model_checkpoint", "", "Stable Diffusion checkpoint", "Stable Diffusion"),
        o("sd_checkpoints_limit", 2, "Checkpoints to keep in RAM", "Stable Diffusion", int, minimum=1, maximum=10, step=1),
        o("sd_vae", "Automatic", "SD VAE", "Stable Diffusion"),
        o("CLIP_stop_at_last_layers", 1, "Clip skip", "Stable Diffusion", int, minimum=1, maximum=12, step=1),
        o("emphasis", "Original", "Emphasis mode for (word:1.1)", "Stable Diffusion",
          choices=("Original", "No norm", "None")),
        o("comma_padding_backtrack", 20, "Prompt word wrap length limit (tokens)", "Stable Diffusion", int,
          minimum=0, maximum=74, step=1),
        o("use_old_scheduling", False, "Use old prompt editing timelines", "Compatibility", bool),
        o("eta_noise_seed_delta", 0, "Eta noise seed delta (ENSD)", "Sampler parameters", int, minimum=0),
        o("eta_ancestral", 1.0, "Eta for ancestral samplers", "Sampler parameters", float, minimum=0, maximum=1, step=0.01),
        o("txt2img_default_sampler", "Euler a", "Default sampler", "Sampler parameters"),
        o("txt2img_default_steps", 20, "Default sampling steps", "Sampler parameters", int, minimum=1, maximum=150, step=1),
        o("samples_save", True, "Always save all generated images", "Saving images", bool),
        o("samples_format", "png", "File format for images", "Saving images", choices=("png", "jpg", "webp")),
        o("samples_filename_pattern", "", "Images filename pattern ([seed] when empty)", "Saving images"),
        o("save_to_dirs", True, "Save images to a date subdirectory", "Saving images", bool),
        o("grid_save", True, "Always save all generated image grids", "Saving images", bool),
        o("grid_format", "png", "File format for grids", "Saving images", choices=("png", "jpg", "webp")),
        o("return_grid", True, "Show grid in gallery", "Saving images", bool),
        o("enable_pnginfo", True, "Save text information about generation parameters as chunks to png files", "Saving images", bool),
        o("outdir_samples", "", "Output directory for images; if empty, defaults to three directories below", "Paths"),
        o("outdir_txt2img_samples", "outputs/txt2img-images", "Output directory for txt2img images", "Paths"),
        o("outdir_img2img_samples", "outputs/img2img-images", "Output directory for img2img images", "Paths"),
        o("outdir_extras_samples", "outputs/extras-images", "Output directory for images from extras tab", "Paths"),
        o("outdir_txt2img_grids", "outputs/txt2img-grids", "Output directory for txt2img grids", "Paths"),
        o("outdir_img2img_grids", "outputs/img2img-grids", "Output directory for img2img grids", "Paths"),
        o("live_previews_enable", True, "Show live previews of the created image", "Live previews", bool),
        o("show_progress_every_n_steps", 5, "Live preview display period (steps)", "Live previews", int, minimum=-1, maximum=32, step=1),
        o("show_progress_type", "Approx cheap", "Live preview method (Approx cheap: a linear map, ~free; TAESD: "
          "models/VAE-approx/taesd*_decoder, else Approx cheap; Full: the VAE, slow on a CPU)", "Live previews",
          choices=("Approx cheap", "TAESD", "Full")),
        o("cpu_precision", "Automatic", "CPU precision of the UNet (Automatic: bf16 where the CPU has it natively and the "
          "model is large enough to gain)", "Optimizations", choices=("Automatic", "bf16", "fp32")),
        o("cpu_vae_precision", "fp32", "CPU precision of the VAE decode (bf16: ~3× faster at 512² where the CPU has "
          "native bf16; matched fp32 at > 50 dB PSNR on the demo VAE; recorded as \"VAE precision\")",
          "Optimizations", choices=("fp32", "bf16")),
        o("cpu_compile", False, "torch.compile the UNet on the CPU (slow first image per size; falls back to eager "
          "on any error)", "Optimizations", bool),
        o("vae_tiling_min_pixels", 1024 * 1024, "Decode with a tiled VAE above this many pixels (0: never)",
          "Optimizations", int, minimum=0),
        o("max_generation_pixels", 2048 * 2048, "Largest width × height a request may ask for", "Limits", int, minimum=64 * 64),
        o("max_image_pixels", 4096 * 4096, "Largest decoded input image (pixels)", "Limits", int, minimum=64 * 64),
        o("api_enable_requests", False, "Allow http(s) image URLs in API requests", "API", bool),
    ]


OPTION_DEFS: dict[str, OptionDef] = {d.key: d for d in _opts()}


def coerce(d: OptionDef, value: Any) -> Any:
    """Validate one option value; a wrong type or range is an InvalidRequest naming the option."""
    try:
        if d.kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "false"):
                value = value.lower() == "true"
            if not isinstance(value, bool):
                raise TypeError
        elif d.kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            value = int(value)
        elif d.kind is list:
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise TypeError
            value = list(value)
        elif d.kind is float:
            if isinstance(value, bool):
                raise TypeError
            value = float(value)
        elif not isinstance(value, str):
            raise TypeError
    except (TypeError, ValueError):
        raise InvalidRequest(f"option {d.key}: expected {d.kind.__name__}, got {value!r}") from None
    if d.minimum is not None and value < d.minimum:
        raise InvalidRequest(f"option {d.key}: {value} is too small (minimum {d.minimum})")
    if d.maximum is not None and value > d.maximum:
        raise InvalidRequest(f"option {d.key}: {value} is too large (maximum {d.maximum})")
    if isinstance(d.choices, tuple) and value not in d.choices:
        raise InvalidRequest(f"option {d.key}: {value!r} is not one of {list(d.choices)}")
    return value


class Options:
    """The persisted options. Unknown keys found in config.json (other tools', extensions') are kept as they are."""

    def __init__(self, file: Path, defs: Mapping[str, OptionDef] | None = None):
        self.file = file
        self.defs: dict[str, OptionDef] = dict(defs or OPTION_DEFS)
        self._lock = threading.RLock()
        self._values: dict[str, Any] = {}
        if file.exists():
            try:
                self._values = json.loads(file.read_text())
            except (OSError, json.JSONDecodeError):
                self._values = {}

    def add_definition(self, d: OptionDef) -> None:
        with self._lock:
            self.defs[d.key] = d

    def get(self, key: str) -> Any:
        with self._lock:
            if key in self._values:
                return self._values[key]
            if key in self.defs:
                return self.defs[key].default
        raise KeyError(key)

    def __getattr__(self, key: str) -> Any:  # opts.sd_vae, as A1111 users write it
        if key.startswith("_") or key in ("file", "defs"):
            raise AttributeError(key)
        try:
            return self.get(key)
        except KeyError:
            raise AttributeError(key) from None

    def validate(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for k, v in changes.items():
            d = self.defs.get(k)
            out[k] = coerce(d, v) if d else v
        return out

    def set(self, changes: Mapping[str, Any], *, persist: bool = True) -> None:
        clean = self.validate(changes)
        with self._lock:
            self._values.update(clean)
            if persist:
                atomic_write_json(self.file, self._values)

    def all(self) -> dict[str, Any]:
        with self._lock:
            out = {k: d.default for k, d in self.defs.items()}
            out.update(self._values)
            return out

    def view(self, overrides: Mapping[str, Any] | None = None) -> "OptionsView":
        return OptionsView(self, self.validate(overrides or {}))


@dataclass
class OptionsView:
    """Read-only options for one request: its overrides over the persisted values."""

    base: Options
    overrides: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str) -> Any:
        return self.overrides[key] if key in self.overrides else self.base.get(key)

    def __getattr__(self, key: str) -> Any:
        if key in ("base", "overrides") or key.startswith("_"):
            raise AttributeError(key)
        return self.get(key)
