"""The detailer (built-in extension `adetailer`): ADetailer's API args and infotext, a tiny ONNX detector that fires
on a known cell, only that region inpainted, missing detectors named, hostile args refused."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.factories_faces import cell_box, write_tiny_detector
from webui.infotext import build_infotext, parse_infotext

CELL = 19  # row 2, col 3 of the detector's grid


@pytest.fixture(scope="module")
def fixed_detector(tmp_path_factory):
    return write_tiny_detector(tmp_path_factory.mktemp("ad") / "face_fixed.onnx", mode="fixed", cell=CELL)


@pytest.fixture
def ad_client(make_app, data_dir, fixed_detector):
    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    folder = data_dir / "models" / "adetailer"
    folder.mkdir(parents=True)
    (folder / "face_fixed.onnx").write_bytes(fixed_detector.read_bytes())
    (folder / "hand_yolov8n.pt").write_bytes(b"a pickle, never read")
    app = make_app("--nowebui")
    with TestClient(build_fastapi(app)) as c:
        c.easel_app = app
        yield c


def _units():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "extensions" / "adetailer" / "lib" / "units.py"
    spec = importlib.util.spec_from_file_location("ad_units_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"), dtype=np.int16)


BASE = {"prompt": "a portrait", "steps": 3, "seed": 11, "width": 128, "height": 128, "sampler_name": "Euler"}
UNIT = {
    "ad_model": "face_fixed.pt",
    "ad_prompt": "a detailed face",
    "ad_denoising_strength": 0.9,
    "ad_mask_blur": 2,
    "ad_dilate_erode": 0,
    "ad_confidence": 0.5,
}


def test_only_the_detected_region_is_inpainted_and_infotext_round_trips(ad_client):
    plain = ad_client.post("/sdapi/v1/txt2img", json=BASE).json()
    r = ad_client.post(
        "/sdapi/v1/txt2img", json={**BASE, "alwayson_scripts": {"ADetailer": {"args": [True, False, UNIT]}}}
    )
    assert r.status_code == 200, r.text
    detailed = r.json()
    a, b = _png(plain["images"][0]), _png(detailed["images"][0])
    assert a.shape == b.shape == (128, 128, 3)
    x0, y0, x1, y1 = cell_box(CELL, (128, 128))
    margin = 2 * 2 + 2  # the mask blur's reach (PIL's Gaussian: about 2 × radius) and rounding
    outside = np.ones((128, 128), bool)
    outside[max(0, y0 - margin) : y1 + margin, max(0, x0 - margin) : x1 + margin] = False
    assert np.array_equal(a[outside], b[outside])
    assert np.abs(a[y0:y1, x0:x1] - b[y0:y1, x0:x1]).mean() > 3
    info = json.loads(detailed["info"])["infotexts"][0]
    for field in (
        "ADetailer model: face_fixed.pt",
        "ADetailer confidence: 0.5",
        "ADetailer denoising strength: 0.9",
        "ADetailer mask blur: 2",
        "ADetailer prompt: a detailed face",
        "ADetailer version: 1.0.0",
    ):
        assert field in info, (field, info)
    assert "ADetailer" not in json.loads(plain["info"])["infotexts"][0]
    # the same request again gives the same pixels (the inner inpaint is seeded from the image's seed)
    again = ad_client.post(
        "/sdapi/v1/txt2img", json={**BASE, "alwayson_scripts": {"ADetailer": {"args": [True, False, UNIT]}}}
    ).json()
    assert np.array_equal(_png(again["images"][0]), b)


def test_disabled_or_no_detection_leaves_the_image(ad_client):
    plain = _png(ad_client.post("/sdapi/v1/txt2img", json=BASE).json()["images"][0])
    off = ad_client.post(
        "/sdapi/v1/txt2img", json={**BASE, "alwayson_scripts": {"ADetailer": {"args": [False, False, UNIT]}}}
    )
    assert np.array_equal(_png(off.json()["images"][0]), plain)
    unsure = {**UNIT, "ad_confidence": 0.99}  # the detector scores its cell 0.95
    r = ad_client.post("/sdapi/v1/txt2img", json={**BASE, "alwayson_scripts": {"ADetailer": {"args": [unsure]}}})
    assert r.status_code == 200 and np.array_equal(_png(r.json()["images"][0]), plain)


def test_detectors_are_listed_with_what_they_need(ad_client):
    listed = ad_client.get("/adetailer/v1/ad_model").json()
    assert "face_fixed.onnx" in listed["ad_model"] and "hand_yolov8n.pt" not in listed["ad_model"]
    assert "hand_yolov8n.onnx" in listed["unavailable"]["hand_yolov8n.pt"]
    assert ad_client.get("/adetailer/v1/version").json() == {"version": "1.0.0"}
    for name, needs in (("hand_yolov8n.pt", "hand_yolov8n.onnx"), ("person_yolov8s-seg.pt", "person_yolov8s-seg.onnx")):
        r = ad_client.post(
            "/sdapi/v1/txt2img",
            json={**BASE, "alwayson_scripts": {"ADetailer": {"args": [True, False, {"ad_model": name}]}}},
        )
        assert r.status_code == 422 and needs in r.text and "models/adetailer" in r.text


@pytest.mark.parametrize(
    "args",
    [
        [True, False, {**UNIT, "ad_confidence": 1e9}],
        [True, False, {**UNIT, "ad_denoising_strength": -1}],
        [True, False, {**UNIT, "ad_mask_blur": 10**9}],
        [True, False, {**UNIT, "ad_model": "../../etc/passwd"}],
        [True, False, {**UNIT, "ad_model": "/etc/passwd"}],
        [True, False, {**UNIT, "ad_prompt": "x" * 20000}],
        [True, False, "face_fixed.pt"],
        ["yes", False, UNIT],
        [True, False, UNIT, UNIT, UNIT],
    ],
    ids=["conf", "denoise", "blur", "dotdot", "abs", "huge", "str-unit", "str-flag", "too-many"],
)
def test_hostile_args_are_4xx_json_and_the_server_survives(ad_client, args):
    r = ad_client.post(
        "/sdapi/v1/txt2img", json={**BASE, "steps": 1, "alwayson_scripts": {"ADetailer": {"args": args}}}
    )
    assert 400 <= r.status_code < 500 and r.headers["content-type"].startswith("application/json"), r.text
    body = '{"prompt": "x", "alwayson_scripts": {"ADetailer": {"args": [true, false, {"ad_confidence": NaN}]}}}'
    r = ad_client.post("/sdapi/v1/txt2img", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500
    assert ad_client.get("/adetailer/v1/version").status_code == 200
    assert ad_client.get("/sdapi/v1/scripts").status_code == 200


def test_units_parse_old_and_new_forms_and_infotext_round_trips():
    units = _units()
    names = ("ad_enable", "skip_img2img", "unit_0", "unit_1")
    enable, skip, parsed = units.parse_args({"ad_enable": True, "skip_img2img": True, "unit_0": UNIT}, names)
    assert enable and skip and parsed[0].ad_model == "face_fixed.pt" and parsed[0].ad_confidence == 0.5
    enable, skip, parsed = units.parse_args({"ad_enable": UNIT, "skip_img2img": {"ad_model": "hand.pt"}}, names)
    assert enable and not skip and [u.ad_model for u in parsed] == ["face_fixed.pt", "hand.pt"]
    u = parsed[0]
    assert u.prompt_for(0, "main") == "a detailed face"
    sep = units.Unit(ad_model="x", ad_prompt="[PROMPT], left [SEP] right")
    assert sep.prompt_for(0, "main") == "main, left" and sep.prompt_for(5, "main") == "right"
    params = units.infotext(parsed, "1.0.0")
    assert params["ADetailer model 2nd"] == "hand.pt" and params["ADetailer version"] == "1.0.0"
    text = build_infotext("p", "", {"Steps": 3, **params})
    back = units.from_infotext(parse_infotext(text), 3)
    assert back[0]["ad_model"] == "face_fixed.pt" and back[0]["ad_prompt"] == "a detailed face"
    assert back[0]["ad_confidence"] == 0.5 and back[0]["ad_mask_blur"] == 2
    assert back[0]["ad_denoising_strength"] == 0.9 and back[1]["ad_model"] == "hand.pt" and back[2] is None


def test_accordion_builds_and_an_infotext_pastes_back(ad_client):
    from webui.ui import build_ui

    app = ad_client.easel_app
    demo = build_ui(app)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    for elem_id in (
        "txt2img_ad_enable",
        "txt2img_ad_unit_0_model",
        "txt2img_ad_unit_1_prompt",
        "img2img_ad_skip_img2img",
        "txt2img_ad_unavailable",
    ):
        assert elem_id in ids, elem_id
    found = app.extensions.find_script("ADetailer", "txt2img")
    script = found[1]
    text = build_infotext(
        "p",
        "",
        {
            "Steps": 3,
            "ADetailer model": "face_fixed.onnx",
            "ADetailer prompt": "a, face",
            "ADetailer denoising strength": 0.3,
            "ADetailer version": "1.0.0",
        },
    )
    pasted = script.paste(parse_infotext(text), False)
    assert pasted["ad_enable"] is True
    assert pasted["unit_0"][:3] == ["face_fixed.onnx", "a, face", None] and pasted["unit_0"][6] == 0.3
    assert pasted["unit_1"][0] == "None"
    assert script.paste(parse_infotext("p\nSteps: 3, Seed: 1"), False) == {}
