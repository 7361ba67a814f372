"""Restore faces: GFPGAN (random weights, real spandrel layout) on the faces a tiny ONNX detector finds, through
txt2img's `restore_faces`, the settings and Extras; clear messages when a model or the detector is missing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.factories_faces import cell_box
from tests.faces.conftest import link_into
from webui.faces.detect import Box
from webui.faces.restore import FaceRestoreError, FaceRestorers, crop_square, feather_mask
from webui.generation.requests import Txt2ImgRequest


def test_crop_stays_inside_the_image_and_the_mask_fades_to_its_edge():
    assert crop_square(Box(0, 0, 20, 30, 1.0), (100, 80)) == (0, 0, 48, 48)
    assert crop_square(Box(90, 70, 100, 80, 1.0), (100, 80)) == (84, 64, 100, 80)
    assert crop_square(Box(0, 0, 100, 100, 1.0), (60, 40)) == (20, 0, 60, 40)
    mask = np.asarray(feather_mask(64, Box(20, 20, 44, 44, 1.0), (0, 0)))
    assert mask[32, 32] == 255 and mask[0].max() == 0 and mask[:, -1].max() == 0


def test_missing_models_and_detector_name_their_folders(tmp_path, detectors):
    faces = FaceRestorers(tmp_path)
    with pytest.raises(FaceRestoreError, match=r"models/GFPGAN"):
        faces.model("GFPGAN")
    with pytest.raises(FaceRestoreError, match=r"models/Codeformer"):
        faces.model("CodeFormer")
    with pytest.raises(FaceRestoreError, match=r"face_yolov8n\.onnx.*models/adetailer"):
        faces.detector("")
    with pytest.raises(FaceRestoreError, match=r"hand\.onnx.*models/adetailer"):
        faces.detector("hand.pt")
    with pytest.raises(FaceRestoreError, match="unknown face restoration model"):
        faces.model("../GFPGAN")


def test_wrong_files_are_refused_with_the_reason(tmp_path):
    from safetensors.torch import save_file
    import torch

    from tests.generation.test_extras import tiny_esrgan

    tiny_esrgan(tmp_path / "GFPGAN" / "esrgan.pth")
    with pytest.raises(FaceRestoreError, match="is a ESRGAN SR model, not GFPGAN"):
        FaceRestorers(tmp_path).model("GFPGAN")
    (tmp_path / "Codeformer").mkdir()
    save_file({"w": torch.zeros(2)}, str(tmp_path / "Codeformer" / "codeformer.safetensors"))
    with pytest.raises(FaceRestoreError, match="S-Lab License"):
        FaceRestorers(tmp_path).model("CodeFormer")
    (tmp_path / "GFPGAN" / "esrgan.pth").unlink()
    (tmp_path / "GFPGAN" / "pickle.pth").write_bytes(b"\x80\x04cos\nsystem\n.")
    with pytest.raises(FaceRestoreError, match="can't read pickle.pth"):
        FaceRestorers(tmp_path).model("GFPGAN")


def _arr(img):
    return np.asarray(img.convert("RGB"), dtype=np.int16)


def test_txt2img_restore_faces_changes_only_the_face_and_writes_infotext(make_app, data_dir, gfpgan_file, detectors):
    link_into(gfpgan_file, data_dir / "models" / "GFPGAN")
    link_into(detectors / "face_fixed.onnx", data_dir / "models" / "adetailer")
    app = make_app("--nowebui")
    base = {"prompt": "a face", "steps": 2, "seed": 3, "width": 128, "height": 128}
    plain = app.jobs.wait(app.submit_txt2img(Txt2ImgRequest(**base), from_api=True))
    fixed = app.jobs.wait(app.submit_txt2img(Txt2ImgRequest(**base, restore_faces=True), from_api=True))
    a, b = _arr(plain.images[0]), _arr(fixed.images[0])
    assert a.shape == b.shape == (128, 128, 3)
    x0, y0, x1, y1 = cell_box(19, (128, 128))  # the box the fixed detector reports
    cx0, cy0, cx1, cy1 = crop_square(Box(x0, y0, x1, y1, 1.0), (128, 128))
    outside = np.ones((128, 128), bool)
    outside[cy0:cy1, cx0:cx1] = False
    assert np.array_equal(a[outside], b[outside])  # untouched outside the face's crop
    assert np.abs(a[y0:y1, x0:x1] - b[y0:y1, x0:x1]).mean() > 5  # the face itself is replaced
    assert "Face restoration: GFPGAN" in fixed.infotexts[0] and "Face restoration" not in plain.infotexts[0]
    assert fixed.info["restore_faces"] is True and fixed.info["face_restoration_model"] == "GFPGAN"

    # Extras on the same app (the model stays loaded): a detector that finds nothing leaves the image as it is
    from webui.generation.extras import ExtrasRequest

    link_into(detectors / "face_red.onnx", data_dir / "models" / "adetailer")
    app.set_options({"face_restoration_detector": "face_red.onnx"})
    blue = Image.new("RGB", (96, 64), (0, 0, 200))
    out, texts, _ = app.extras(ExtrasRequest(gfpgan_visibility=0.5), [(blue, "x")])
    assert np.array_equal(_arr(out[0]), _arr(blue)) and texts[0] == "GFPGAN visibility: 0.5"


def test_restore_faces_without_models_is_a_422_naming_the_folder(client):
    body = {"prompt": "x", "steps": 1, "width": 64, "height": 64, "restore_faces": True}
    r = client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 422 and "models/GFPGAN" in r.text
    r = client.post("/sdapi/v1/extra-single-image", json={"image": "", "codeformer_visibility": 1})
    assert r.status_code in (400, 422)


@pytest.mark.parametrize(
    "field,value",
    [
        ("gfpgan_visibility", float("nan")),
        ("gfpgan_visibility", 2),
        ("codeformer_visibility", -1),
        ("codeformer_weight", 1e9),
        ("codeformer_weight", "Infinity"),
    ],
)
def test_extras_face_fields_are_bounded(client, field, value):
    import json

    body = json.dumps({"image": "", field: value}).replace("NaN", "NaN")
    r = client.post("/sdapi/v1/extra-single-image", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    "value", ["../../etc/passwd", "/etc/passwd", "x" * 5000, 5], ids=["dotdot", "abs", "huge", "int"]
)
def test_hostile_detector_setting_is_refused(client, value):
    r = client.post("/sdapi/v1/options", json={"face_restoration_detector": value})
    if r.status_code == 200:  # a plain text option may be stored; it is refused when used
        r = client.post(
            "/sdapi/v1/txt2img", json={"prompt": "x", "steps": 1, "width": 64, "height": 64, "restore_faces": True}
        )
    assert 400 <= r.status_code < 500 and r.headers["content-type"].startswith("application/json")
    assert client.get("/sdapi/v1/options").status_code == 200


def test_extras_tab_has_the_face_sliders_and_shows_the_missing_model(make_app):
    import gradio as gr

    from webui.ui.extras_tab import ExtrasTab

    app = make_app("--nowebui")
    with gr.Blocks():
        tab = ExtrasTab(app)
    assert [c.elem_id for c in tab.inputs[-3:]] == [
        "extras_gfpgan_visibility",
        "extras_codeformer_visibility",
        "extras_codeformer_weight",
    ]
    image = Image.new("RGB", (32, 32), (10, 20, 30))
    _, html = tab.run("single", image, None, "", "", True, False, 2, 64, 64, True, "None", "None", 0, 0.5, 0, 0)
    assert "models/GFPGAN" in html
