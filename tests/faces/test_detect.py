"""YOLOv8-format ONNX detectors from models/adetailer, run by OpenCV: boxes, letterboxing, names, bad files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.factories_faces import cell_box
from webui.faces.detect import Detector, DetectorError, box_mask, find_detector, list_detectors


def _red_at(size, box):
    img = np.zeros((size[1], size[0], 3), np.uint8)
    img[box[1] : box[3], box[0] : box[2]] = (255, 0, 0)
    return Image.fromarray(img)


def test_finds_the_red_region_in_a_letterboxed_image(detectors):
    size = (320, 200)  # letterboxed: scale 2, 120 px of padding above and below
    want = cell_box(26, size)  # row 3, col 2 of the detector's grid
    assert want == (80, 60, 120, 100)
    boxes = Detector(detectors / "face_red.onnx").detect(_red_at(size, want), 0.5)
    assert len(boxes) == 1
    b = boxes[0]
    assert (b.x0, b.y0, b.x1, b.y1) == want and b.score > 0.99 and b.label == 0


def test_nothing_found_and_confidence_filters(detectors):
    det = Detector(detectors / "face_red.onnx")
    assert det.detect(Image.new("RGB", (100, 60), (0, 0, 200)), 0.3) == []
    half = cell_box(9, (640, 640))  # half a cell of red: score sigmoid(0) = 0.5
    img = _red_at((640, 640), (half[0], half[1], half[0] + 40, half[3]))
    assert len(det.detect(img, 0.4)) == 1 and det.detect(img, 0.6) == []


def test_box_mask_covers_only_the_boxes(detectors):
    size = (160, 160)
    box = cell_box(0, size)
    found = Detector(detectors / "face_red.onnx").detect(_red_at(size, box), 0.5)
    mask = np.asarray(box_mask(size, found))
    assert mask[box[1] : box[3], box[0] : box[2]].min() == 255 and mask.sum() == 255 * 20 * 20


@pytest.mark.parametrize("name", ["../face", "/etc/passwd", "a/b.onnx", "..", "", "  "])
def test_hostile_names_are_refused(tmp_path, name):
    with pytest.raises(DetectorError):
        find_detector(name, tmp_path)


def test_missing_detector_names_the_file_and_folder(tmp_path):
    with pytest.raises(DetectorError, match=r"face_yolov8n\.onnx.*models/adetailer"):
        find_detector("face_yolov8n.pt", tmp_path)


def test_pt_is_listed_with_the_onnx_it_needs(tmp_path, detectors):
    folder = tmp_path / "adetailer"
    folder.mkdir()
    (folder / "hand_yolov8n.pt").write_bytes(b"not read")
    (folder / "face_red.pt").write_bytes(b"not read")
    (folder / "face_red.onnx").write_bytes((detectors / "face_red.onnx").read_bytes())
    listed = {d.name: d for d in list_detectors(tmp_path)}
    assert "hand_yolov8n.onnx" in listed["hand_yolov8n.pt"].error and listed["hand_yolov8n.pt"].path is None
    assert listed["face_red.pt"].error is None and listed["face_red.pt"].path == folder / "face_red.onnx"
    assert find_detector("face_red.pt", tmp_path) == folder / "face_red.onnx"


def test_garbage_and_wrong_shaped_files_are_clear_errors(tmp_path):
    bad = tmp_path / "adetailer" / "bad.onnx"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(DetectorError, match="not an ONNX model"):
        Detector(bad)
