"""Image fields decode only PNG, JPEG, WEBP, BMP, GIF and TIFF (issue #16 item 17).

Pillow alone would open some 40 formats, EPS through Ghostscript. The refused bytes here are real, valid images
that Pillow writes itself (and would decode): each is a 422 naming the accepted formats, in every image field.
"""

from __future__ import annotations

import base64
import io

import pytest
import requests

from tests.api.conftest import wait_idle

ALLOWED = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
REFUSED = ("ICO", "PCX", "TGA", "PPM", "SGI", "DDS", "IM", "ICNS", "QOI", "SPIDER", "XBM", "JPEG2000", "EPS")


def image_b64(fmt: str, size=(64, 64)) -> str:
    from PIL import Image

    image = Image.new("RGB", size, (200, 30, 30))
    if fmt == "XBM":
        image = image.convert("1")
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture
def base(api_server):
    wait_idle(api_server.app)
    yield api_server.url
    wait_idle(api_server.app)


def fields(data: str) -> dict[str, tuple[str, dict]]:
    """Every API route that takes a user image, with `data` in its image field."""
    return {
        "png-info": ("/sdapi/v1/png-info", {"image": data}),
        "extras": ("/sdapi/v1/extra-single-image", {"image": data, "upscaler_1": "Lanczos", "upscaling_resize": 1}),
        "extras batch": (
            "/sdapi/v1/extra-batch-images",
            {"imageList": [{"data": data, "name": "a"}], "upscaler_1": "Lanczos", "upscaling_resize": 1},
        ),
        "img2img": ("/sdapi/v1/img2img", {"init_images": [data], "steps": 1, "prompt": "x"}),
        "inpaint mask": ("/sdapi/v1/img2img", {"init_images": [image_b64("PNG")], "mask": data, "steps": 1}),
        "controlnet": (
            "/ext/controlnet/detect",
            {"controlnet_module": "canny", "controlnet_input_images": [data], "controlnet_processor_res": 64},
        ),
    }


@pytest.mark.parametrize("fmt", REFUSED)
def test_other_formats_are_refused_in_every_image_field(base, fmt):
    from PIL import Image

    data = image_b64(fmt)
    if fmt != "EPS":  # the bytes are a real image Pillow would decode (EPS needs Ghostscript, absent here)
        Image.open(io.BytesIO(base64.b64decode(data))).load()
    for name, (route, body) in fields(data).items():
        r = requests.post(base + route, json=body, timeout=60)
        assert r.status_code == 422, (fmt, name, r.status_code, r.text[:300])
        if name == "controlnet":
            assert "not a decodable image" in r.text, (fmt, r.text[:300])
        else:
            assert "PNG, JPEG, WEBP, BMP, GIF, TIFF" in r.json()["detail"], (fmt, name, r.text[:300])


@pytest.mark.parametrize("fmt", ALLOWED)
def test_the_six_formats_decode(base, fmt):
    data = image_b64(fmt)
    r = requests.post(base + "/sdapi/v1/png-info", json={"image": data}, timeout=30)
    assert r.status_code == 200, (fmt, r.text[:300])
    r = requests.post(
        base + "/sdapi/v1/extra-single-image",
        timeout=60,
        json={"image": "data:image/x;base64," + data, "upscaler_1": "Lanczos", "upscaling_resize": 1},
    )
    assert r.status_code == 200, (fmt, r.text[:300])
    r = requests.post(
        base + "/ext/controlnet/detect",
        timeout=60,
        json={"controlnet_module": "canny", "controlnet_input_images": [data], "controlnet_processor_res": 64},
    )
    assert r.status_code == 200, (fmt, r.text[:300])
