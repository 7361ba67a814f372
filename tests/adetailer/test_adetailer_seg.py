"""ADetailer with a segmentation detector (YOLOv8-seg layout: mask coefficients + prototypes, a tiny ONNX model
written locally): the region's mask is its segment, not its box, through OpenCV's DNN module; the detailer
inpaints only the segment (box corners outside it keep their pixels); dilate/erode grow and shrink the segment."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.factories_faces import INPUT, cell_box, write_tiny_seg_detector
from webui.faces.detect import Detector, region_mask

CELL = 19  # row 2, col 3 of the detector's grid
RADIUS = 28.0  # the segment: a disk of 28 input pixels around the cell's centre


@pytest.fixture(scope="module")
def seg_detector(tmp_path_factory):
    return write_tiny_seg_detector(tmp_path_factory.mktemp("seg") / "face_seg.onnx", cell=CELL, radius=RADIUS)


def _disk(size: tuple[int, int]) -> np.ndarray:
    """The expected segment in image pixels: the disk mapped through the letterbox."""
    w, h = size
    scale = INPUT / max(w, h)
    x0, y0, x1, y1 = cell_box(CELL, size)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= (RADIUS / scale) ** 2


@pytest.mark.parametrize("size", [(128, 128), (160, 96)])
def test_the_mask_is_the_segment_inside_the_box(seg_detector, size):
    boxes = Detector(seg_detector).detect(Image.new("RGB", size, (90, 90, 90)), 0.5)
    assert len(boxes) == 1 and (boxes[0].x0, boxes[0].y0, boxes[0].x1, boxes[0].y1) == cell_box(CELL, size)
    mask, disk = boxes[0].mask, _disk(size)
    assert mask.shape == (size[1], size[0]) and mask.dtype == bool
    # the disk up to a pixel of interpolation at its rim; none of the box's corners
    assert (mask ^ disk).sum() <= 0.3 * disk.sum() and (mask & disk).sum() >= 0.8 * disk.sum()
    x0, y0, x1, y1 = cell_box(CELL, size)
    assert not mask[y0, x0] and not mask[y0, x1 - 1] and not mask[y1 - 1, x0] and not mask[y1 - 1, x1 - 1]
    assert not mask[:y0].any() and not mask[y1:].any() and not mask[:, :x0].any() and not mask[:, x1:].any()
    grown = np.asarray(region_mask(size, boxes[0], 3)) > 0
    shrunk = np.asarray(region_mask(size, boxes[0], -2)) > 0
    assert grown.sum() > mask.sum() > shrunk.sum() > 0 and (shrunk <= mask).all() and (mask <= grown).all()
    assert not (np.asarray(region_mask(size, boxes[0], -50)) > 0).any()


@pytest.fixture
def seg_client(make_app, data_dir, seg_detector):
    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    folder = data_dir / "models" / "adetailer"
    folder.mkdir(parents=True)
    (folder / "face_seg.onnx").write_bytes(seg_detector.read_bytes())
    with TestClient(build_fastapi(make_app("--nowebui"))) as c:
        yield c


def _png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"), dtype=np.int16)


BASE = {"prompt": "a portrait", "steps": 3, "seed": 11, "width": 128, "height": 128, "sampler_name": "Euler"}
UNIT = {
    "ad_model": "face_seg.pt",
    "ad_prompt": "a detailed face",
    "ad_denoising_strength": 1.0,
    "ad_mask_blur": 0,
    "ad_dilate_erode": 0,
    "ad_confidence": 0.5,
}


def test_the_detailer_inpaints_the_segment_not_the_box(seg_client):
    plain = _png(seg_client.post("/sdapi/v1/txt2img", json=BASE).json()["images"][0])
    r = seg_client.post(
        "/sdapi/v1/txt2img", json={**BASE, "alwayson_scripts": {"ADetailer": {"args": [True, False, UNIT]}}}
    )
    assert r.status_code == 200, r.text
    detailed = _png(r.json()["images"][0])
    disk = _disk((128, 128))
    rim = np.zeros_like(disk)  # a pixel around the disk: interpolation at its edge
    rim[1:-1, 1:-1] = disk[:-2, 1:-1] | disk[2:, 1:-1] | disk[1:-1, :-2] | disk[1:-1, 2:] | disk[1:-1, 1:-1]
    outside = ~(rim | disk)
    changed = np.abs(plain - detailed).max(axis=2) > 0
    assert not changed[outside].any()  # the box's corners included
    assert np.abs(plain[disk] - detailed[disk]).mean() > 3
    x0, y0, x1, y1 = cell_box(CELL, (128, 128))
    corners = np.zeros_like(disk)
    corners[y0:y1, x0:x1] = True
    assert (corners & outside).sum() > 100  # the box has that many pixels the segment leaves alone
