"""Deterministic analyser for demo-model images: which palette colours dominate, and which shape is drawn.

- Colours: every pixel is mapped to its nearest palette colour (RGB distance); the two most frequent are reported.
  For a correct image they are the shape's colour and the background's.
- Shape: the background is whichever of the two top colours covers more of the image border. The largest
  4-connected region of non-background pixels is the shape. It is compared with the three ideal shapes drawn in its
  bounding box (inscribed circle, the box itself, upright isosceles triangle) and the best intersection-over-union
  wins, provided the box is roughly square and the best IoU is at least `MIN_IOU`; otherwise the shape is "other".
  The fill ratio (region area / box area) is reported too: ≈0.785 for a circle, 1 for a square, 0.5 for a triangle.
- Stripes (for the LoRA example, trigger word "zebrastripe"): along each row (or column) between the first and last
  non-background pixel, the fraction of adjacent pixel pairs whose palette colours differ. Flat fill ≈0, stripes
  w px wide ≈1/w.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

try:  # runnable both as `tools.demo_model.analyse` and as a script next to dataset.py
    from .dataset import PALETTE
except ImportError:  # pragma: no cover
    from dataset import PALETTE  # type: ignore

NAMES = list(PALETTE)
RGB = np.array([PALETTE[n] for n in NAMES], dtype=np.float32)
MIN_IOU = 0.7
MAX_ASPECT = 1.5  # box width/height (or height/width) beyond this is not one of the shapes
PROMPT_RE = re.compile(r"\ba (?:(?:small|large) )?(\w+) (circle|square|triangle) on an? (\w+) background")


def _as_array(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8:  # floats in 0..1
        arr = np.clip(np.rint(arr.astype(np.float32) * 255), 0, 255).astype(np.uint8)
    return arr[..., :3]


def palette_labels(image) -> np.ndarray:
    """(H, W) index into NAMES of each pixel's nearest palette colour."""
    arr = _as_array(image).astype(np.float32)
    d = ((arr[:, :, None, :] - RGB[None, None]) ** 2).sum(-1)
    return d.argmin(-1)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    best: list[tuple[int, int]] = []
    for sy, sx in zip(*np.nonzero(mask)):
        if seen[sy, sx]:
            continue
        comp, queue = [], deque([(sy, sx)])
        seen[sy, sx] = True
        while queue:
            y, x = queue.popleft()
            comp.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        if len(comp) > len(best):
            best = comp
    out = np.zeros_like(mask, dtype=bool)
    if best:
        ys, xs = zip(*best)
        out[list(ys), list(xs)] = True
    return out


def _templates(h: int, w: int) -> dict[str, np.ndarray]:
    """Ideal shapes filling an h×w box, sampled at pixel centres."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = (yy + 0.5) / h, (xx + 0.5) / w  # 0..1 inside the box
    circle = (cx - 0.5) ** 2 + (cy - 0.5) ** 2 <= 0.25
    square = np.ones((h, w), dtype=bool)
    triangle = np.abs(cx - 0.5) <= cy / 2  # apex at the top centre, base along the bottom
    return {"circle": circle, "square": square, "triangle": triangle}


def _analyse(image) -> tuple[dict, np.ndarray, np.ndarray]:
    """The analysis plus the palette label map and the shape's region mask."""
    labels = palette_labels(image)
    counts = np.bincount(labels.ravel(), minlength=len(NAMES))
    order = [int(i) for i in np.argsort(-counts, kind="stable")]
    top2 = order[:2]
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    bcounts = np.bincount(border, minlength=len(NAMES))
    bg = top2[0] if bcounts[top2[0]] >= bcounts[top2[1]] else top2[1]
    fg = top2[1] if bg == top2[0] else top2[0]
    result = {
        "colours": [NAMES[i] for i in top2],
        "background": NAMES[bg],
        "foreground": NAMES[fg],
        "fractions": {NAMES[i]: round(float(counts[i]) / labels.size, 4) for i in top2},
        "shape": "none",
        "iou": {},
        "fill": 0.0,
        "aspect": 0.0,
        "bbox": None,
    }
    region = _largest_component(labels != bg)
    if region.sum() < 9:
        return result, labels, region
    ys, xs = np.nonzero(region)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    h, w = y1 - y0, x1 - x0
    box = region[y0:y1, x0:x1]
    ious = {}
    for name, tpl in _templates(h, w).items():
        inter = np.logical_and(box, tpl).sum()
        union = np.logical_or(box, tpl).sum()
        ious[name] = round(float(inter) / float(union), 4)
    aspect = w / h
    best = max(ious, key=ious.get)
    ok = 1 / MAX_ASPECT <= aspect <= MAX_ASPECT and ious[best] >= MIN_IOU
    result.update(
        shape=best if ok else "other",
        iou=ious,
        fill=round(float(box.mean()), 4),
        aspect=round(aspect, 3),
        bbox=(x0, y0, w, h),
    )
    return result, labels, region


