"""txt2img on the tiny model: determinism, seeds, batches, outputs on disk, samplers."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from webui.generation.requests import Txt2ImgRequest
from webui.models import samplers


def _run(app, **kw):
    req = Txt2ImgRequest(**{"prompt": "a red circle", "steps": 4, "seed": 7, **kw})
    return app.jobs.wait(app.submit_txt2img(req, from_api=True))


def _arr(img):
    return np.asarray(img.convert("RGB"), dtype=np.int16)


def test_same_seed_same_pixels_different_seed_differs(app):
    a, b, c = _run(app), _run(app), _run(app, seed=8)
    assert np.array_equal(_arr(a.images[0]), _arr(b.images[0]))
    assert not np.array_equal(_arr(a.images[0]), _arr(c.images[0]))


def test_batch_seeds_are_seed_plus_i_and_match_single_runs(app):
    r = _run(app, batch_size=2, n_iter=2)
    assert r.info["all_seeds"] == [7, 8, 9, 10]
    assert len(r.images) == 4  # no grid over the API without save_images
    single = _run(app, seed=9)
    # fp32 GEMMs block differently for a batch of 2 than of 1 on some CPUs (AMD EPYC: one pixel level off in ~1e-4
    # of the values), so "the same image" is: at most one level off, almost everywhere equal; the neighbouring seed
    # in the same batch is nowhere near.
    diff = np.abs(_arr(r.images[2]) - _arr(single.images[0]))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())
    other = np.abs(_arr(r.images[3]) - _arr(single.images[0]))
    assert other.mean() > 5
    assert "Seed: 9," in r.infotexts[2]


def test_random_seed_is_reported(app):
    r = _run(app, seed=-1)
    seed = r.info["seed"]
    assert seed >= 0 and f"Seed: {seed}," in r.infotexts[0]
    again = _run(app, seed=seed)
    assert np.array_equal(_arr(r.images[0]), _arr(again.images[0]))


def test_variation_seed_changes_image_and_is_written(app):
    base = _run(app)
    var = _run(app, subseed=99, subseed_strength=0.5)
    assert not np.array_equal(_arr(base.images[0]), _arr(var.images[0]))
    assert "Variation seed: 99, Variation seed strength: 0.5" in var.infotexts[0]
    assert var.info["all_seeds"] == [7]


def test_native_size_when_width_height_omitted_and_explicit_size_honoured(app):
    assert _run(app).images[0].size == (64, 64)
    assert _run(app, width=96, height=48).images[0].size == (96, 48)
    assert _run(app, width=101, height=70).images[0].size == (96, 64)  # floored to a multiple of 8


def test_saved_files_follow_a1111_layout(app, data_dir):
    r = _run(app, save_images=True, batch_size=2)
    names = [p.rsplit("/", 1)[-1] for p in r.paths]
    assert names == ["00000-7.png", "00001-8.png"]
    assert all("/outputs/txt2img-images/" in p for p in r.paths)
    grids = list((data_dir / "outputs" / "txt2img-grids").rglob("*.png"))
    assert len(grids) == 1
    with Image.open(r.paths[1]) as im:
        assert im.info["parameters"] == r.infotexts[-1]
    r2 = _run(app, save_images=True)
    assert r2.paths[0].endswith("00002-7.png")


def test_override_settings_apply_once_then_restore(app):
    plain = _run(app)
    skipped = _run(app, override_settings={"CLIP_stop_at_last_layers": 2})
    assert "Clip skip: 2" in skipped.infotexts[0]
    assert not np.array_equal(_arr(plain.images[0]), _arr(skipped.images[0]))
    assert app.options.get("CLIP_stop_at_last_layers") == 1
    after = _run(app)
    assert np.array_equal(_arr(plain.images[0]), _arr(after.images[0]))


@pytest.mark.parametrize("name", samplers.sampler_names())
def test_every_listed_sampler_runs(app, name):
    r = _run(app, sampler_name=name, steps=3)
    assert r.images[0].size == (64, 64)
    assert f"Sampler: {name}," in r.infotexts[0]


def test_interrupt_returns_finished_images(app):
    import time

    job = app.submit_txt2img(Txt2ImgRequest(prompt="x", steps=40, n_iter=50, seed=1), from_api=True)
    while job.control.job_no < 1:
        time.sleep(0.01)
    t0 = time.time()
    app.jobs.interrupt()
    result = app.jobs.wait(job, timeout=30)
    assert time.time() - t0 < 5
    assert result.interrupted and 1 <= len(result.images) < 50
    assert job.status == "interrupted"


def test_api_png_carries_infotext(client):
    r = client.post("/sdapi/v1/txt2img", json={"prompt": 'a, "quoted" prompt', "steps": 2, "seed": 3})
    body = r.json()
    png = Image.open(io.BytesIO(base64.b64decode(body["images"][0])))
    info = json.loads(body["info"])
    assert png.info["parameters"] == info["infotexts"][0]
    for key in (
        "prompt",
        "all_prompts",
        "negative_prompt",
        "all_negative_prompts",
        "seed",
        "all_seeds",
        "subseed",
        "all_subseeds",
        "subseed_strength",
        "width",
        "height",
        "sampler_name",
        "cfg_scale",
        "steps",
        "batch_size",
        "restore_faces",
        "sd_model_name",
        "sd_model_hash",
        "sd_vae_name",
        "sd_vae_hash",
        "seed_resize_from_w",
        "seed_resize_from_h",
        "denoising_strength",
        "extra_generation_params",
        "index_of_first_image",
        "infotexts",
        "styles",
        "job_timestamp",
        "clip_skip",
        "is_using_inpainting_conditioning",
        "version",
    ):
        assert key in info, key


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"steps": 0}, "steps"),
        ({"batch_size": -1}, "batch_size"),
        ({"n_iter": 0}, "n_iter"),
        ({"width": "wide"}, "width"),
        ({"cfg_scale": "x"}, "cfg_scale"),
        ({"seed": [1]}, "seed"),
    ],
)
def test_bad_fields_are_422_naming_the_field(client, payload, field):
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "x", **payload})
    assert r.status_code == 422 and field in r.json()["detail"]


def test_unknown_sampler_and_oversize_are_4xx_and_server_keeps_going(client):
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "sampler_name": "Nope"})
    assert r.status_code == 422 and "Nope" in r.json()["detail"]
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "width": 8192, "height": 8192})
    assert r.status_code == 422 and "max_generation_pixels" in r.json()["detail"]
    assert client.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 2}).status_code == 200


@pytest.mark.parametrize("upscaler", ["Latent", "Latent (nearest-exact)", "Lanczos"])
def test_hires_fix_doubles_the_size_and_says_so(app, upscaler):
    r = _run(app, enable_hr=True, hr_scale=2, hr_upscaler=upscaler, hr_second_pass_steps=2, denoising_strength=0.5)
    assert r.images[0].size == (128, 128)
    text = r.infotexts[0]
    assert "Size: 64x64" in text and "Hires upscale: 2" in text and f"Hires upscaler: {upscaler}" in text
    assert "Hires steps: 2" in text and "Denoising strength: 0.5" in text


def test_hires_resize_to_and_unknown_upscaler(app):
    r = _run(app, enable_hr=True, hr_resize_x=96, hr_resize_y=0, hr_upscaler="Nearest", hr_second_pass_steps=1)
    assert r.images[0].size == (96, 96) and "Hires resize: 96x96" in r.infotexts[0]
    from webui.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="unknown upscaler"):
        _run(app, enable_hr=True, hr_upscaler="Magic 9000")
