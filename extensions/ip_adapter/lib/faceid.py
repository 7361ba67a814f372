"""The face embedding IP-Adapter FaceID is fed: insightface's pipeline (a SCRFD face detector with five landmarks,
the face aligned onto ArcFace's 112×112 template, the ArcFace recognizer's 512-d embedding, L2-normalised — what
insightface's `FaceAnalysis(...).get(image)[0].normed_embedding` gives), run offline from ONNX files the user puts
in models/insightface/ (e.g. buffalo_l's det_10g.onnx and w600k_r50.onnx, as Forge keeps them in
models/insightface/models/buffalo_l/).

Why this path: the insightface package needs a C++ build and downloads its models at run time; its models are plain
ONNX graphs, run here by onnxruntime (the runtime insightface itself uses; a PyPI wheel that needs no torch). Nothing
is downloaded and nothing unpickled. The SCRFD output decoding and the alignment follow the published SCRFD/ArcFace
formats (anchor-free distances from anchor points at strides 8/16/32, two anchors per point, outputs ordered scores,
boxes, landmarks); written here because no installed library decodes them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from webui.extensions.api import ScriptError

FOLDER = "insightface"
DET_SIZE = 640  # insightface's default det_size
STRIDES = (8, 16, 32)
ANCHORS = 2
SCORE, NMS = 0.5, 0.4  # insightface's det_thresh and nms_thresh
MAX_BYTES = 1 << 30
# ArcFace's five landmarks (eyes, nose tip, mouth corners) on its 112×112 crop
ARCFACE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def runtime_missing() -> str | None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "FaceID needs onnxruntime to run insightface's ONNX models (pip install onnxruntime)"
    return None


def _session(path: Path) -> Any:
    import onnxruntime as ort

    if path.stat().st_size > MAX_BYTES:
        raise ScriptError(f"{path.name} in models/{FOLDER} is larger than {MAX_BYTES >> 20} MB")
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ScriptError(f"{path.name} in models/{FOLDER} is not an ONNX model ({type(e).__name__})") from None


def model_files(models_dir: Path) -> list[Path]:
    """The .onnx files of models/insightface up to three folders down (models/insightface/models/buffalo_l/…, as
    insightface lays out its packs); a bounded walk, no symlink loops."""
    root = models_dir / FOLDER
    if not root.is_dir():
        return []
    found = {p for pattern in ("*.onnx", "*/*.onnx", "*/*/*.onnx", "*/*/*/*.onnx") for p in root.glob(pattern)}
    return sorted(p for p in found if p.is_file())


def unavailable(models_dir: Path) -> str | None:
    """Why FaceID can't run here (no runtime, no models), or None."""
    missing = runtime_missing()
    if missing:
        return missing
    if not model_files(models_dir):
        return (
            f"FaceID needs insightface's face detector and ArcFace recognizer as ONNX files in models/{FOLDER} "
            "(e.g. buffalo_l's det_10g.onnx and w600k_r50.onnx)"
        )
    return None


@dataclass
class Face:
    box: np.ndarray  # x0, y0, x1, y1 in image pixels
    score: float
    landmarks: np.ndarray  # [5, 2] in image pixels


