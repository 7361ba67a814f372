"""img2img and inpainting for FLUX.1 and SD 3.5 at tiny scale through /sdapi/v1/img2img: the requested size, the same
seed gives the same pixels, the strength matters, and inpainting leaves pixels outside the (blurred) mask untouched."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from tests.families.conftest import merge_models

pytestmark = pytest.mark.filterwarnings("ignore")
MODELS = {"flux": "flux1-dev-tiny", "sd3": "sd35_medium_tiny"}


@pytest.fixture(params=["flux", "sd3"])
def family(request):
    return request.param


@pytest.fixture
def data_dir(tmp_path, family, flux_models, sd3_models):
    merge_models(tmp_path / "models", flux_models if family == "flux" else sd3_models)
    return tmp_path


def _b64(im: Image.Image) -> str:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _init(size=(80, 48)):
    im = Image.new("RGB", size, (30, 60, 200))
    ImageDraw.Draw(im).ellipse((20, 8, 60, 40), fill=(220, 40, 40))
    return im


def _mask(size=(64, 48), box=(16, 12, 40, 36)):
    m = Image.new("L", size, 0)
    ImageDraw.Draw(m).rectangle(box, fill=255)
    return m


def _img2img(client, family, **body):
    payload = {
        "prompt": "a red circle",
        "negative_prompt": "blurry",
        "steps": 4,
        "width": 64,
        "height": 48,
        "seed": 3,
        "cfg_scale": 2,
        "denoising_strength": 0.6,
        "init_images": [_b64(_init())],
        "override_settings": {"sd_model_checkpoint": MODELS[family]},
        **body,
    }
    r = client.post("/sdapi/v1/img2img", json=payload)
    assert r.status_code == 200, r.text
    return (
        np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))).astype(int),
        json.loads(r.json()["info"])["infotexts"][0],
    )


def test_flow_img2img_size_seed_strength(client, family):
    a, info = _img2img(client, family)
    assert a.shape == (48, 64, 3)  # the 80x48 input resized to the requested 64x48
    b, _ = _img2img(client, family)
    assert np.array_equal(a, b)
    c, _ = _img2img(client, family, denoising_strength=1.0)
    d, _ = _img2img(client, family, seed=4)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    assert "Denoising strength: 0.6" in info and f"Model: {MODELS[family]}" in info
    low, _ = _img2img(client, family, denoising_strength=0.05)  # at least one step (random VAE: no likeness test)
    assert low.shape == (48, 64, 3) and not np.array_equal(low, a)


@pytest.mark.parametrize("invert", [0, 1])
def test_flow_inpaint_keeps_unmasked_pixels(client, family, invert):
    from webui.generation.images import prepare_mask

    out, info = _img2img(
        client,
        family,
        mask=_b64(_mask()),
        mask_blur=4,
        denoising_strength=1.0,
        inpainting_mask_invert=invert,
        inpainting_fill=1,
    )
    src = np.asarray(_init().resize((64, 48), Image.LANCZOS)).astype(int)
    _, blurred = prepare_mask(_mask(), (64, 48), invert=bool(invert), blur=4)
    untouched = np.asarray(blurred) == 0
    assert untouched.any() and np.abs(out - src)[untouched].max() <= 2
    assert np.abs(out - src)[np.asarray(blurred) == 255].mean() > 5
    again, _ = _img2img(
        client,
        family,
        mask=_b64(_mask()),
        mask_blur=4,
        denoising_strength=1.0,
        inpainting_mask_invert=invert,
        inpainting_fill=1,
    )
    assert np.array_equal(out, again)
    assert "Mask blur: 4" in info and "Masked content: original" in info


def test_flow_inpaint_refuses_what_it_cannot_do(client, family):
    body = {
        "prompt": "x",
        "steps": 2,
        "width": 64,
        "height": 48,
        "init_images": [_b64(_init())],
        "mask": _b64(_mask()),
        "override_settings": {"sd_model_checkpoint": MODELS[family]},
    }
    r = client.post("/sdapi/v1/img2img", json={**body, "inpaint_full_res": True})
    assert r.status_code == 422 and "Only masked" in r.text
    r = client.post("/sdapi/v1/img2img", json={**body, "inpainting_fill": 2})
    assert r.status_code == 422 and "latent noise" in r.text


def test_prompt_encoders_run_without_autograd(app, client, family):
    """A job's prompt encoders ran outside the pipelines' own no_grad and recorded an autograd graph: FLUX's T5 took
    twice as long and the graph kept its activations alive through the whole call."""
    model = app.models.load(MODELS[family])
    seen: list[bool] = []
    handles = [
        enc.register_forward_hook(lambda m, a, out: seen.append(torch.is_grad_enabled()))
        for enc in (model.pipeline.text_encoder, model.pipeline.text_encoder_2)
    ]
    try:
        _img2img(client, family)
        r = client.post(
            "/sdapi/v1/txt2img",
            json={
                "prompt": "a red circle",
                "steps": 2,
                "width": 64,
                "height": 64,
                "cfg_scale": 2,
                "override_settings": {"sd_model_checkpoint": MODELS[family]},
            },
        )
        assert r.status_code == 200, r.text
    finally:
        for h in handles:
            h.remove()
    assert len(seen) >= 4 and not any(seen), seen
