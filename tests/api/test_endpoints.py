"""Every /sdapi/v1 endpoint answers with A1111's shape; unknown scripts and bad fields are 4xx naming the problem;
`infotext` and `sampler_index` work; OpenAPI shows real schemas."""

from __future__ import annotations

import json

import pytest
import requests

from tests.api.conftest import png_base64, wait_idle


@pytest.fixture
def base(api_server):
    wait_idle(api_server.app)
    yield f"{api_server.url}/sdapi/v1"
    wait_idle(api_server.app)


def get(base: str, path: str):
    r = requests.get(f"{base}/{path}", timeout=30)
    assert r.status_code == 200, (path, r.text)
    return r.json()


def test_honest_lists(base):
    ups = get(base, "upscalers")
    assert [u["name"] for u in ups] == ["None", "Lanczos", "Nearest"]
    assert all(set(u) == {"name", "model_name", "model_path", "model_url", "scale", "error"} for u in ups)
    assert [m["name"] for m in get(base, "latent-upscale-modes")] == [
        "Latent",
        "Latent (antialiased)",
        "Latent (bicubic)",
        "Latent (bicubic antialiased)",
        "Latent (nearest)",
        "Latent (nearest-exact)",
    ]
    for path in ("loras", "face-restorers", "realesrgan-models", "hypernetworks", "sd-vae"):
        assert get(base, path) == [], path
    assert get(base, "embeddings") == {"loaded": {}, "skipped": {}}
    scripts = get(base, "scripts")
    assert set(scripts) == {"txt2img", "img2img"}
    assert {i["name"] for i in get(base, "script-info")} == set(scripts["txt2img"]) | set(scripts["img2img"])
    assert all({"name", "version", "enabled"} <= set(e) for e in get(base, "extensions"))
    assert {"name", "label", "aliases"} <= set(get(base, "schedulers")[0])
    mem = get(base, "memory")
    assert set(mem["ram"]) == {"free", "used", "total"} and 0 < mem["ram"]["used"] < mem["ram"]["total"]
    assert mem["cuda"] == {"error": "unavailable"} or "system" in mem["cuda"]
    flags = get(base, "cmd-flags")
    assert flags["api"] is True and flags["nowebui"] is True and flags["api_auth"] is None and flags["port"] == 7860


def test_prompt_styles_from_styles_csv(base, api_server):
    styles = api_server.app.paths.styles_files[0]
    styles.write_text('name,prompt,negative_prompt\nCinematic,"{prompt}, film grain",cartoon\nEmpty,,\n')
    try:
        assert get(base, "prompt-styles") == [
            {"name": "Cinematic", "prompt": "{prompt}, film grain", "negative_prompt": "cartoon"},
            {"name": "Empty", "prompt": "", "negative_prompt": ""},
        ]
    finally:
        styles.unlink()
    assert get(base, "prompt-styles") == []


def test_refresh_unload_reload(base, api_server):
    for path in ("refresh-checkpoints", "refresh-vae", "refresh-loras", "refresh-embeddings"):
        assert requests.post(f"{base}/{path}", timeout=30).status_code == 200, path
    title = api_server.app.models.active.info.title
    assert requests.post(f"{base}/unload-checkpoint", timeout=30).json() == {}
    assert api_server.app.models.active is None
    assert requests.post(f"{base}/reload-checkpoint", timeout=60).json() == {}
    assert api_server.app.models.active.info.title == title


@pytest.mark.parametrize(
    "body, status, text",
    [
        ({"script_name": "x/y plot"}, 422, "Script 'x/y plot' not found"),
        ({"alwayson_scripts": {"No Such Script": {"args": []}}}, 422, "No Such Script"),
        ({"steps": "many"}, 422, "steps"),
        ({"width": "wide"}, 422, "width"),
        ({"batch_size": 0}, 422, "batch_size"),
        ({"sampler_name": "No Such Sampler"}, 422, "No Such Sampler"),
        ({"infotext": "p\nSteps: 0, Sampler: Euler, Seed: 1"}, 422, "steps"),
    ],
)
def test_bad_txt2img_requests_are_4xx(base, body, status, text):
    r = requests.post(
        f"{base}/txt2img", json={"prompt": "x", **({} if "infotext" in body else {"steps": 1}), **body}, timeout=60
    )
    assert r.status_code == status, r.text[:300]
    err = r.json()
    assert set(err) == {"error", "detail", "body", "errors"} and text in err["detail"] + json.dumps(err["errors"])


def test_options_validation_names_the_field(base):
    r = requests.post(f"{base}/options", json={"samples_save": "maybe"}, timeout=10)
    assert r.status_code == 422 and "samples_save" in r.json()["detail"]
    assert requests.post(f"{base}/options", json=["not", "a", "dict"], timeout=10).status_code == 422


def test_infotext_fills_only_unset_fields_and_sampler_index_alias(base):
    infotext = (
        "a blue square\nNegative prompt: red things\n"
        "Steps: 3, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5, Seed: 99, Size: 64x64"
    )
    r = requests.post(f"{base}/txt2img", json={"infotext": infotext, "steps": 2}, timeout=60)
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert info["prompt"] == "a blue square" and info["negative_prompt"] == "red things"
    assert info["seed"] == 99 and info["cfg_scale"] == 5 and info["steps"] == 2  # steps was set explicitly
    assert info["sampler_name"] == "DPM++ 2M" and "Schedule type: Karras" in info["infotexts"][0]
    r = requests.post(
        f"{base}/txt2img", timeout=60, json={"prompt": "alias", "steps": 1, "seed": 4, "sampler_index": "Euler"}
    )
    assert r.status_code == 200 and json.loads(r.json()["info"])["sampler_name"] == "Euler"


