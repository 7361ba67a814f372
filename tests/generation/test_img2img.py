"""img2img and inpainting on tiny models: determinism, strength, resize modes, and unmasked pixels left alone."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw

from webui.generation.requests import Img2ImgRequest


def _init(size=(64, 64)):
    im = Image.new("RGB", size, (30, 60, 200))
    d = ImageDraw.Draw(im)
    d.ellipse((12, 12, 52, 52), fill=(220, 40, 40))
    d.rectangle((0, 0, 10, size[1]), fill=(250, 250, 30))
    return im


def _mask(size=(64, 64), box=(20, 20, 44, 44)):
    m = Image.new("L", size, 0)
    ImageDraw.Draw(m).rectangle(box, fill=255)
    return m


def _run(app, image=None, mask=None, **kw):
    req = Img2ImgRequest(**{"prompt": "a yellow square", "steps": 6, "seed": 11, "denoising_strength": 0.6, **kw})
    job = app.submit_img2img(req, from_api=True, images=[image or _init()], mask=mask)
    return app.jobs.wait(job)


def _a(im):
    return np.asarray(im.convert("RGB"), dtype=np.int16)


def test_same_seed_same_pixels_and_strength_changes_more(app):
    a, b = _run(app), _run(app)
    assert np.array_equal(_a(a.images[0]), _a(b.images[0]))
    # The tiny model's VAE is random, so compare against the least-denoised result (its round trip of the input).
    ref = _a(_run(app, denoising_strength=0.05, steps=20).images[0])
    low = np.abs(_a(_run(app, denoising_strength=0.3, steps=20).images[0]) - ref).mean()
    high = np.abs(_a(_run(app, denoising_strength=0.9, steps=20).images[0]) - ref).mean()
    assert high > low > 0
    assert "Denoising strength: 0.6" in a.infotexts[0]


def test_tiny_strength_still_runs_one_step(app):
    r = _run(app, denoising_strength=0.01, steps=6, sampler_name="Euler a")
    assert r.images[0].size == (64, 64)


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_each_resize_mode_gives_the_requested_size(app, mode):
    r = _run(app, image=_init((100, 60)), resize_mode=mode, width=64, height=48)
    assert r.images[0].size == (64, 48)


@pytest.mark.parametrize("full_res", [False, True])
@pytest.mark.parametrize("invert", [0, 1])
def test_unmasked_pixels_unchanged_and_masked_area_changes(app, full_res, invert):
    init, mask = _init(), _mask()
    r = _run(
        app,
        image=init,
        mask=mask,
        inpaint_full_res=full_res,
        inpainting_mask_invert=invert,
        mask_blur=4,
        denoising_strength=1.0,
        inpaint_full_res_padding=4,
    )
    out, src = _a(r.images[0]), _a(init)
    # where the blurred mask is exactly 0 the output must equal the input
    from webui.generation.images import prepare_mask

    _, blurred = prepare_mask(mask, init.size, invert=bool(invert), blur=4)
    untouched = np.asarray(blurred) == 0
    assert untouched.any()
    assert np.abs(out - src)[untouched].max() <= 2
    repainted = np.asarray(blurred) == 255
    assert np.abs(out - src)[repainted].mean() > 5


def test_masked_content_modes_differ(app):
    outs = [_a(_run(app, mask=_mask(), inpainting_fill=m, denoising_strength=0.5).images[0]) for m in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not np.array_equal(outs[i], outs[j]), (i, j)


def test_all_black_mask_returns_input_with_a_warning(app):
    init = _init()
    r = _run(app, image=init, mask=Image.new("L", (64, 64), 0))
    assert np.array_equal(_a(r.images[0]), _a(init))
    assert any("nothing to inpaint" in w for w in r.warnings)


def test_mask_of_another_size_is_resized(app):
    r = _run(app, mask=_mask((128, 128), (40, 40, 88, 88)))
    assert r.images[0].size == (64, 64)


@pytest.mark.parametrize("full_res, invert", [(False, 0), (True, 0), (False, 1), (True, 1)])
def test_nine_channel_inpainting_checkpoint(app, data_dir, tiny_inpaint_file, full_res, invert):
    shutil.copy(tiny_inpaint_file, data_dir / "models" / "Stable-diffusion")
    app.models.refresh()
    model = app.switch_checkpoint("tiny-inpainting")
    assert model.probe.inpainting
    init, mask = _init(), _mask()
    r = _run(
        app,
        image=init,
        mask=mask,
        mask_blur=0,
        denoising_strength=1.0,
        inpaint_full_res=full_res,
        inpainting_mask_invert=invert,
        inpaint_full_res_padding=4,
    )
    out, src = _a(r.images[0]), _a(init)
    keep = (np.asarray(mask) == 0) ^ bool(invert)
    assert np.abs(out - src)[keep].max() <= 2 and np.abs(out - src)[~keep].mean() > 5
    assert r.info["is_using_inpainting_conditioning"]
    if full_res or invert:
        return
    # txt2img on an inpainting model works too (A1111 runs it as inpainting of a blank image)
    from webui.generation.requests import Txt2ImgRequest

    t = app.jobs.wait(app.submit_txt2img(Txt2ImgRequest(prompt="x", steps=3, seed=1), from_api=True))
    assert t.images[0].size == (64, 64)


def test_missing_or_undecodable_init_image_is_a_clear_error(app):
    from webui.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="init_images"):
        app.submit_img2img(Img2ImgRequest(prompt="x"), from_api=True)
    with pytest.raises(InvalidRequest, match=r"init_images\[0\]"):
        app.submit_img2img(Img2ImgRequest(prompt="x", init_images=["not-base64!!"]), from_api=True)


def test_batch_folder_with_masks(app, tmp_path):
    from webui.errors import InvalidRequest

    src, masks, dst = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
    src.mkdir(), masks.mkdir()
    _init().save(src / "a.png")
    _init((48, 48)).save(src / "b.jpg")
    (src / "notes.txt").write_text("not an image")
    _mask().save(masks / "a.png")
    job = app.submit_img2img_batch(
        Img2ImgRequest(prompt="x", steps=3, seed=1, width=64, height=64),
        input_dir=str(src),
        output_dir=str(dst),
        mask_dir=str(masks),
    )
    app.jobs.wait(job)
    assert sorted(p.name for p in dst.iterdir()) == ["a.png", "b.png"]
    a = Image.open(dst / "a.png")
    assert "Mask blur" in a.info["parameters"] and "Mask blur" not in Image.open(dst / "b.png").info["parameters"]
    keep = np.asarray(_mask()) == 0
    from webui.generation.images import prepare_mask

    _, blurred = prepare_mask(_mask(), (64, 64), invert=False, blur=4)
    untouched = np.asarray(blurred) == 0
    assert np.abs(_a(a) - _a(_init()))[untouched].max() <= 2 and keep.any()
    with pytest.raises(InvalidRequest, match="input folder"):
        app.submit_img2img_batch(Img2ImgRequest(prompt="x"), input_dir=str(tmp_path / "nope"), output_dir=str(dst))
