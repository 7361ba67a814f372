"""#19 item 18: "Batch size: N, Batch pos: i" in each image's infotext of a batch of 2 or more, where A1111 writes
them (after Model, before Variation seed; the position counts from 0 inside each batch), in saved PNGs and in the
API's `info`; a batch of one has neither."""

from __future__ import annotations

import base64
import io
import json

from PIL import Image

from webui.generation.requests import Txt2ImgRequest
from webui.infotext import PARAM_RE, parse_infotext


def _keys(text: str) -> list[str]:
    return [k for k, _ in PARAM_RE.findall(text.split("\n")[-1])]


def test_batch_fields_in_saved_pngs_in_a1111_order(app):
    req = Txt2ImgRequest(
        prompt="a red circle",
        steps=2,
        seed=7,
        batch_size=2,
        n_iter=2,
        save_images=True,
        subseed=3,
        subseed_strength=0.1,
    )
    r = app.jobs.wait(app.submit_txt2img(req, from_api=True))
    texts = r.infotexts[r.info["index_of_first_image"] :]  # after the grid, when it is returned
    assert [parse_infotext(t)["Batch pos"] for t in texts] == ["0", "1", "0", "1"]
    assert all(parse_infotext(t)["Batch size"] == "2" for t in texts)
    keys = _keys(texts[1])
    assert keys.index("Model") + 1 == keys.index("Batch size") == keys.index("Batch pos") - 1
    assert keys.index("Batch pos") < keys.index("Variation seed")
    assert "Batch size: 2, Batch pos: 1, " in texts[1]
    assert len(r.paths) == 4
    for path, text in zip(r.paths, texts):
        with Image.open(path) as im:
            assert im.info["parameters"] == text


def test_single_image_has_no_batch_fields(app):
    r = app.jobs.wait(app.submit_txt2img(Txt2ImgRequest(prompt="x", steps=2, seed=1, n_iter=2), from_api=True))
    assert all("Batch size" not in t and "Batch pos" not in t for t in r.infotexts)


def test_api_info_and_images_carry_batch_fields(client):
    res = client.post("/sdapi/v1/txt2img", json={"prompt": "a blue square", "steps": 2, "seed": 5, "batch_size": 3})
    assert res.status_code == 200, res.text
    info = json.loads(res.json()["info"])
    assert [parse_infotext(t)["Batch pos"] for t in info["infotexts"]] == ["0", "1", "2"]
    assert info["batch_size"] == 3
    with Image.open(io.BytesIO(base64.b64decode(res.json()["images"][2]))) as im:
        assert "Batch size: 3, Batch pos: 2" in im.info["parameters"]
