"""#19 item 17: limits in the words people use ("2048×2048", not "4194304 pixels"), over the A1111 API (the UI shows
the same service messages)."""

from __future__ import annotations

import base64
import io

import pytest
import requests
from PIL import Image

from webui.generation.cost import area_text


def test_area_text():
    assert area_text(2048 * 2048) == "2048×2048" and area_text(64 * 512 * 512) == "4096×4096"
    assert area_text(3_000_000) == "3 megapixels" and area_text(5000) == "5,000 pixels"


@pytest.mark.parametrize(
    "payload, says",
    [
        (
            {"width": 4096, "height": 4096},
            "size 4096×4096 is over the limit of 2048×2048 (setting max_generation_pixels)",
        ),
        (
            {"width": 512, "height": 512, "enable_hr": True, "hr_scale": 8},
            "hires size 4096×4096 is over the limit of 2048×2048",
        ),
        (
            {"width": 2048, "height": 2048, "batch_size": 8, "steps": 1},
            "a batch of 8 images of 2048×2048 is more than one batch may hold in memory (4096×4096 in all",
        ),
    ],
)
def test_size_limits_say_width_by_height(api_server, payload, says):
    r = requests.post(f"{api_server.url}/sdapi/v1/txt2img", json={"prompt": "x", "steps": 2, **payload}, timeout=30)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert says in detail and "4194304" not in detail and "pixels" not in detail.replace("_pixels", "")


def test_input_image_limit_says_width_by_height(api_server):
    buf = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buf, format="PNG", optimize=True)
    r = requests.post(
        f"{api_server.url}/sdapi/v1/png-info", timeout=30, json={"image": base64.b64encode(buf.getvalue()).decode()}
    )
    assert r.status_code == 413
    assert "5000×5000 pixels, over the limit of 4096×4096 (setting max_image_pixels)" in r.json()["detail"]
