"""What the img2img sub-tabs' inputs hold → the init image and the mask (pure functions: tested without a browser).

Gradio 6's ImageEditor gives {"background", "layers", "composite"}. Sketch uses the composite as the init image.
Inpaint uses the background as the init image and the alpha of layers[0] as the mask. Inpaint sketch uses the
composite as the init image and the strokes (the alpha of every layer) as the mask."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from webui.errors import InvalidRequest

MODES = ("img2img", "sketch", "inpaint", "inpaint_sketch", "inpaint_upload", "batch")
TAB_LABELS = ("img2img", "Sketch", "Inpaint", "Inpaint sketch", "Inpaint upload", "Batch")


def flatten(image: Image.Image | None) -> Image.Image | None:
    """RGB; transparent areas (an RGBA canvas' empty parts) become white, as on screen."""
    if image is None:
        return None
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return image.convert("RGB")


def layer_alpha(layer: Image.Image | None, size: tuple[int, int]) -> np.ndarray:
    """Where a layer is painted (alpha > 0), as a bool array of `size` (width, height)."""
    if layer is None:
        return np.zeros(size[::-1], dtype=bool)
    if "A" not in layer.getbands():  # no alpha: an opaque layer paints everything
        return np.ones(size[::-1], dtype=bool)
    alpha = layer.getchannel("A")
    if alpha.size != size:
        alpha = alpha.resize(size, Image.NEAREST)
    return np.asarray(alpha) > 0


def mask_image(painted: np.ndarray) -> Image.Image:
    return Image.fromarray(np.where(painted, 255, 0).astype(np.uint8), mode="L")


def editor_mask(value: dict | None, size: tuple[int, int], *, all_layers: bool = False) -> Image.Image:
    """The inpaint mask: white where layers[0] (or, for Inpaint sketch, any layer) is painted, black elsewhere."""
    layers = [x for x in ((value or {}).get("layers") or []) if x is not None]
    if not all_layers:
        layers = layers[:1]
    painted = np.zeros(size[::-1], dtype=bool)
    for layer in layers:
        painted |= layer_alpha(layer, size)
    return mask_image(painted)


def editor_inputs(mode: str, value: dict | None) -> tuple[Image.Image, Image.Image | None]:
    """(init image, mask or None) from an ImageEditor value for the Sketch, Inpaint and Inpaint sketch sub-tabs."""
    value = value or {}
    background, composite = value.get("background"), value.get("composite")
    if mode == "inpaint":
        init = flatten(background)
        if init is None:
            raise InvalidRequest("Inpaint needs an image: upload one, then paint over the area to repaint")
        return init, editor_mask(value, init.size)
    init = flatten(composite if composite is not None else background)
    if init is None:
        raise InvalidRequest(f"{TAB_LABELS[MODES.index(mode)]} needs an image: upload one or draw on the canvas")
    if mode == "sketch":
        return init, None
    return init, editor_mask(value, init.size, all_layers=True)  # inpaint sketch: the strokes are the mask


def init_and_mask(mode: str, image, sketch, inpaint, inpaint_sketch, base, mask) -> tuple[Image.Image, Any]:
    """The init image and mask for the selected sub-tab (Batch reads its folders in the service)."""
    if mode == "img2img":
        if image is None:
            raise InvalidRequest("img2img needs an input image: upload one in the img2img tab")
        return flatten(image), None
    if mode in ("sketch", "inpaint", "inpaint_sketch"):
        return editor_inputs(mode, {"sketch": sketch, "inpaint": inpaint, "inpaint_sketch": inpaint_sketch}[mode])
    if mode == "inpaint_upload":
        if base is None or mask is None:
            raise InvalidRequest("Inpaint upload needs both an image and a mask (white: the area to repaint)")
        return flatten(base), mask
    raise InvalidRequest(f"unknown img2img mode {mode!r}")


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """A1111's "Resize by": the input's size times the scale, floored to a multiple of 8."""
    return tuple(max(8, int(v * float(scale)) // 8 * 8) for v in size)  # type: ignore[return-value]
