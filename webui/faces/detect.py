"""Region detectors from models/adetailer: YOLOv8-format ONNX files run by OpenCV's DNN module.

Why this path: ADetailer's detectors are Ultralytics YOLOv8 `.pt` files, which are pickles of Ultralytics classes
(they can't be read with `weights_only=True`, and Ultralytics itself pulls torchvision, which Easel never installs).
The same models exported to ONNX (`yolo export model=face_yolov8n.pt format=onnx`, the default imgsz 640) are plain
graphs that OpenCV's DNN module runs; opencv-python-headless is already a pinned dependency (ControlNet's canny),
so no new runtime package is needed and nothing is unpickled. A `.pt` file found in the folder is listed with the
ONNX file it needs.

YOLOv8's detection output is [1, 4 + classes, anchors]: (cx, cy, w, h) in input pixels, then one score per class.
The image is letterboxed into the square input (grey 114 padding, centred) as Ultralytics does. A segmentation
model (`*-seg`) has a second output, the mask prototypes [1, 32, 160, 160], and 32 mask coefficients after the
class scores in each anchor's row: a region's mask is sigmoid(coefficients · prototypes), scaled up to the input,
cut back to the image (the letterbox undone), kept inside the region's box and thresholded at 0.5, as Ultralytics'
own post-processing does. Each Box of such a model carries that mask; the detailer inpaints it instead of the box.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from webui.errors import InvalidRequest

DETECTOR_DIR = "adetailer"
INPUT_SIZE = 640  # Ultralytics' default export size
MAX_DETECTOR_BYTES = 512 * 1024 * 1024


class DetectorError(InvalidRequest):
    """A detector that is missing, not ONNX, or not YOLOv8-shaped; the message says what is needed."""


@dataclass(frozen=True)
class Box:
    x0: int
    y0: int
    x1: int
    y1: int
    score: float
    label: int = 0
    mask: Any = field(default=None, compare=False, repr=False)  # a segmentation model's: bool [h, w] of the image

    @property
    def area(self) -> int:
        return max(0, self.x1 - self.x0) * max(0, self.y1 - self.y0)


@dataclass(frozen=True)
class DetectorInfo:
    name: str  # the file name, as ADetailer's ad_model ("face_yolov8n.pt" or "face_yolov8n.onnx")
    path: Path | None
    error: str | None = None  # why it can't be used (a .pt without its .onnx beside it)


def list_detectors(models_dir: Path) -> list[DetectorInfo]:
    """Every detector file in models/adetailer; a `.pt` is usable when its `.onnx` export sits beside it."""
    folder = models_dir / DETECTOR_DIR
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() == ".onnx" and p.is_file():
            out.append(DetectorInfo(p.name, p))
        elif p.suffix.lower() == ".pt" and p.is_file():
            onnx = p.with_suffix(".onnx")
            out.append(
                DetectorInfo(
                    p.name,
                    onnx if onnx.is_file() else None,
                    None
                    if onnx.is_file()
                    else f"needs {onnx.name} in models/{DETECTOR_DIR} "
                    f"(export it: yolo export model={p.name} format=onnx); .pt pickles are not run",
                )
            )
    return out


def find_detector(name: str, models_dir: Path) -> Path:
    """The ONNX file for a detector name (with .pt/.onnx or none); DetectorError naming the file it needs."""
    raw = str(name or "").strip()
    stem = Path(raw).stem if raw.lower().endswith((".pt", ".onnx", ".pth")) else raw
    if not stem or stem != Path(stem).name or stem in (".", ".."):
        raise DetectorError(f"invalid detector name {raw!r}: give a file name in models/{DETECTOR_DIR}")
    path = models_dir / DETECTOR_DIR / f"{stem}.onnx"
    if not path.is_file():
        raise DetectorError(
            f"detector {raw!r} is missing: put {stem}.onnx (a YOLOv8 ONNX export: yolo export "
            f"model={stem}.pt format=onnx) in models/{DETECTOR_DIR}"
        )
    return path


class Detector:
    """One loaded ONNX detector. Not thread-safe (OpenCV nets aren't): one per job."""

    def __init__(self, path: Path):
        import cv2

        if path.stat().st_size > MAX_DETECTOR_BYTES:
            raise DetectorError(f"{path.name} is larger than {MAX_DETECTOR_BYTES >> 20} MB; not a detector")
        try:
            self.net = cv2.dnn.readNetFromONNX(str(path))
        except cv2.error:
            raise DetectorError(f"{path.name} is not an ONNX model OpenCV can read") from None
        self.name = path.name

    def detect(self, image: Image.Image, confidence: float, *, iou: float = 0.5, max_boxes: int = 32) -> list[Box]:
        """Boxes over `confidence` (0..1) in image pixels, best first, overlapping ones merged (NMS)."""
        import cv2

        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        h, w = rgb.shape[:2]
        scale = INPUT_SIZE / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        canvas: Any = np.full((INPUT_SIZE, INPUT_SIZE, 3), 114 / 255.0, dtype=np.float32)
        px, py = (INPUT_SIZE - nw) // 2, (INPUT_SIZE - nh) // 2
        canvas[py : py + nh, px : px + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
        self.net.setInput(np.ascontiguousarray(canvas.transpose(2, 0, 1)[None]))
        try:
            outs = [np.asarray(o, dtype=np.float32) for o in self.net.forward(self.net.getUnconnectedOutLayersNames())]
        except cv2.error as e:
            raise DetectorError(
                f"{self.name} failed on a {INPUT_SIZE}x{INPUT_SIZE} input (a YOLOv8 ONNX export at "
                f"imgsz {INPUT_SIZE} is expected): {str(e).splitlines()[-1][:200]}"
            ) from None
        pred = next((o for o in outs if o.ndim == 3), outs[0])
        protos = next((o for o in outs if o.ndim == 4 and o.shape[0] == 1), None)  # a segmentation model's
        n_coef = int(protos.shape[1]) if protos is not None else 0
        if pred.ndim != 3 or pred.shape[0] != 1 or min(pred.shape[1:]) < 5 + n_coef:
            raise DetectorError(
                f"{self.name}: output {list(pred.shape)} is not YOLOv8's [1, 4+classes, anchors] "
                f"(or [1, 4+classes+{n_coef}, anchors] with mask prototypes)"
            )
        pred = pred[0] if pred.shape[1] < pred.shape[2] else pred[0].T  # → [4+classes(+coefficients), anchors]
        classes = pred[4 : pred.shape[0] - n_coef]
        scores = classes.max(axis=0)
        labels = classes.argmax(axis=0)
        keep = np.flatnonzero(np.isfinite(scores) & (scores >= confidence))
        if keep.size == 0:
            return []
        cx, cy, bw, bh = (pred[i, keep] for i in range(4))
        x0, y0 = (cx - bw / 2 - px) / scale, (cy - bh / 2 - py) / scale
        rects = [[float(a), float(b), float(c / scale), float(d / scale)] for a, b, c, d in zip(x0, y0, bw, bh)]
        chosen = cv2.dnn.NMSBoxes(rects, [float(s) for s in scores[keep]], float(confidence), float(iou))
        boxes = []
        for i in np.asarray(chosen).reshape(-1)[:max_boxes]:
            rx, ry, rw, rh = rects[int(i)]
            x0b, y0b, x1b, y1b = max(0, round(rx)), max(0, round(ry)), min(w, round(rx + rw)), min(h, round(ry + rh))
            mask = None
            if protos is not None:
                coef = pred[pred.shape[0] - n_coef :, keep[int(i)]]
                mask = segment_mask(coef, protos[0], (px, py, nw, nh), (w, h), (x0b, y0b, x1b, y1b))
            box = Box(x0b, y0b, x1b, y1b, float(scores[keep][int(i)]), int(labels[keep][int(i)]), mask)
            if box.area > 0 and (mask is None or mask.any()):
                boxes.append(box)
        return sorted(boxes, key=lambda b: -b.score)


def segment_mask(
    coef: np.ndarray,
    protos: np.ndarray,
    letterbox: tuple[int, int, int, int],
    size: tuple[int, int],
    box: tuple[int, int, int, int],
) -> np.ndarray:
    """One region's mask in image pixels (bool [h, w]): sigmoid(coef · prototypes) at the prototypes' resolution,
    resized to the input, the letterbox cut away, resized to the image, > 0.5 and inside the box."""
    import cv2

    n, mh, mw = protos.shape
    logits = (coef.astype(np.float32) @ protos.reshape(n, -1)).reshape(mh, mw)
    prob = 1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))
    px, py, nw, nh = letterbox
    full = cv2.resize(prob, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)[py : py + nh, px : px + nw]
    mask = cv2.resize(full, size, interpolation=cv2.INTER_LINEAR) > 0.5
    inside = np.zeros_like(mask)
    x0, y0, x1, y1 = box
    inside[y0:y1, x0:x1] = True
    return mask & inside