def png_size(b64: str) -> tuple[int, int]:
    import base64
    import io

    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(b64))).size


def test_img2img_and_extras(base, api_server):
    app = api_server.app
    image = png_base64((64, 64))
    r = requests.post(
        f"{base}/img2img",
        timeout=60,
        json={"init_images": [image], "steps": 2, "denoising_strength": 0.5, "prompt": "i2i"},
    )
    if hasattr(app, "submit_img2img"):
        assert r.status_code == 200 and len(r.json()["images"]) == 1 and r.json()["parameters"]["init_images"] is None
    else:
        assert r.status_code == 501 and r.json()["detail"] == "img2img is not implemented yet"
    r = requests.post(
        f"{base}/extra-single-image", timeout=60, json={"image": image, "upscaler_1": "Lanczos", "upscaling_resize": 2}
    )
    assert r.status_code == 200, r.text[:300]
    assert png_size(r.json()["image"]) == (128, 128) and "Lanczos" in r.json()["html_info"]
    r = requests.post(
        f"{base}/extra-batch-images",
        timeout=60,
        json={
            "imageList": [{"data": image, "name": "a.png"}, {"data": png_base64((10, 20)), "name": "b.png"}],
            "upscaler_1": "Nearest",
            "resize_mode": 1,
            "upscaling_resize_w": 32,
            "upscaling_resize_h": 32,
        },
    )
    assert r.status_code == 200 and [png_size(i) for i in r.json()["images"]] == [(32, 32), (32, 32)], r.text[:300]
    r = requests.post(f"{base}/extra-single-image", json={"image": image, "upscaler_1": "NoSuch"}, timeout=60)
    assert r.status_code == 422 and "NoSuch" in r.json()["detail"]


def test_png_info_of_a_plain_png(base):
    r = requests.post(f"{base}/png-info", json={"image": "data:image/png;base64," + png_base64()}, timeout=10)
    assert r.status_code == 200 and r.json() == {"info": "", "items": {}, "parameters": {}, "missing_models": []}
    assert requests.post(f"{base}/png-info", json={"image": ""}, timeout=10).status_code == 422


def test_openapi_has_real_schemas(api_server):
    spec = requests.get(f"{api_server.url}/openapi.json", timeout=10).json()
    schemas = spec["components"]["schemas"]
    assert {
        "Txt2ImgRequest",
        "Img2ImgRequest",
        "ImageResponse",
        "ProgressResponse",
        "JobView",
        "SDModelItem",
        "Options",
        "MemoryResponse",
    } <= set(schemas)
    assert "sampler_index" in schemas["Txt2ImgRequest"]["properties"]
    assert "sd_model_checkpoint" in schemas["Options"]["properties"]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            ok = op["responses"].get("200") or op["responses"].get("202")
            assert ok is not None, (method, path)
            if method == "get":
                assert ok["content"]["application/json"]["schema"], (method, path)
    docs = requests.get(f"{api_server.url}/docs", timeout=10)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_share_host_is_accepted_once_the_tunnel_is_open(api_server):
    url = f"{api_server.url}/sdapi/v1/samplers"
    assert requests.get(url, headers={"Host": "abc123.gradio.live"}, timeout=10).status_code == 400
    api_server.app.share_url = "https://abc123.gradio.live"
    try:
        assert requests.get(url, headers={"Host": "abc123.gradio.live"}, timeout=10).status_code == 200
    finally:
        api_server.app.share_url = None


def test_options_as_stored_even_when_hand_edited(base, api_server):
    values = api_server.app.options._values
    values["samples_save"] = "yes please"  # what a hand-edited config.json may hold
    try:
        assert get(base, "options")["samples_save"] == "yes please"
    finally:
        values.pop("samples_save")


def test_apply_infotext_unit():
    from webui.generation.prepare import apply_infotext
    from webui.generation.requests import Txt2ImgRequest

    text = "cat\nNegative prompt: dog\nSteps: 9, Sampler: Euler a, CFG scale: 4, Seed: 5, Size: 96x64, Clip skip: 2"
    req = apply_infotext(Txt2ImgRequest(infotext=text, seed=1, override_settings={"CLIP_stop_at_last_layers": 3}))
    assert (req.prompt, req.negative_prompt, req.steps, req.cfg_scale, req.seed) == ("cat", "dog", 9, 4.0, 1)
    assert (req.width, req.height, req.sampler_name) == (96, 64, "Euler a")
    assert req.override_settings == {"CLIP_stop_at_last_layers": 3}  # the request's own override wins
    assert {"prompt", "steps", "width"} <= req.model_fields_set
    req = apply_infotext(Txt2ImgRequest(infotext=text, sampler_index="DDIM"))
    assert req.sampler_name is None and req.sampler == "DDIM"  # the alias counts as a sampler set explicitly
    assert req.override_settings == {"CLIP_stop_at_last_layers": 2}