class FaceEmbedder:
    """The detector and recognizer of models/insightface, told apart by their graphs: the recognizer takes a
    112×112 image and gives one output; the detector gives 9 (scores, boxes, landmarks at three strides)."""

    def __init__(self, models_dir: Path):
        reason = unavailable(models_dir)
        if reason:
            raise ScriptError(reason)
        self.detector = self.recognizer = None
        for path in model_files(models_dir):
            session = _session(path)
            shape = session.get_inputs()[0].shape
            outputs = len(session.get_outputs())
            if self.recognizer is None and outputs == 1 and list(shape[2:]) == [112, 112]:
                self.recognizer = session
            elif self.detector is None and outputs == 3 * len(STRIDES):
                self.detector = session
        if self.detector is None or self.recognizer is None:
            need = (
                "face detector with landmarks (det_10g.onnx)" if self.detector is None else "ArcFace (w600k_r50.onnx)"
            )
            raise ScriptError(f"FaceID: models/{FOLDER} has no insightface {need}")

    def detect(self, image: Image.Image) -> list[Face]:
        """Faces best first (insightface's SCRFD: the image letterboxed top-left into 640×640, (x - 127.5) / 128)."""
        import cv2

        rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
        h, w = rgb.shape[:2]
        scale = DET_SIZE / max(h, w)
        nw, nh = max(1, int(w * scale)), max(1, int(h * scale))
        canvas = np.zeros((DET_SIZE, DET_SIZE, 3), dtype=np.float32)
        canvas[:nh, :nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
        blob = ((canvas - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outs = [np.asarray(o) for o in self.detector.run(None, {self.detector.get_inputs()[0].name: blob})]
        outs = [o.reshape(-1, o.shape[-1]) for o in outs]  # batched exports have a leading 1
        boxes, scores, marks = [], [], []
        for i, stride in enumerate(STRIDES):
            side = DET_SIZE // stride
            ys, xs = np.mgrid[:side, :side]
            points = np.repeat(np.stack([xs, ys], -1).reshape(-1, 2) * stride, ANCHORS, axis=0).astype(np.float32)
            score = outs[i][:, 0]
            keep = score >= SCORE
            d = outs[i + 3][keep] * stride
            p = points[keep]
            boxes.append(np.concatenate([p - d[:, :2], p + d[:, 2:]], 1))
            marks.append((p[:, None, :] + (outs[i + 6][keep] * stride).reshape(-1, 5, 2)))
            scores.append(score[keep])
        box, score, mark = np.concatenate(boxes) / scale, np.concatenate(scores), np.concatenate(marks) / scale
        order = np.argsort(-score, kind="stable")
        return [Face(box[j], float(score[j]), mark[j]) for j in _nms(box[order], NMS, order)]

    def face(self, image: Image.Image) -> Face:
        """The best face (insightface's first); ScriptError when there is none."""
        faces = self.detect(image)
        if not faces:
            raise ScriptError("FaceID: no face found in the image prompt")
        return faces[0]

    def embed(self, image: Image.Image, face: Face | None = None) -> np.ndarray:
        """The normed ArcFace embedding [512] of `face` (default: the best face of the image)."""
        crop = align(image, (face or self.face(image)).landmarks)
        blob = ((np.asarray(crop, np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]
        out = np.asarray(self.recognizer.run(None, {self.recognizer.get_inputs()[0].name: blob})[0]).reshape(-1)
        return out / max(float(np.linalg.norm(out)), 1e-12)


def set_clip_embeds(pipe: Any, index: int, pair: tuple, kwargs: dict, shortcut: bool) -> None:
    """FaceID Plus: the CLIP hidden states of the aligned face (conditional, unconditional) set on the adapter's
    loaded IPAdapterFaceIDPlusImageProjection, batched like the face embedding, and `shortcut` for Plus v2 — the
    way diffusers' documentation feeds it (load_ip_adapter's inputs carry only the face embedding). The layer goes
    with the adapter when it is unloaded after the call."""
    import torch

    layer = pipe.unet.encoder_hid_proj.image_projection_layers[index]
    generators = kwargs.get("generator")
    n = len(generators) if isinstance(generators, list) else 1
    cond, uncond = (e.repeat(n, 1, 1)[:, None] for e in pair)  # [n, 1, tokens, width]
    cfg = float(kwargs.get("guidance_scale", 7.5)) > 1
    layer.clip_embeds = (torch.cat([uncond, cond]) if cfg else cond).to(pipe.unet.device, pipe.unet.dtype)
    layer.shortcut = shortcut


def _nms(boxes: np.ndarray, threshold: float, order: np.ndarray) -> list[int]:
    """Indices (into the unsorted arrays) of the boxes kept, best first. `boxes` are sorted by score."""
    kept: list[int] = []
    area = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    alive = np.ones(len(boxes), bool)
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        kept.append(int(order[i]))
        lo, hi = np.maximum(boxes[i, :2], boxes[:, :2]), np.minimum(boxes[i, 2:], boxes[:, 2:])
        inter = (hi - lo).clip(0).prod(1)
        alive &= inter / np.maximum(area[i] + area - inter, 1e-9) <= threshold
    return kept


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares similarity transform (rotation, uniform scale, shift: Umeyama's solution) taking `src`
    points onto `dst`, as a 2×3 matrix. Written here: OpenCV's estimateAffinePartial2D is a robust RANSAC/LMedS
    fit, not the plain least squares insightface's alignment uses."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    flip = np.diag([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rot = u @ flip @ vt
    scale = float((sig * np.diag(flip)).sum() / s.var(0).sum())
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]]).astype(np.float32)


def align(image: Image.Image, landmarks: np.ndarray, size: int = 112) -> Image.Image:
    """The face warped onto ArcFace's template at `size` px (a multiple of 112: 112 for ArcFace, 224 for FaceID
    Plus's CLIP input, the template scaled as insightface's norm_crop scales it), black outside the image."""
    import cv2

    template = ARCFACE.astype(np.float64) * (size / 112)
    matrix = similarity(np.asarray(landmarks, np.float64), template)
    rgb = np.asarray(image.convert("RGB"))
    return Image.fromarray(cv2.warpAffine(rgb, matrix, (size, size), borderValue=0))