def analyse(image) -> dict:
    """{"colours": [top1, top2], "shape": "circle"|"square"|"triangle"|"other"|"none", ...details}."""
    return _analyse(image)[0]


def parse_prompt(prompt: str) -> tuple[str, str, str]:
    """'a red circle on a blue background' → ('red', 'circle', 'blue'). Extra words around the phrase are ignored."""
    m = PROMPT_RE.search(prompt.lower())
    if not m:
        raise ValueError(f"prompt does not follow the grammar: {prompt!r}")
    return m.group(1), m.group(2), m.group(3)


def judge(prompt: str, image) -> dict:
    colour, shape, background = parse_prompt(prompt)
    a = analyse(image)
    return {
        "prompt": prompt,
        "colour_ok": set(a["colours"]) == {colour, background},
        "shape_ok": a["shape"] == shape,
        "analysis": a,
    }


def score(prompts: Sequence[str], images: Iterable, *, details: list | None = None) -> dict:
    """Fractions of images whose two top colours are the prompt's (colour), and whose shape is the prompt's (shape)."""
    rows = [judge(p, im) for p, im in zip(prompts, images, strict=True)]
    if details is not None:
        details.extend(rows)
    n = max(1, len(rows))
    return {
        "colour": sum(r["colour_ok"] for r in rows) / n,
        "shape": sum(r["shape_ok"] for r in rows) / n,
        "n": len(rows),
    }


def stripe_score(image) -> float:
    """How striped the drawing is, 0..1. In every row, between the first and the last non-background pixel, count the
    adjacent pixel pairs whose palette colours differ; the score is that count over all such pairs (rows shorter than
    4 px are skipped). Columns are measured the same way and the larger of the two counts, so vertical and horizontal
    stripes both score. A flat shape scores ≈0 (a row crosses one run of colour); stripes w px wide score ≈1/w."""
    result, labels, _ = _analyse(image)
    bg = NAMES.index(result["background"])
    fg = labels != bg
    best = 0.0
    for lab, mask in ((labels, fg), (labels.T, fg.T)):
        changes = pairs = 0
        for row, m in zip(lab, mask):
            idx = np.nonzero(m)[0]
            if len(idx) == 0 or idx[-1] - idx[0] + 1 < 4:
                continue
            seg = row[idx[0] : idx[-1] + 1]
            changes += int((seg[1:] != seg[:-1]).sum())
            pairs += len(seg) - 1
        if pairs:
            best = max(best, changes / pairs)
    return best


def stripe_scores(images: Iterable) -> float:
    """Mean stripe score of several images."""
    vals = [stripe_score(im) for im in images]
    return sum(vals) / max(1, len(vals))


if __name__ == "__main__":  # python tools/demo_model/analyse.py image.png ["prompt"]
    import json
    import sys

    img = Image.open(sys.argv[1])
    out = analyse(img)
    if len(sys.argv) > 2:
        out = judge(sys.argv[2], img)
    print(json.dumps(out, indent=2, default=str))
