"""ControlNet preprocessors ("modules"): `none` and `canny` in numpy/scipy (OpenCV when importable), and the
controlnet-aux detectors (lib/aux_detectors.py): available when controlnet-aux, their dependencies and their local
annotator weights are present, otherwise listed with the reason. Nothing here is faked: a detector that can't run is
reported as unavailable and refused."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


@dataclass
class Slider:
    name: str
    value: float
    min: float
    max: float
    step: float = 1.0


@dataclass
class Preprocessor:
    name: str
    run: Callable[..., Image.Image] | None
    reason: str | None = None  # why it can't run (None: available)
    sliders: list[Slider] = field(default_factory=list)  # threshold_a, threshold_b in order
    # sd-webui-controlnet's meaning: runs without a ControlNet *model* (its reference-only family). None of these do.
    model_free: bool = False

    @property
    def available(self) -> bool:
        return self.run is not None and self.reason is None


def resize_for(image: Image.Image, resolution: int) -> Image.Image:
    """Scale so the short side is `resolution` (sd-webui-controlnet's processor_res), keeping the aspect ratio."""
    w, h = image.size
    k = resolution / min(w, h)
    size = (max(1, round(w * k)), max(1, round(h * k)))
    if size == (w, h):
        return image
    return image.resize(size, Image.LANCZOS if k < 1 else Image.BICUBIC)


def _none(image: Image.Image, **_: Any) -> Image.Image:
    return image.convert("RGB")


def canny_edges(gray: np.ndarray, low: float, high: float) -> np.ndarray:
    """Canny edge detection on a uint8 HxW array → bool HxW: 5x5 Gaussian, Sobel gradients (L1 magnitude, like
    OpenCV's default), non-maximum suppression along the gradient direction, hysteresis between low and high."""
    try:
        import cv2  # opencv-python-headless, in requirements.txt for controlnet-aux

        return cv2.Canny(gray, low, high) > 0
    except ImportError:
        pass
    from scipy import ndimage

    low, high = min(low, high), max(low, high)
    img = ndimage.gaussian_filter(gray.astype(np.float64), sigma=1.4, truncate=1.5)
    gx = ndimage.sobel(img, axis=1)
    gy = ndimage.sobel(img, axis=0)
    mag = np.abs(gx) + np.abs(gy)
    # quantize the direction into 0°, 45°, 90°, 135° and keep the pixels that are maxima across the edge
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    padded = np.pad(mag, 1)
    h, w = mag.shape

    def shifted(dy: int, dx: int) -> np.ndarray:
        return padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    keep = np.zeros_like(mag, dtype=bool)
    for lo_a, hi_a, (dy, dx) in (
        (0, 22.5, (0, 1)),
        (157.5, 180.1, (0, 1)),
        (22.5, 67.5, (1, 1)),
        (67.5, 112.5, (1, 0)),
        (112.5, 157.5, (1, -1)),
    ):
        sel = (angle >= lo_a) & (angle < hi_a)
        keep |= sel & (mag >= shifted(dy, dx)) & (mag > shifted(-dy, -dx))
    mag = np.where(keep, mag, 0.0)
    strong = mag >= high
    weak = mag >= low
    labels, n = ndimage.label(weak, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return np.zeros_like(weak)
    connected = np.zeros(n + 1, dtype=bool)
    connected[np.unique(labels[strong])] = True
    connected[0] = False
    return connected[labels]


def _canny(image: Image.Image, *, threshold_a: float = 100, threshold_b: float = 200, **_: Any) -> Image.Image:
    gray = np.asarray(image.convert("L"), dtype=np.uint8)
    edges = canny_edges(gray, float(threshold_a), float(threshold_b))
    out = np.where(edges, 255, 0).astype(np.uint8)
    return Image.fromarray(np.stack([out] * 3, axis=-1), "RGB")


ANNOTATORS = "annotators"  # models/ControlNet/annotators/: the detectors' weight files (not ControlNet models)


def annotators_in(models_root: Path | str | None) -> Path | None:
    """`<models>/ControlNet/annotators/` for the ControlNet models folder the caller uses (None: none is known)."""
    return None if models_root is None else Path(models_root) / ANNOTATORS


def _aux():
    """lib/aux_detectors.py, imported on first use (the module the extension's `lib("aux_detectors")` gives)."""
    return importlib.import_module(".aux_detectors", __package__)


def _aux_preprocessor(det, annotators: Path | None) -> Preprocessor:
    aux = _aux()
    reason = aux.unavailable_reason(det, annotators)
    return Preprocessor(
        det.name,
        None if reason else aux.runner(det, annotators),
        reason=reason,
        sliders=[Slider(*s) for s in det.sliders],
        model_free=False,
    )


def registry(annotators_dir: Path | str | None = None) -> dict[str, Preprocessor]:
    """Every preprocessor, available or not. `annotators_dir` is where weight-based detectors look for their files
    (`annotators_in(models_root)` of the caller's ControlNet folder); without it they are listed unavailable."""
    annotators = None if annotators_dir is None else Path(annotators_dir)
    mods = {
        "none": Preprocessor("none", _none),
        "canny": Preprocessor(
            "canny",
            _canny,
            sliders=[Slider("Canny Low Threshold", 100, 1, 255), Slider("Canny High Threshold", 200, 1, 255)],
        ),
    }
    for det in _aux().DETECTORS:
        mods[det.name] = _aux_preprocessor(det, annotators)
    return mods


def run(
    pre: Preprocessor,
    image: Image.Image,
    *,
    resolution: int,
    threshold_a: float | None = None,
    threshold_b: float | None = None,
) -> Image.Image:
    """Run an available preprocessor on `image` scaled to `resolution` (short side); `none` keeps the size."""
    if not pre.available:
        raise ValueError(f"preprocessor {pre.name!r} is unavailable: {pre.reason}")
    kw: dict[str, Any] = {}
    for key, value, slider in zip(("threshold_a", "threshold_b"), (threshold_a, threshold_b), pre.sliders):
        kw[key] = slider.value if value is None or value < 0 else value  # A1111 clients send -1 for "default"
    source = image.convert("RGB") if pre.name == "none" else resize_for(image.convert("RGB"), resolution)
    try:
        return pre.run(source, **kw)
    except ValueError as e:  # e.g. an annotator weight file that doesn't fit: the user's input, not a bug
        from webui.extensions.api import ScriptError

        raise ScriptError(f"preprocessor {pre.name!r} failed: {e}") from None
