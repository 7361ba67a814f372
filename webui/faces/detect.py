"""Region detectors from models/adetailer: YOLOv8-format ONNX files run by OpenCV's DNN module.

Why this path: ADetailer's detectors are Ultralytics YOLOv8 `.pt` files, which are pickles of Ultralytics classes
(they can't be read with `weights_only=True`, and Ultralytics itself pulls torchvision, which Easel never installs).
The same models exported to ONNX (`yolo export model=face_yolov8n.pt format=onnx`, the default imgsz 640) are plain
graphs that OpenCV's DNN module runs; opencv-python-headless is already a pinned dependency (ControlNet's canny),
so no new runtime package is needed and nothing is unpickled. A `.pt` file found in the folder is listed with the
ONNX file it needs.

YOLOv8's detection output is [1, 4 + classes, anchors]: (cx, cy, w, h) in input pixels, then one score per class.
The image is letterboxed into the square input (grey 114 padding, centred) as Ultralytics does; a segmentation
model's extra outputs are ignored (its boxes are used).
"""

from __future__ import annotations

from dataclasses import dataclass
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
            out.append(DetectorInfo(p.name, onnx if onnx.is_file() else None,
                                    None if onnx.is_file() else f"needs {onnx.name} in models/{DETECTOR_DIR} "
                                    f"(export it: yolo export model={p.name} format=onnx); .pt pickles are not run"))
    return out


def find_detector(name: str, models_dir: Path) -> Path:
    """The ONNX file for a detector name (with .pt/.onnx or none); DetectorError naming the file it needs."""
    raw = str(name or "").strip()
    stem = Path(raw).stem if raw.lower().endswith((".pt", ".onnx", ".pth")) else raw
    if not stem or stem != Path(stem).name or stem in (".", ".."):
        raise DetectorError(f"invalid detector name {raw!r}: give a file name in models/{DETECTOR_DIR}")
    path = models_dir / DETECTOR_DIR / f"{stem}.onnx"
    if not path.is_file():
        raise DetectorError(f"detector {raw!r} is missing: put {stem}.onnx (a YOLOv8 ONNX export: yolo export "
                            f"model={stem}.pt format=onnx) in models/{DETECTOR_DIR}")
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
        canvas[py:py + nh, px:px + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
        self.net.setInput(np.ascontiguousarray(canvas.transpose(2, 0, 1)[None]))
        try:
            out = self.net.forward()
        except cv2.error as e:
            raise DetectorError(f"{self.name} failed on a {INPUT_SIZE}x{INPUT_SIZE} input (a YOLOv8 ONNX export at "
                                f"imgsz {INPUT_SIZE} is expected): {str(e).splitlines()[-1][:200]}") from None
        pred = np.asarray(out, dtype=np.float32)
        if pred.ndim != 3 or pred.shape[0] != 1 or min(pred.shape[1:]) < 5:
            raise DetectorError(f"{self.name}: output {list(pred.shape)} is not YOLOv8's [1, 4+classes, anchors]")
        pred = pred[0] if pred.shape[1] < pred.shape[2] else pred[0].T  # → [4+classes, anchors]
        scores = pred[4:].max(axis=0)
        labels = pred[4:].argmax(axis=0)
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
            box = Box(max(0, round(rx)), max(0, round(ry)), min(w, round(rx + rw)), min(h, round(ry + rh)),
                      float(scores[keep][int(i)]), int(labels[keep][int(i)]))
            if box.area > 0:
                boxes.append(box)
        return sorted(boxes, key=lambda b: -b.score)


def box_mask(size: tuple[int, int], boxes: list[Box], *, dilate: int = 0) -> Image.Image:
    """An "L" mask, white inside the (dilated) boxes."""
    from PIL import ImageDraw

    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for b in boxes:
        draw.rectangle([b.x0 - dilate, b.y0 - dilate, b.x1 - 1 + dilate, b.y1 - 1 + dilate], fill=255)
    return mask
