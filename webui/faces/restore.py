"""A1111's "Restore faces": GFPGAN (and CodeFormer where its architecture is available) through spandrel, on the
faces a detector from models/adetailer finds.

A1111 finds faces with facexlib's RetinaFace (whose weights it downloads at run time and whose NMS is
torchvision's); Easel has neither, so faces come from the same YOLOv8 ONNX face detector the detailer uses
(webui/faces/detect.py, setting `face_restoration_detector`). Each face's square crop (1.6× the box, inside the
image) is resized to the model's 512², restored, resized back and blended in with a feathered mask: pixels outside
the crops are never touched.

Licences: spandrel's GFPGAN architecture is Apache-2.0 and ships in spandrel itself. CodeFormer's architecture is
under the S-Lab License 1.0 (non-commercial), so spandrel keeps it out of its main package: Easel runs it only when
the user has installed spandrel_extra_arches themselves, and otherwise refuses a CodeFormer file with that reason
(codeformer.py).

Both models take and give images in [-1, 1] (their own inference code normalises with mean 0.5, std 0.5);
spandrel's descriptor passes its [0, 1] input straight to them, so the model is called here with that scaling.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from webui.errors import InvalidRequest
from webui.faces.detect import DETECTOR_DIR, Box, Detector, DetectorError, find_detector, list_detectors

FOLDERS = {"GFPGAN": "GFPGAN", "CodeFormer": "Codeformer"}  # A1111's models/ folder names
EXTENSIONS = (".pth", ".safetensors")
FACE_SIZE = 512
CROP_FACTOR = 1.6


class FaceRestoreError(InvalidRequest):
    """Face restoration can't run (no model, no detector, wrong file): the message names the folder and file."""


@dataclass
class FaceModel:
    kind: str  # "GFPGAN" | "CodeFormer"
    path: Path
    descriptor: Any  # spandrel's ImageModelDescriptor


def model_file(kind: str, models_dir: Path) -> Path:
    if kind not in FOLDERS:
        raise FaceRestoreError(f"unknown face restoration model {kind!r}; choose {' or '.join(FOLDERS)}")
    folder = models_dir / FOLDERS[kind]
    files = (
        sorted(p for p in folder.glob("*") if p.suffix.lower() in EXTENSIONS and p.is_file()) if folder.is_dir() else []
    )
    if not files:
        example = "GFPGANv1.4.pth" if kind == "GFPGAN" else "codeformer-v0.1.0.pth"
        raise FaceRestoreError(f"no {kind} model: put one (e.g. {example}) in models/{FOLDERS[kind]}")
    return files[-1]  # the newest version by name (GFPGANv1.4 after GFPGANv1.3), as A1111 picks one file


def load_face_model(kind: str, path: Path) -> FaceModel:
    from webui.generation.upscaler_models import load_spandrel, read_state_dict

    sp = load_spandrel()
    try:
        state = read_state_dict(path)
    except Exception as e:
        raise FaceRestoreError(
            f"can't read {path.name} as a state dict (safetensors, or a weights-only .pth): {type(e).__name__}"
        ) from None
    if kind == "CodeFormer":
        from webui.faces.codeformer import load_codeformer

        try:
            descriptor = load_codeformer(sp.canonicalize(state))
        except ImportError as e:
            raise FaceRestoreError(f"{path.name} in models/{FOLDERS[kind]} can't be used: {e}") from None
        except Exception as e:
            raise FaceRestoreError(
                f"{path.name} in models/{FOLDERS[kind]} is not a CodeFormer model ({type(e).__name__})"
            ) from None
        return FaceModel(kind, path, descriptor.eval())
    try:
        descriptor = sp.registry.load(sp.canonicalize(state))
    except Exception as e:
        raise FaceRestoreError(
            f"{path.name} in models/{FOLDERS[kind]} is not a face model spandrel knows ({type(e).__name__})"
        ) from None
    if descriptor.purpose != "FaceSR" or descriptor.architecture.name.lower() != kind.lower():
        raise FaceRestoreError(
            f"{path.name} in models/{FOLDERS[kind]} is a {descriptor.architecture.name} "
            f"{descriptor.purpose} model, not {kind}"
        )
    return FaceModel(kind, path, descriptor.eval())


