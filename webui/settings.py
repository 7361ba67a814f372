"""Typed options persisted to config.json (A1111's option names), and per-request overlays.

`Options` is owned by the Application. A request's `override_settings` never mutates it: generation reads through an
`OptionsView` that layers the overrides on top, so "applied for one request, then restored" holds by construction.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from webui.errors import InvalidRequest
from webui.fsutil import atomic_write_bytes, atomic_write_text
from webui.option_policy import JSON_SAFE_INT, MAX_LIST, MAX_TEXT, OptionPolicy, check_option, check_unknown

log = logging.getLogger("easel.settings")
MAX_UNKNOWN_KEYS = 2000  # undeclared keys kept in config.json (A1111 has about 500 options)


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
    path: bool = False  # names a folder/file on the server: read-only when exposed (see option_policy)
    reload_ui: bool = False  # shown in the page's layout: takes effect after Settings → "Reload UI"


GUARD_MAX_PIXELS = 8192 * 8192  # the most any pixel limit may be raised to (a 67-megapixel image)


def _opts() -> list[OptionDef]:
    o = OptionDef
    return [
        o("sd_model_checkpoint", "", "Stable Diffusion checkpoint", "Stable Diffusion"),
        # A1111's option: the settings shown in the top bar (any option's name; unknown names are left out)
        o(
            "quicksettings_list",
            ["sd_model_checkpoint"],
            "Quicksettings list (settings pinned to the top bar)",
            "User interface",
            list,
            reload_ui=True,
        ),
        o(
            "sd_checkpoints_limit",
            2,
            "Checkpoints to keep in RAM",
            "Stable Diffusion",
            int,
            minimum=1,
            maximum=10,
            step=1,
        ),
        # a byte budget on top of A1111's count (#18): an SD 3.5 Large or FLUX model is many SD 1.x ones in size
        o(
            "sd_checkpoints_ram_mb",
            0,
            "RAM for cached checkpoints, in MB (0: only the count above; the active model always stays)",
            "Stable Diffusion",
            int,
            minimum=0,
            maximum=4 * 2**20,
            step=256,
        ),
        o("sd_vae", "Automatic", "SD VAE", "Stable Diffusion"),
        # Forge's top-bar "VAE / Text Encoder" choice for SD3/FLUX transformer files (file names; empty: automatic)
        o("forge_additional_modules", [], "VAE / Text Encoder (SD3, FLUX)", "Stable Diffusion", list),
        o(
            "t5_max_length",
            0,
            "T5 max length in tokens (SD3, FLUX; 0: the model's own: FLUX dev 512, schnell 256, SD 3 256)",
            "Stable Diffusion",
            int,
            choices=(0, 256, 512),
        ),
        o("CLIP_stop_at_last_layers", 1, "Clip skip", "Stable Diffusion", int, minimum=1, maximum=12, step=1),
        o(
            "emphasis",
            "Original",
            "Emphasis mode for (word:1.1)",
            "Stable Diffusion",
            choices=("Original", "No norm", "None"),
        ),
        o(
            "comma_padding_backtrack",
            20,
            "Prompt word wrap length limit (tokens)",
            "Stable Diffusion",
            int,
            minimum=0,
            maximum=74,
            step=1,
        ),
        o("use_old_scheduling", False, "Use old prompt editing timelines", "Compatibility", bool),
        o(
            "flow_shift",
            0.0,
            "Shift for SD3/FLUX sampling (0: the model's own; FLUX dev's follows the image size)",
            "Sampler parameters",
            float,
            minimum=0,
            maximum=100,
            step=0.05,
        ),
        o(
            "eta_noise_seed_delta",
            0,
            "Eta noise seed delta (ENSD)",
            "Sampler parameters",
            int,
            minimum=0,
            maximum=2**32 - 1,
        ),
        o(
            "eta_ancestral",
            1.0,
            "Eta for ancestral samplers",
            "Sampler parameters",
            float,
            minimum=0,
            maximum=1,
            step=0.01,
        ),
        o("txt2img_default_sampler", "Euler a", "Default sampler", "Sampler parameters"),
        o(
            "txt2img_default_steps",
            20,
            "Default sampling steps",
            "Sampler parameters",
            int,
            minimum=1,
            maximum=150,
            step=1,
        ),
        o("samples_save", True, "Always save all generated images", "Saving images", bool),
        o("samples_format", "png", "File format for images", "Saving images", choices=("png", "jpg", "webp")),
        o("samples_filename_pattern", "", "Images filename pattern ([seed] when empty)", "Saving images"),
        o("save_to_dirs", True, "Save images to a date subdirectory", "Saving images", bool),
        o("grid_save", True, "Always save all generated image grids", "Saving images", bool),
        o("grid_format", "png", "File format for grids", "Saving images", choices=("png", "jpg", "webp")),
        o("return_grid", True, "Show grid in gallery", "Saving images", bool),
        o(
            "enable_pnginfo",
            True,
            "Save text information about generation parameters as chunks to png files",
            "Saving images",
            bool,
        ),
        o(
            "jpeg_quality",
            80,
            "Quality for saved jpeg and webp images",
            "Saving images",
            int,
            minimum=1,
            maximum=100,
            step=1,
        ),
        o("webp_lossless", False, "Use lossless compression for webp images", "Saving images", bool),
        o(
            "grid_extended_filename",
            False,
            "Add extended info (seed, prompt) to filename when saving grid",
            "Saving images",
            bool,
        ),
        o("grid_save_to_dirs", True, "Save grids to a subdirectory", "Saving images", bool),
        o("directories_filename_pattern", "[date]", "Directory name pattern", "Saving images"),
        o(
            "directories_max_prompt_words",
            8,
            "Max prompt words for [prompt_words] pattern",
            "Saving images",
            int,
            minimum=1,
            maximum=20,
            step=1,
        ),
        o(
            "outdir_samples",
            "",
            "Output directory for images; if empty, defaults to three directories below",
            "Paths",
            path=True,
        ),
        o(
            "outdir_txt2img_samples",
            "outputs/txt2img-images",
            "Output directory for txt2img images",
            "Paths",
            path=True,
        ),
        o(
            "outdir_img2img_samples",
            "outputs/img2img-images",
            "Output directory for img2img images",
            "Paths",
            path=True,
        ),
        o(
            "outdir_extras_samples",
            "outputs/extras-images",
            "Output directory for images from extras tab",
            "Paths",
            path=True,
        ),
        o(
            "outdir_grids",
            "",
            "Output directory for grids; if empty, defaults to two directories below",
            "Paths",
            path=True,
        ),
        o("outdir_txt2img_grids", "outputs/txt2img-grids", "Output directory for txt2img grids", "Paths", path=True),
        o("outdir_img2img_grids", "outputs/img2img-grids", "Output directory for img2img grids", "Paths", path=True),
        o("live_previews_enable", True, "Show live previews of the created image", "Live previews", bool),
        o(
            "show_progress_every_n_steps",
            5,
            "Live preview display period (steps)",
            "Live previews",
            int,
            minimum=-1,
            maximum=32,
            step=1,
        ),
        o(
            "show_progress_type",
            "Approx cheap",
            "Live preview method (Approx cheap: a linear map, ~free; TAESD: "
            "models/VAE-approx/taesd*_decoder, else Approx cheap; Full: the VAE, slow on a CPU)",
            "Live previews",
            choices=("Approx cheap", "TAESD", "Full"),
        ),
        o(
            "cpu_precision",
            "Automatic",
            "CPU precision of the UNet (Automatic: bf16 where the CPU has it natively "
            "and the model is large enough to gain)",
            "Optimizations",
            choices=("Automatic", "bf16", "fp32"),
        ),
        o(
            "cpu_vae_precision",
            "Automatic",
            "CPU precision of the VAE decode (bf16: ~3× faster at 512² where the CPU "
            "has native bf16; Automatic: bf16 for a VAE whose bf16 decode of a test image is ≥ 40 dB PSNR against "
            'fp32, checked once per VAE; recorded as "VAE precision")',
            "Optimizations",
            choices=("Automatic", "fp32", "bf16"),
        ),
        o(
            "cpu_compile",
            False,
            "torch.compile the UNet on the CPU (slow first image per size; falls back to eager on any error)",
            "Optimizations",
            bool,
        ),
        # speed presets (#21): what they cost in time and quality on the demo model is in docs/performance.md
        o(
            "step_cache_interval",
            0,
            "Step cache: every N-th UNet step in full, the others reuse its deep features "
            '(DeepCache; 0 or 1: off; recorded as "Step cache")',
            "Optimizations",
            int,
            minimum=0,
            maximum=10,
            step=1,
        ),
        o(
            "token_merging_ratio",
            0.0,
            "Token merging ratio (ToMe: merges similar tokens of the full-resolution self-attention; 0: off)",
            "Optimizations",
            float,
            minimum=0.0,
            maximum=0.9,
            step=0.1,
        ),
        o(
            "token_merging_ratio_img2img",
            0.0,
            "Token merging ratio for img2img and inpaint (0: the ratio above)",
            "Optimizations",
            float,
            minimum=0.0,
            maximum=0.9,
            step=0.1,
        ),
        o(
            "token_merging_ratio_hr",
            0.0,
            "Token merging ratio for the hires pass (0: the ratio above)",
            "Optimizations",
            float,
            minimum=0.0,
            maximum=0.9,
            step=0.1,
        ),
        o(
            "vae_tiling_min_pixels",
            1024 * 1024,
            "Decode with a tiled VAE above this many pixels (0: never)",
            "Optimizations",
            int,
            minimum=0,
            maximum=GUARD_MAX_PIXELS,
        ),
        # the guards are bounded themselves: a value of 1e30 must not switch them off
        o(
            "max_generation_pixels",
            2048 * 2048,
            "Largest width × height a request may ask for",
            "Limits",
            int,
            minimum=64 * 64,
            maximum=GUARD_MAX_PIXELS,
        ),
        o(
            "max_image_pixels",
            4096 * 4096,
            "Largest decoded input image (pixels)",
            "Limits",
            int,
            minimum=64 * 64,
            maximum=GUARD_MAX_PIXELS,
        ),
        o("api_enable_requests", False, "Allow http(s) image URLs in API requests", "API", bool),
        o(
            "model_download_max_mb",
            40 * 1024,
            "Largest model a URL install may download (MB)",
            "Limits",
            int,
            minimum=1,
            maximum=1024 * 1024,
        ),
        o("save_incomplete_images", False, "Save the partial image of an interrupted job", "Saving images", bool),
        o(
            "warn_job_seconds",
            180,
            "Warn before a job estimated to take longer than this (seconds; 0: never)",
            "Limits",
            int,
            minimum=0,
            maximum=86400,
        ),
        # the cost guard (webui/generation/cost.py): checked before a job is queued, every pass and cell counted
        o(
            "max_job_megapixel_steps",
            20000,
            "Largest job: megapixels × steps summed over every image, hires pass and "
            "script cell (20000 ≈ 3800 images of 512×512 at 20 steps)",
            "Limits",
            int,
            minimum=1,
            maximum=10_000_000,
        ),
        o(
            "max_batch_pixels",
            64 * 512 * 512,
            "Largest batch in memory: batch size × width × height (hires size included)",
            "Limits",
            int,
            minimum=64 * 64,
            maximum=8 * GUARD_MAX_PIXELS,
        ),
        o("img_max_size_mp", 200, "Largest grid (megapixels)", "Limits", int, minimum=1, maximum=2000),
        o("xyz_max_cells", 256, "Most cells an X/Y/Z plot may have", "Limits", int, minimum=1, maximum=10000),
        # A1111's face restoration options; faces are found by a YOLOv8 ONNX detector from models/adetailer
        o("face_restoration", False, "Restore faces", "Face restoration", bool),  # A1111's label
        o(
            "face_restoration_model",
            "GFPGAN",
            "Face restoration model (models/GFPGAN, models/Codeformer)",
            "Face restoration",
            choices=("GFPGAN", "CodeFormer"),
        ),
        o(
            "code_former_weight",
            0.5,
            "CodeFormer weight (0 = maximum effect, 1 = minimum effect)",
            "Face restoration",
            float,
            minimum=0,
            maximum=1,
            step=0.01,
        ),
        o(
            "face_restoration_detector",
            "",
            "Face detector in models/adetailer (YOLOv8 ONNX; empty: the first face_*.onnx)",
            "Face restoration",
        ),
        o(
            "face_restoration_confidence",
            0.3,
            "Face detector confidence",
            "Face restoration",
            float,
            minimum=0.01,
            maximum=1,
            step=0.01,
        ),
        o(
            "interrogate_clip_model",
            "",
            "CLIP model for Interrogate CLIP (a transformers CLIPModel folder in models/interrogate; empty: the first)",
            "Interrogate",
        ),
        o("interrogate_keep_models_in_memory", False, "Keep the interrogate model in memory", "Interrogate", bool),
        o("interrogate_return_ranks", False, "Include ranks of model tags matches in results", "Interrogate", bool),
        o(
            "interrogate_blip_model",
            "",
            "BLIP caption model for Interrogate CLIP (a transformers BLIP captioning "
            "folder in models/BLIP; empty: the first)",
            "Interrogate",
        ),
        o("interrogate_clip_num_beams", 1, "BLIP: num_beams", "Interrogate", int, minimum=1, maximum=16, step=1),
        o(
            "interrogate_clip_min_length",
            24,
            "BLIP: minimum description length (tokens)",
            "Interrogate",
            int,
            minimum=1,
            maximum=128,
            step=1,
        ),
        o(
            "interrogate_clip_max_length",
            48,
            "BLIP: maximum description length (tokens)",
            "Interrogate",
            int,
            minimum=1,
            maximum=256,
            step=1,
        ),
        o(
            "interrogate_clip_dict_limit",
            1500,
            "CLIP: maximum number of lines in a word list",
            "Interrogate",
            int,
            minimum=1,
            maximum=100000,
            step=1,
        ),
    ]


OPTION_DEFS: dict[str, OptionDef] = {d.key: d for d in _opts()}


def coerce(d: OptionDef, value: Any) -> Any:
    """Validate one option value against its declared type; a wrong type, a non-finite number or a value out of range
    is an InvalidRequest naming the option. Every int and text is bounded even when the option declares no range."""
    try:
        if d.kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "false"):
                value = value.lower() == "true"
            if not isinstance(value, bool):
                raise TypeError
        elif d.kind is int:
            if isinstance(value, bool) or isinstance(value, (list, dict)) or value is None:
                raise TypeError
            if isinstance(value, str):
                value = int(value) if value.strip().lstrip("+-").isdigit() else float(value)
            if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
                raise TypeError
            value = int(value)
        elif d.kind is list:
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise TypeError
            if len(value) > MAX_LIST or any(len(v) > MAX_TEXT or "\x00" in v for v in value):
                raise InvalidRequest(f"option {d.key}: at most {MAX_LIST} items of {MAX_TEXT} characters")
            value = list(value)
        elif d.kind is float:
            if isinstance(value, bool) or isinstance(value, (list, dict)) or value is None:
                raise TypeError
            value = float(value)
            if not math.isfinite(value):
                raise InvalidRequest(f"option {d.key}: {value!r} is not a finite number")
        elif not isinstance(value, str):
            raise TypeError
        elif len(value) > MAX_TEXT or "\x00" in value:
            raise InvalidRequest(f"option {d.key}: text longer than {MAX_TEXT} characters or with a NUL character")
    except (TypeError, ValueError, OverflowError):
        raise InvalidRequest(f"option {d.key}: expected {d.kind.__name__}, got {_short(value)}") from None
    if d.minimum is not None and value < d.minimum:
        raise InvalidRequest(f"option {d.key}: {_short(value)} is too small (minimum {d.minimum})")
    if d.maximum is not None and value > d.maximum:
        raise InvalidRequest(f"option {d.key}: {_short(value)} is too large (maximum {d.maximum})")
    if d.kind is int and abs(value) > JSON_SAFE_INT:
        raise InvalidRequest(f"option {d.key}: {_short(value)} is out of range")
    if isinstance(d.choices, tuple) and value not in d.choices:
        raise InvalidRequest(f"option {d.key}: {value!r} is not one of {list(d.choices)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Options:
    """The persisted options, typed: every value read from config.json or sent by a user is checked against its
    declaration (`coerce`), and every change goes through `option_policy.check_option` under `policy` (what this
    server allows). Unknown keys (other tools', A1111's) are kept only as JSON-safe finite scalars.

    A corrupt config.json (bad JSON, or values of the wrong type, NaN, out of range) never stops the server: the bad
    keys start at their defaults, a warning says which, and the original file is kept as config.json.bad-<time>."""

    def __init__(self, file: Path, defs: Mapping[str, OptionDef] | None = None, policy: OptionPolicy | None = None):
        self.file = file
        self.defs: dict[str, OptionDef] = dict(defs or OPTION_DEFS)
        self.policy = policy or OptionPolicy()
        self._lock = threading.RLock()
        self._values: dict[str, Any] = self._load()

    def _typed(self, key: str, value: Any) -> Any:
        d = self.defs.get(key)
        return coerce(d, value) if d is not None else check_unknown(key, value)

    def _load(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            self._quarantine(f"it can't be read ({e}); every option starts at its default", {})
            return {}
        if not isinstance(raw, dict):
            self._quarantine("it is not a JSON object; every option starts at its default", {})
            return {}
        values, bad = {}, []
        for key, value in raw.items():
            try:
                values[key] = self._typed(key, value)
            except InvalidRequest as e:
                bad.append(e.message)
        if bad:
            self._quarantine("these options start at their defaults: " + "; ".join(bad), values)
        return values

    def _quarantine(self, reason: str, clean: dict[str, Any]) -> None:
        """Keep the file as it is under config.json.bad-<time>, write `clean` in its place, and say so."""
        aside = self.file.with_name(f"{self.file.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
        n = 1
        while aside.exists():
            n += 1
            aside = aside.with_name(f"{self.file.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        try:
            atomic_write_bytes(aside, self.file.read_bytes())
            self._save(clean)
        except OSError as e:
            log.warning("could not set %s aside: %s", self.file, e)
        log.warning("%s is damaged: %s. The original is kept as %s.", self.file, reason, aside.name)

    def _save(self, values: dict[str, Any]) -> None:
        # allow_nan=False: a NaN can't reach the file (it would make every later read of the options fail)
        atomic_write_text(self.file, json.dumps(values, indent=2, ensure_ascii=False, allow_nan=False) + "\n")

    def add_definition(self, d: OptionDef) -> None:
        """Declare an option (extensions do at load). A stored value that doesn't fit the declaration is dropped."""
        with self._lock:
            self.defs[d.key] = d
            if d.key in self._values:
                try:
                    self._values[d.key] = coerce(d, self._values[d.key])
                except InvalidRequest as e:
                    clean = {k: v for k, v in self._values.items() if k != d.key}
                    self._quarantine(f"this option starts at its default: {e.message}", clean)
                    self._values = clean

    def get(self, key: str) -> Any:
        with self._lock:
            if key in self._values:
                return self._values[key]
            if key in self.defs:
                return self.defs[key].default
        raise KeyError(key)

    def __getattr__(self, key: str) -> Any:  # opts.sd_vae, as A1111 users write it
        if key.startswith("_") or key in ("file", "defs", "policy"):
            raise AttributeError(key)
        try:
            return self.get(key)
        except KeyError:
            raise AttributeError(key) from None

    def validate(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Every key through the one check (type, range, finite; locked or confined when exposed). All keys are
        checked before the caller changes anything, so a refused key leaves every option as it was."""
        if not isinstance(changes, Mapping):
            raise InvalidRequest("options must be a JSON object of option names and values")
        with self._lock:
            out = {
                k: check_option(
                    self.defs, self.policy, k, v, self._values.get(k, getattr(self.defs.get(k), "default", None))
                )
                for k, v in changes.items()
            }
            unknown = {k for k in [*self._values, *out] if k not in self.defs}
        if len(unknown) > MAX_UNKNOWN_KEYS:
            raise InvalidRequest(f"too many undeclared options (more than {MAX_UNKNOWN_KEYS})")
        return out

    def set(self, changes: Mapping[str, Any], *, persist: bool = True) -> None:
        clean = self.validate(changes)
        with self._lock:
            if persist:
                self._save({**self._values, **clean})  # memory changes only once the file is safely written
            self._values.update(clean)

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