def region_mask(size: tuple[int, int], box: Box, grow: int) -> Image.Image:
    """One region's "L" mask: its segment (a segmentation model's) or its box, grown (dilated) or shrunk (eroded) by
    `grow` pixels on every side, as ADetailer's dilate/erode."""
    import cv2
    from PIL import ImageDraw

    if box.mask is None:
        out = Image.new("L", size, 0)
        x0, y0, x1, y1 = box.x0 - grow, box.y0 - grow, box.x1 + grow, box.y1 + grow
        if x1 > x0 and y1 > y0:  # eroded away entirely: nothing to inpaint
            ImageDraw.Draw(out).rectangle(
                [max(0, x0), max(0, y0), min(size[0], x1) - 1, min(size[1], y1) - 1], fill=255
            )
        return out
    mask = box.mask.astype(np.uint8) * 255
    if grow:
        kernel: Any = np.ones((2 * abs(grow) + 1, 2 * abs(grow) + 1), np.uint8)
        mask = cv2.dilate(mask, kernel) if grow > 0 else cv2.erode(mask, kernel)
    return Image.fromarray(mask, "L")


def box_mask(size: tuple[int, int], boxes: list[Box], *, dilate: int = 0) -> Image.Image:
    """An "L" mask, white inside the (dilated) boxes."""
    from PIL import ImageDraw

    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for b in boxes:
        draw.rectangle([b.x0 - dilate, b.y0 - dilate, b.x1 - 1 + dilate, b.y1 - 1 + dilate], fill=255)
    return mask
