"""FLUX.1 Fill at tiny scale through the production path (tests/factories_fill.py): probed from the tensor shapes in
the BFL file, GGUF and diffusers-folder layouts, inpainting through /sdapi/v1/img2img on diffusers' FluxFillPipeline
(the requested size, same seed → same pixels, unmasked pixels untouched, the infotext pasted back), img2img without a
mask as whole-image inpainting, txt2img refused, FLUX.1 Depth still refused with its message."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.families.conftest import merge_models
from tests.families.lora_factory import write_flux_kohya

pytestmark = pytest.mark.filterwarnings("ignore")
FILL = "flux1-fill-dev-tiny"


@pytest.fixture(scope="session")
def fill_models(tmp_path_factory, flux_models):
    from tests.factories_fill import DEPTH, write_fill_file, write_fill_folder, write_fill_gguf

    root = tmp_path_factory.mktemp("flux-fill-models")
    merge_models(root, flux_models)  # clip_l, t5xxl, ae (and the dev/schnell files)
    write_fill_file(root)
    write_fill_gguf(root, "Q4_0")
    write_fill_folder(root / "Stable-diffusion" / "flux-fill-diffusers", seed=3)
    write_fill_file(root, name="flux1-depth-dev-tiny", channels=DEPTH)
    write_flux_kohya(root / "Lora" / "flux_kohya.safetensors")  # a FLUX dev LoRA, as users put on Fill
    return root


@pytest.fixture
def data_dir(tmp_path, fill_models):
    merge_models(tmp_path / "models", fill_models)
    return tmp_path


def _b64(im: Image.Image) -> str:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _init(size=(64, 48)):
    im = Image.new("RGB", size, (30, 60, 200))
    ImageDraw.Draw(im).ellipse((20, 8, 60, 40), fill=(220, 40, 40))
    return im


def _mask(size=(64, 48), box=(16, 12, 40, 36)):
    m = Image.new("L", size, 0)
    ImageDraw.Draw(m).rectangle(box, fill=255)
    return m


def _body(model=FILL, **body):
    return {
        "prompt": "a red circle",
        "steps": 3,
        "width": 64,
        "height": 48,
        "seed": 3,
        "cfg_scale": 1,
        "distilled_cfg_scale": 30,
        "denoising_strength": 1.0,
        "init_images": [_b64(_init())],
        "mask": _b64(_mask()),
        "mask_blur": 4,
        "inpainting_fill": 1,
        "override_settings": {"sd_model_checkpoint": model},
        **body,
    }


def _img2img(client, model=FILL, **body):
    r = client.post("/sdapi/v1/img2img", json=_body(model, **body))
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))).astype(int), info


def _untouched(out: np.ndarray, blur: int = 4, invert: bool = False) -> None:
    from webui.generation.images import prepare_mask

    src = np.asarray(_init()).astype(int)
    _, blurred = prepare_mask(_mask(), (64, 48), invert=invert, blur=blur)
    outside, inside = np.asarray(blurred) == 0, np.asarray(blurred) == 255
    assert outside.any() and np.abs(out - src)[outside].max() <= 2
    assert np.abs(out - src)[inside].mean() > 5


def test_probe_says_fill_and_refuses_depth(data_dir):
    from webui.errors import ModelLoadError
    from webui.models.loader import probe_file

    sd = data_dir / "models" / "Stable-diffusion"
    for name in (f"{FILL}.safetensors", f"{FILL}-Q4_0.gguf"):
        fill = probe_file(sd / name)
        assert (fill.family.value, fill.variant, fill.label, fill.inpainting) == (
            "flux",
            "flux-fill",
            "FLUX.1 Fill",
            True,
        )
        cfg = fill.configs["transformer"]
        assert (cfg["in_channels"], cfg["out_channels"], cfg["guidance_embeds"]) == (384, 64, True)
    dev = probe_file(sd / "flux1-dev-tiny.safetensors")
    assert (dev.variant, dev.inpainting, "out_channels" in dev.configs["transformer"]) == ("flux-dev", False, False)
    with pytest.raises(ModelLoadError, match="FLUX.1 Depth checkpoint: not supported yet"):
        probe_file(sd / "flux1-depth-dev-tiny.safetensors")


def test_fill_inpaint_size_seed_unmasked_infotext(client):
    a, info = _img2img(client)
    assert a.shape == (48, 64, 3)
    _untouched(a)
    b, _ = _img2img(client)
    assert np.array_equal(a, b)
    c, _ = _img2img(client, seed=4)
    d, _ = _img2img(client, distilled_cfg_scale=3.5)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)  # seed and distilled guidance reach the model
    text = info["infotexts"][0]
    assert "CFG scale: 1, Distilled CFG Scale: 30, Seed: 3" in text and "Denoising strength: 1" in text
    assert f"Model: {FILL}" in text and "Model hash: " in text
    assert "Module 1: ae, Module 2: clip_l, Module 3: t5xxl_fp16" in text and "Mask blur: 4" in text
    assert "warnings" not in info
    # pasted back: the infotext alone (with the same image and mask) gives the same pixels
    from webui.infotext import infotext_to_request_fields, parse_infotext

    fields = infotext_to_request_fields(parse_infotext(text))
    assert fields["distilled_cfg_scale"] == 30 and fields["denoising_strength"] == 1.0
    r = client.post(
        "/sdapi/v1/img2img",
        json={
            "infotext": text,
            "init_images": [_b64(_init())],
            "mask": _b64(_mask()),
            "override_settings": {"sd_model_checkpoint": FILL},
        },
    )
    assert r.status_code == 200, r.text
    pasted = np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))).astype(int)
    assert np.array_equal(pasted, a)


def test_fill_inverted_mask_and_system_report(client):
    out, info = _img2img(client, inpainting_mask_invert=1, inpainting_fill=0, cfg_scale=3)
    _untouched(out, invert=True)
    assert "Mask mode: Inpaint not masked" in info["infotexts"][0]
    assert any("CFG scale 3 is not used by FLUX.1 Fill" in w for w in info["warnings"])
    models = client.get("/easel/v1/system").json()["models"]
    assert any(m["variant"] == "flux-fill" and m["label"] == "FLUX.1 Fill" for m in models), models


def test_fill_batch_of_two(client):
    r = client.post("/sdapi/v1/img2img", json=_body(steps=2, batch_size=2))
    assert r.status_code == 200, r.text
    outs = [np.asarray(Image.open(io.BytesIO(base64.b64decode(b)))).astype(int) for b in r.json()["images"]]
    assert len(outs) == 2 and not np.array_equal(outs[0], outs[1])  # seeds 3 and 4
    for out in outs:
        _untouched(out)
    single, _ = _img2img(client, steps=2, seed=4)
    assert np.array_equal(outs[1], single)


def test_fill_img2img_without_mask_repaints_the_whole_image(client):
    body = dict(mask=None, mask_blur=None, inpainting_fill=None)
    body = {k: v for k, v in _body(denoising_strength=0.7).items() if k not in body}
    r = client.post("/sdapi/v1/img2img", json=body)
    assert r.status_code == 200, r.text
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))).astype(int)
    assert out.shape == (48, 64, 3)
    changed = np.abs(out - np.asarray(_init()).astype(int)).max(axis=2) > 2
    assert changed.mean() > 0.9  # no pixel is kept: nothing was left outside a mask
    text = json.loads(r.json()["info"])["infotexts"][0]
    assert "Denoising strength: 0.7" in text and "Mask blur" not in text


def test_dev_lora_on_fill_changes_and_off_restores(client):
    base, _ = _img2img(client, steps=2)
    with_lora, info = _img2img(client, steps=2, prompt="a red circle <lora:flux_kohya:1>")
    assert not np.array_equal(base, with_lora) and "Lora hashes" in info["infotexts"][0]
    _untouched(with_lora)
    off, _ = _img2img(client, steps=2)
    assert np.array_equal(base, off)


def test_catalog_lists_fill_and_depth_says_why_it_cannot_load(client):
    names = {m["model_name"] for m in client.get("/sdapi/v1/sd-models").json()}
    assert {FILL, f"{FILL}-Q4_0", "flux-fill-diffusers", "flux1-depth-dev-tiny"} <= names
    r = client.post("/sdapi/v1/img2img", json=_body("flux1-depth-dev-tiny"))
    assert r.status_code == 400 and "FLUX.1 Depth checkpoint: not supported yet" in r.json()["detail"]


def test_fill_txt2img_is_refused(client):
    r = client.post(
        "/sdapi/v1/txt2img",
        json={"prompt": "x", "steps": 2, "width": 64, "height": 64, "override_settings": {"sd_model_checkpoint": FILL}},
    )
    assert r.status_code == 422, r.text
    assert "FLUX.1 Fill inpaints: use img2img/inpaint with a mask" in r.json()["detail"]


@pytest.mark.parametrize("model", [f"{FILL}-Q4_0", "flux-fill-diffusers"])
def test_fill_gguf_and_diffusers_folder_inpaint(client, model):
    a, info = _img2img(client, model, steps=2)
    assert a.shape == (48, 64, 3)
    _untouched(a)
    b, _ = _img2img(client, model, steps=2)
    assert np.array_equal(a, b)
    assert f"Model: {model}" in info["infotexts"][0] and "Distilled CFG Scale: 30" in info["infotexts"][0]


def test_fill_hostile_values_are_422(client):
    for field in ("denoising_strength", "distilled_cfg_scale", "mask_blur", "steps"):
        for value in ("NaN", "Infinity", "-Infinity", "1e309", "-1000000000"):
            body = json.dumps(_body(**{field: "__V__"})).replace('"__V__"', value)
            r = client.post("/sdapi/v1/img2img", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 422, (field, value, r.text)
            assert isinstance(r.json(), dict)
