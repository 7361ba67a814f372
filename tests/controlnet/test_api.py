"""sd-webui-controlnet's routes over HTTP, from the built-in extension as Easel loads it from the repo."""

from __future__ import annotations

import numpy as np
import pytest

from tests.controlnet.conftest import b64, square, unb64


@pytest.fixture
def cn_client(make_app, controlnet_dir):
    from fastapi.testclient import TestClient

    from tests.extensions.conftest import build_server

    application = make_app("--nowebui")
    application.options.set({"control_net_models_path": str(controlnet_dir)}, persist=False)
    with TestClient(build_server(application)) as c:
        yield c


def test_builtin_extension_loads(cn_client):
    items = {e["name"]: e for e in cn_client.get("/sdapi/v1/extensions").json()}
    assert items["controlnet"]["builtin"] is True and items["controlnet"]["status"] == "ok", items["controlnet"]


def test_model_module_lists_and_version(cn_client):
    models = cn_client.get("/ext/controlnet/model_list").json()["model_list"]
    assert sorted(m.split(" [")[0] for m in models) == ["tiny-canny", "tiny-other", "tiny-xl"]
    mods = cn_client.get("/ext/controlnet/module_list").json()
    assert mods["module_list"] == ["none", "canny", "shuffle", "lineart_standard"]
    assert [s["name"] for s in mods["module_detail"]["canny"]["sliders"]] == [
        "Canny Low Threshold",
        "Canny High Threshold",
    ]
    # sd-webui-controlnet's model_free: no ControlNet model needed (reference-only); canny and none need one
    assert not mods["module_detail"]["canny"]["model_free"] and not mods["module_detail"]["none"]["model_free"]
    assert "ControlNetHED.pth not found" in mods["unavailable"]["softedge_hed"]  # listed with the reason, not hidden
    assert "table5_pidinet.pth not found" in mods["unavailable"]["softedge_pidinet"]
    assert cn_client.get("/ext/controlnet/version").json() == {"version": 2}


def test_detect(cn_client):
    r = cn_client.post(
        "/ext/controlnet/detect",
        json={
            "controlnet_module": "canny",
            "controlnet_input_images": [b64(square()), b64(square(size=(64, 32), box=(8, 8, 24, 24)))],
            "controlnet_processor_res": 64,
            "controlnet_threshold_a": 100,
            "controlnet_threshold_b": 200,
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["info"] == "Success"
    first, second = (unb64(x) for x in body["images"])
    assert first.size == (64, 64) and second.size == (128, 64)
    a = np.asarray(first)
    assert set(np.unique(a)) == {0, 255} and not a[22:42, 22:42].any()


@pytest.mark.parametrize(
    "body, message",
    [
        ({"controlnet_module": "depth", "controlnet_input_images": ["x"]}, "unknown module 'depth'"),
        ({"controlnet_module": "softedge_hed", "controlnet_input_images": ["x"]}, "ControlNetHED.pth not found"),
        ({"controlnet_module": "canny", "controlnet_input_images": ["bm90IGFuIGltYWdl"]}, "not a decodable image"),
        ({"controlnet_module": "canny", "controlnet_input_images": []}, "empty"),
        (
            {"controlnet_module": "canny", "controlnet_input_images": ["x"], "controlnet_processor_res": 9000},
            "64..2048",
        ),
    ],
)
def test_detect_refuses_bad_input(cn_client, body, message):
    r = cn_client.post("/ext/controlnet/detect", json=body)
    assert r.status_code == 422, r.text
    assert message in r.text


def test_txt2img_through_alwayson_scripts_end_to_end(cn_client):
    """sd-webui-controlnet clients' shape: the unit steers the generation; weight 0 is exactly the plain output."""
    import numpy as np

    from tests.controlnet.conftest import b64, square, unb64

    def run(units=None):
        body = {"prompt": "a cat", "steps": 3, "seed": 7}
        if units is not None:
            body["alwayson_scripts"] = {"controlnet": {"args": units}}
        r = cn_client.post("/sdapi/v1/txt2img", json=body)
        assert r.status_code == 200, r.text
        return np.asarray(unb64(r.json()["images"][0]))

    unit = {"enabled": True, "module": "canny", "model": "tiny-canny", "image": b64(square()), "weight": 1.0}
    plain, controlled = run(), run([unit])
    assert not np.array_equal(plain, controlled)
    assert np.array_equal(plain, run([{**unit, "weight": 0.0}]))
    assert np.array_equal(plain, run())  # the next request without units is plain again
    bad = cn_client.post(
        "/sdapi/v1/txt2img",
        json={"prompt": "x", "alwayson_scripts": {"controlnet": {"args": [{**unit, "model": "missing"}]}}},
    )
    assert bad.status_code == 422 and "missing" in bad.json()["detail"]


def test_unit_and_detect_numbers_are_bounded(cn_client):
    """Issue #16 item 2: every number of a unit (and of /detect) is range-checked before anything runs; a number too
    large for a float (an int literal of 400 digits) or NaN/Infinity is a 422, and the extension stays enabled."""
    import json

    unit = {"enabled": True, "module": "canny", "model": "tiny-canny", "image": b64(square())}
    bad = {
        "processor_res": [10**9, -5, 10**400, "1e309"],
        "weight": [-1, 10**9, "NaN"],
        "threshold_a": [10**9, -2, "Infinity"],
        "threshold_b": [-(10**9), "-Infinity"],
        "guidance_start": [-0.1, 2, 10**400],
        "guidance_end": [1.5, "NaN"],
    }
    for field, values in bad.items():
        for value in values:
            literal = value if isinstance(value, str) else json.dumps(value)
            units = json.dumps([{**unit, field: "@"}]).replace('"@"', literal)
            body = '{"prompt": "x", "steps": 1, "alwayson_scripts": {"controlnet": {"args": ' + units + "}}}"
            r = cn_client.post("/sdapi/v1/txt2img", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 422, (field, literal, r.text[:300])
            assert {"error", "detail"} <= set(r.json())
    for field, value in (
        ("controlnet_processor_res", 10**9),
        ("controlnet_threshold_a", 10**9),
        ("controlnet_threshold_b", -(10**9)),
        ("controlnet_input_images", [b64(square())] * 65),
    ):
        r = cn_client.post(
            "/ext/controlnet/detect",
            json={"controlnet_module": "canny", "controlnet_input_images": [b64(square())], field: value},
        )
        assert r.status_code == 422, (field, r.text[:300])
    items = {e["name"]: e for e in cn_client.get("/sdapi/v1/extensions").json()}
    assert items["controlnet"]["status"] == "ok" and items["controlnet"]["enabled"], items["controlnet"]