def crop_square(box: Box, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The square around a face box (CROP_FACTOR × its longer side), moved/shrunk to lie inside the image."""
    w, h = size
    side = min(w, h, max(8, round(max(box.x1 - box.x0, box.y1 - box.y0) * CROP_FACTOR)))
    cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
    x0 = int(min(max(0, round(cx - side / 2)), w - side))
    y0 = int(min(max(0, round(cy - side / 2)), h - side))
    return x0, y0, x0 + side, y0 + side


def feather_mask(side: int, box: Box, origin: tuple[int, int]) -> Image.Image:
    """White over the face box inside a crop, blurred so the restored face blends in; black at the crop's edge."""
    mask = Image.new("L", (side, side), 0)
    pad = max(1, side // 16)
    x0, y0 = box.x0 - origin[0], box.y0 - origin[1]
    x1, y1 = box.x1 - origin[0], box.y1 - origin[1]
    ImageDraw.Draw(mask).rectangle(
        [max(pad, x0), max(pad, y0), min(side - 1 - pad, x1), min(side - 1 - pad, y1)], fill=255
    )
    return mask.filter(ImageFilter.GaussianBlur(pad / 2))


def run_face_model(model: FaceModel, crop: Image.Image, weight: float) -> Image.Image:
    import torch

    d = model.descriptor
    x = torch.from_numpy(
        np.asarray(crop.convert("RGB").resize((FACE_SIZE, FACE_SIZE), Image.LANCZOS), dtype=np.float32) / 255.0
    ).permute(2, 0, 1)[None]
    x = (x * 2 - 1).to(d.device, d.dtype)  # the models' own range, [-1, 1]
    with torch.no_grad():
        if model.kind == "CodeFormer":  # weight: CodeFormer's fidelity (0 = most restoration, 1 = most faithful)
            y = d.model(x, weight=float(weight))[0]
        else:  # GFPGAN has no such weight
            y = d.model(x, return_rgb=False)[0]
    y = ((y[0].float() + 1) / 2).clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray((y * 255).round().astype("uint8")).resize(crop.size, Image.LANCZOS)


def restore_faces(
    image: Image.Image, model: FaceModel, boxes: list[Box], *, visibility: float = 1.0, weight: float = 0.5
) -> Image.Image:
    """`image` with each box's face restored and blended in at `visibility`; unchanged outside the crops."""
    out = image.convert("RGB")
    if visibility <= 0 or not boxes:
        return out
    out = out.copy()
    for box in boxes:
        x0, y0, x1, y1 = crop_square(box, out.size)
        crop = out.crop((x0, y0, x1, y1))
        restored = run_face_model(model, crop, weight)
        if visibility < 1:
            restored = Image.blend(crop, restored, visibility)
        out.paste(Image.composite(restored, crop, feather_mask(x1 - x0, box, (x0, y0))), (x0, y0))
    return out


class FaceRestorers:
    """The app's face models and detectors, loaded on first use and kept (one of each kind; a changed file on disk
    is read again)."""

    def __init__(self, models_dir: Path):
        self.models_dir = models_dir
        self._lock = threading.Lock()
        self._models: dict[str, tuple[tuple[Path, float], FaceModel]] = {}

    def model(self, kind: str) -> FaceModel:
        path = model_file(kind, self.models_dir)
        key = (path, path.stat().st_mtime)
        with self._lock:
            cached = self._models.get(kind)
            if cached is None or cached[0] != key:
                self._models[kind] = (key, load_face_model(kind, path))
            return self._models[kind][1]

    def detector(self, name: str) -> Detector:
        """The face detector by name; empty: the first face detector in models/adetailer."""
        chosen = str(name or "").strip()
        if not chosen:
            faces = [
                d for d in list_detectors(self.models_dir) if d.name.lower().startswith("face") and d.path is not None
            ]
            if not faces:
                raise FaceRestoreError(
                    f"Restore faces needs a face detector: put face_yolov8n.onnx (a YOLOv8 ONNX "
                    f"export: yolo export model=face_yolov8n.pt format=onnx) in "
                    f"models/{DETECTOR_DIR}"
                )
            chosen = faces[0].name
        try:
            return Detector(find_detector(chosen, self.models_dir))
        except DetectorError as e:
            raise FaceRestoreError(f"Restore faces: {e}") from None

    def for_job(
        self, kind: str, *, visibility: float = 1.0, weight: float = 0.5, detector: str = "", confidence: float = 0.3
    ) -> Callable[[Image.Image], Image.Image]:
        """image → image with its faces restored; the model and detector are loaded now, so a missing file fails
        the request before anything is generated."""
        model, found = self.model(kind), self.detector(detector)

        def run(image: Image.Image) -> Image.Image:
            return restore_faces(image, model, found.detect(image, confidence), visibility=visibility, weight=weight)

        return run
