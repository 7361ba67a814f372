"""Pixel-side preparation for img2img and inpainting, with A1111's semantics: resize modes, mask blur and invert,
"fill" for masked content, and the "only masked" crop region."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter, ImageOps

RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")


def resize_image(mode: int, im: Image.Image, width: int, height: int) -> Image.Image:
    """0 just resize; 1 crop and resize (cover, centre crop); 2 resize and fill (fit, stretch the edges into the
    borders); 3 latent upscale, which at the pixel stage is a plain resize."""
    im = im.convert("RGB")
    if mode in (0, 3):
        return im.resize((width, height), Image.LANCZOS)
    ratio, src_ratio = width / height, im.width / im.height
    if mode == 1:
        w, h = (width, round(width / src_ratio)) if ratio > src_ratio else (round(height * src_ratio), height)
        resized = im.resize((max(w, 1), max(h, 1)), Image.LANCZOS)
        left, top = (resized.width - width) // 2, (resized.height - height) // 2
        return resized.crop((left, top, left + width, top + height))
    if mode == 2:
        w, h = (round(height * src_ratio), height) if ratio > src_ratio else (width, round(width / src_ratio))
        resized = im.resize((max(w, 1), max(h, 1)), Image.LANCZOS)
        out = Image.new("RGB", (width, height))
        x, y = (width - resized.width) // 2, (height - resized.height) // 2
        out.paste(resized.resize((width, height), Image.LANCZOS))  # edges stretched behind the fitted image
        out.paste(resized, (x, y))
        return out
    raise ValueError(f"resize_mode must be 0..3, got {mode}")


def prepare_mask(
    mask: Image.Image, size: tuple[int, int], *, invert: bool, blur: int
) -> tuple[Image.Image, Image.Image]:
    """(hard mask, blurred mask), both L mode at `size`. A mask of another size is resized, as A1111 does; white
    (or opaque, for RGBA) is the area to repaint."""
    if mask.mode == "RGBA" and mask.getextrema()[3][0] < 255:
        mask = mask.getchannel("A")
    m = mask.convert("L").resize(size, Image.LANCZOS)
    if invert:
        m = ImageOps.invert(m)
    hard = m.point(lambda v: 255 if v >= 128 else 0)
    blurred = hard.filter(ImageFilter.GaussianBlur(blur)) if blur > 0 else hard
    return hard, blurred


def _box_blur(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)² window with edge clamping, via cumulative sums (PIL can't blur float images)."""
    for axis in (0, 1):
        pad = [(0, 0)] * a.ndim
        pad[axis] = (r + 1, r)
        c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=np.float64)
        hi = np.take(c, np.arange(2 * r + 1, c.shape[axis]), axis=axis)
        lo = np.take(c, np.arange(0, c.shape[axis] - 2 * r - 1), axis=axis)
        a = ((hi - lo) / (2 * r + 1)).astype(np.float32)
    return a


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111's "fill": replace the masked area with colours spread in from its surroundings (normalised blurs at
    decreasing radii), so the model starts from plausible colours instead of the old content."""
    img = np.asarray(image.convert("RGB"), dtype=np.float32)
    keep = (np.asarray(mask, dtype=np.float32) < 128).astype(np.float32)
    out = img.copy()
    hole = keep < 0.5
    if not hole.any() or not keep.any():
        return image.convert("RGB")
    for radius in (64, 32, 16, 8, 4, 2, 1):
        num = _box_blur(img * keep[..., None], radius)
        den = _box_blur(keep, radius)[..., None]
        est = np.where(den > 1e-4, num / np.maximum(den, 1e-4), out)
        out[hole] = est[hole]
    return Image.fromarray(out.clip(0, 255).astype(np.uint8))


def crop_region(mask: Image.Image, padding: int) -> tuple[int, int, int, int] | None:
    """The bounding box of the mask grown by `padding`, clipped to the image; None for an empty mask."""
    box = mask.point(lambda v: 255 if v > 0 else 0).getbbox()
    if box is None:
        return None
    x1, y1, x2, y2 = box
    return max(x1 - padding, 0), max(y1 - padding, 0), min(x2 + padding, mask.width), min(y2 + padding, mask.height)


def expand_to_ratio(box: tuple[int, int, int, int], ratio: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Grow a box until width/height equals the generation's ratio (so the crop isn't distorted), within `size`."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    if w / h < ratio:
        grow = round(h * ratio) - w
        x1, x2 = x1 - grow // 2, x2 + grow - grow // 2
    else:
        grow = round(w / ratio) - h
        y1, y2 = y1 - grow // 2, y2 + grow - grow // 2
    W, H = size
    if x1 < 0:
        x2, x1 = min(x2 - x1, W), 0
    if x2 > W:
        x1, x2 = max(x1 - (x2 - W), 0), W
    if y1 < 0:
        y2, y1 = min(y2 - y1, H), 0
    if y2 > H:
        y1, y2 = max(y1 - (y2 - H), 0), H
    return x1, y1, x2, y2


def composite(original: Image.Image, generated: Image.Image, blurred_mask: Image.Image) -> Image.Image:
    """The final overlay: outside the (blurred) mask the result is exactly the original."""
    return Image.composite(generated.convert("RGB"), original.convert("RGB"), blurred_mask)
