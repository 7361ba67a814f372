"""img2img, Extras, hires and Send-to handlers called directly (no browser), on the tiny models."""

from __future__ import annotations

import io
import shutil
import warnings

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from webui.errors import InvalidRequest
from webui.generation.images import prepare_mask
from webui.generation.requests import Txt2ImgRequest
from webui.infotext import pnginfo_for, read_image_infotext
from webui.ui.common import split_overrides
from webui.ui.extras_tab import ExtrasTab
from webui.ui.img2img_tab import Img2ImgTab, editor_inputs, init_and_mask, scaled_size
from webui.ui.pnginfo_tab import PngInfoTab
from webui.ui.quicksettings import Quicksettings
from webui.ui.sendto import SendTo, gallery_fields, infotext_fields, model_for, selected_image
from webui.ui.txt2img_tab import Txt2ImgTab, upscaler_choices


def run_all(gen):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gr.Warning outside a request is a Python warning
        return list(gen)


def values_of(tab, **fields):
    return [fields.get(key, comp.value) for (key, _), comp in zip(tab.FIELDS, tab.field_components)]


def applied(before, updates):
    """The values the components hold after `updates` (what the browser would send back)."""
    out = []
    for old, upd in zip(before, updates):
        if isinstance(upd, dict) and upd.get("__type__") == "update":
            out.append(upd.get("value", old))
        else:
            out.append(upd)
    return out


def png_roundtrip(image: Image.Image, text: str) -> Image.Image:
    """What a user's saved file gives back: a PNG with the `parameters` chunk."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=pnginfo_for(text))
    return Image.open(io.BytesIO(buf.getvalue()))


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_models):
    from webui.app import Application
    from webui.flags import parse_args

    root = tmp_path_factory.mktemp("ui-img2img")
    shutil.copytree(tiny_models, root / "models")
    (root / "models" / "ESRGAN").mkdir()
    (root / "models" / "ESRGAN" / "4x-broken.pth").write_bytes(b"not a model")
    application = Application(parse_args(["--data-dir", str(root), "--nowebui"]))
    application.catalog.demo_dir = None
    application.start(wait_for_model=True)
    yield application
    application.stop()


@pytest.fixture(scope="module")
def ui(app):
    with gr.Blocks():
        quick = Quicksettings(app)
        with gr.Tabs() as tabs:
            with gr.Tab("txt2img", id="txt2img"):
                t2i = Txt2ImgTab(app)
            with gr.Tab("img2img", id="img2img"):
                i2i = Img2ImgTab(app)
            with gr.Tab("Extras", id="extras"):
                extras = ExtrasTab(app)
            with gr.Tab("PNG Info", id="pnginfo"):
                png = PngInfoTab(app)
        send = SendTo(app, tabs, quick, t2i, i2i, extras, png)
        send.wire()
    return send


def noise(size=(64, 64), seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def stroke_layer(size, box, color=(255, 255, 255, 255)) -> Image.Image:
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    layer.paste(Image.new("RGBA", (box[2] - box[0], box[3] - box[1]), color), box[:2])
    return layer


# --- editor values → init image and mask --------------------------------------------------------------------------


def test_inpaint_mask_is_the_alpha_of_layers0():
    bg = noise()
    first, second = stroke_layer((64, 64), (10, 10, 30, 20)), stroke_layer((64, 64), (40, 40, 50, 50))
    value = {"background": bg.convert("RGBA"), "layers": [first, second], "composite": None}
    init, mask = editor_inputs("inpaint", value)
    assert np.array_equal(np.asarray(init), np.asarray(bg))  # the background, not the painted composite
    m = np.asarray(mask)
    assert mask.mode == "L" and mask.size == (64, 64)
    assert (m[10:20, 10:30] == 255).all() and m.sum() == 255 * 20 * 10  # layers[1] is not part of the mask
    # a layer exported at another size is scaled to the image; no layer at all is an empty mask
    half = stroke_layer((32, 32), (0, 0, 16, 32))
    _, mask = editor_inputs("inpaint", {"background": bg, "layers": [half], "composite": None})
    assert (np.asarray(mask)[:, :32] == 255).all() and (np.asarray(mask)[:, 32:] == 0).all()
    _, mask = editor_inputs("inpaint", {"background": bg, "layers": [], "composite": bg})
    assert np.asarray(mask).max() == 0
    with pytest.raises(InvalidRequest, match="Inpaint needs an image"):
        editor_inputs("inpaint", {"background": None, "layers": [first], "composite": None})


def test_sketch_and_inpaint_sketch_use_the_composite():
    bg = Image.new("RGB", (64, 48), (0, 0, 255))
    red = stroke_layer((64, 48), (5, 5, 15, 15), (255, 0, 0, 255))
    green = stroke_layer((64, 48), (30, 30, 40, 40), (0, 255, 0, 255))
    composite = bg.convert("RGBA")
    composite.alpha_composite(red)
    composite.alpha_composite(green)
    value = {"background": bg.convert("RGBA"), "layers": [red, green], "composite": composite}
    init, mask = editor_inputs("sketch", value)
    assert mask is None and init.mode == "RGB" and init.getpixel((10, 10)) == (255, 0, 0)
    init, mask = editor_inputs("inpaint_sketch", value)
    assert init.getpixel((35, 35)) == (0, 255, 0) and init.getpixel((50, 10)) == (0, 0, 255)
    m = np.asarray(mask)
    assert m[10, 10] == m[35, 35] == 255 and m.sum() == 255 * 200  # both strokes, nothing else
    # a sketch on an empty canvas: transparent parts are white, as shown
    blank = {"background": None, "layers": [red], "composite": red}
    assert editor_inputs("sketch", blank)[0].getpixel((50, 40)) == (255, 255, 255)
    with pytest.raises(InvalidRequest, match="needs both an image and a mask"):
        init_and_mask("inpaint_upload", None, None, None, None, bg, None)
    with pytest.raises(InvalidRequest, match="needs an input image"):
        init_and_mask("img2img", None, None, None, None, None, None)
    assert scaled_size((100, 60), 1.5) == (144, 88)


# --- img2img through its handler ----------------------------------------------------------------------------------


def test_inpaint_editor_generate_keeps_unmasked_pixels(app, ui):
    tab = ui.img2img
    bg = noise(seed=3)
    layer = stroke_layer((64, 64), (16, 16, 40, 40))
    fields = {
        "prompt": "a red circle",
        "steps": 4,
        "seed": 11,
        "width": 64,
        "height": 64,
        "sampler_name": "Euler",
        "inpainting_fill": "original",
    }
    values = values_of(tab, **fields)
    extra = [
        "inpaint",
        None,
        None,
        {"background": bg.convert("RGBA"), "layers": [layer], "composite": None},
        None,
        None,
        None,
        "",
        "",
        "",
        False,
        1.0,
    ]
    final = run_all(tab.run(*values, *extra))[-1]
    out = np.asarray(final[tab.gallery]["value"][0], dtype=int)
    _, blurred = prepare_mask(
        Image.fromarray((np.asarray(layer)[..., 3] > 0).astype(np.uint8) * 255), (64, 64), invert=False, blur=4
    )
    outside = np.asarray(blurred) == 0
    assert np.abs(out - np.asarray(bg, dtype=int))[outside].max() <= 2
    assert np.abs(out - np.asarray(bg, dtype=int))[16:40, 16:40].mean() > 5  # the masked area was repainted
    assert "Mask blur: 4" in final[tab.info] and "Masked content: original" in final[tab.info]


# --- hires controls → request ---------------------------------------------------------------------------------------


def test_hires_controls_make_the_request(app, ui):
    tab = ui.txt2img
    labels = {v: label for label, v in upscaler_choices(app.paths.models_dir)}
    assert "Latent (nearest-exact)" in labels and "Lanczos" in labels
    assert labels["4x-broken"] == "4x-broken"  # listed; what's wrong with it shows when it is used
    title = app.catalog.list()[-1].title
    req = tab.request(
        *values_of(
            tab,
            enable_hr=True,
            hr_upscaler="Lanczos",
            hr_second_pass_steps=3.0,
            denoising_strength=0.4,
            hr_scale=1.5,
            hr_checkpoint_name=title,
            hr_sampler_name="Euler",
            hr_scheduler="Karras",
            hr_prompt="hp",
        )
    )
    assert (req.enable_hr, req.hr_upscaler, req.hr_second_pass_steps, req.denoising_strength) == (
        True,
        "Lanczos",
        3,
        0.4,
    )
    assert (req.hr_scale, req.hr_checkpoint_name, req.hr_sampler_name, req.hr_scheduler) == (
        1.5,
        title,
        "Euler",
        "Karras",
    )
    assert (req.hr_prompt, req.hr_resize_x, req.hr_resize_y) == ("hp", 0, 0)
    plain = tab.request(*values_of(tab))
    assert not plain.enable_hr and plain.hr_sampler_name is None and plain.hr_checkpoint_name is None
    assert plain.hr_scheduler is None and plain.denoising_strength is None
    bad = run_all(tab.run(*values_of(tab, enable_hr=True, hr_upscaler="4x-broken", steps=1, width=64, height=64)))
    assert "easel-error" in bad[-1][tab.info] and "read 4x-broken.pth as a state dict" in bad[-1][tab.info]


# --- Send to txt2img: the same fields give the same pixels ----------------------------------------------------------


@pytest.mark.parametrize("hires", [False, True])
def test_png_to_txt2img_fields_regenerate_the_same_image(app, ui, hires):
    extra = (
        {
            "enable_hr": True,
            "hr_scale": 2.0,
            "hr_upscaler": "Latent",
            "hr_second_pass_steps": 2,
            "denoising_strength": 0.6,
            "hr_sampler_name": "Euler",
        }
        if hires
        else {}
    )
    job = app.submit_txt2img(
        Txt2ImgRequest(
            prompt="a (green:1.2) square",
            negative_prompt="blurry",
            steps=3,
            seed=4321,
            sampler_name="DPM++ 2M",
            cfg_scale=5.5,
            width=64,
            height=64,
            **extra,
        ),
        from_api=False,
    )
    original = app.jobs.wait(job, timeout=120)
    png = png_roundtrip(original.images[0], original.infotexts[0])
    tab = ui.txt2img
    # what the user had in the tab before: every field the image depends on must be replaced
    before = values_of(
        tab,
        enable_hr=not hires,
        hr_prompt="stale",
        hr_sampler_name="LMS",
        steps=20,
        seed=-1,
        scheduler="Karras",
        _seed_extras=True,
        subseed_strength=0.5,
        hr_second_pass_steps=7,
    )
    updates = ui.to_txt2img(read_image_infotext(png))
    values = applied(before, [updates[c] for c in tab.field_components])
    assert values[0] == "a (green:1.2) square"
    final = run_all(tab.run(*values))[-1]
    again = final[tab.gallery]["value"][0]
    assert again.size == ((128, 128) if hires else (64, 64))
    assert np.array_equal(np.asarray(again), np.asarray(png.convert("RGB")))
    assert final[tab.results]["infotexts"][0].split("Version")[0] == original.infotexts[0].split("Version")[0]


def test_infotext_fields_defaults_overrides_and_model_hash(app, ui):
    text = (
        "a cat\nNegative prompt: dog\nSteps: 5, Sampler: Euler a, CFG scale: 7, Seed: 9, Size: 64x64, "
        "Model hash: 0123456789, Model: gone, Clip skip: 2, Eta: 0.5, Variation seed: 3, "
        "Variation seed strength: 0.25, Mask blur: 6, Masked content: latent noise, Inpaint area: Only masked, "
        "Masked area padding: 16, Mask mode: Inpaint not masked, Version: v1"
    )
    t2i = infotext_fields(app, text, "txt2img")
    assert t2i["enable_hr"] is False and t2i["hr_sampler_name"] == "Use same sampler"
    assert t2i["scheduler"] == "Automatic"
    assert t2i["_seed_extras"] and t2i["subseed"] == 3 and "mask_blur" not in t2i
    assert [label for label, _ in t2i["_overrides"]] == ["Clip skip: 2", "eta: 0.5"]
    options, fields = split_overrides([v for _, v in t2i["_overrides"]])
    assert options == {"CLIP_stop_at_last_layers": 2} and fields == {"eta": 0.5}
    i2i = infotext_fields(app, text, "img2img")
    assert (
        i2i["mask_blur"],
        i2i["inpainting_fill"],
        i2i["inpaint_full_res"],
        i2i["inpaint_full_res_padding"],
        i2i["inpainting_mask_invert"],
    ) == (6, 2, True, 16, 1)
    assert not any(k.startswith("hr_") for k in i2i)
    assert model_for(app, text) == (None, "model gone [0123456789] not found")
    known = app.catalog.list()[-1]
    assert model_for(app, text.replace("0123456789", known.shorthash)) == (known.title, None)
    filled = dict(zip(ui.img2img.FIELDS, ui.img2img.fill(i2i)))
    assert filled[("inpainting_fill", "masked_content")] == "latent noise"
    assert filled[("inpaint_full_res", "inpaint_area")] == "Only masked"


def test_gallery_send_and_paste(app, ui, tmp_path):
    text = "a dog\nNegative prompt: cat\nSteps: 6, Sampler: Euler, CFG scale: 4, Seed: 77, Size: 48x32, Version: v"
    path = tmp_path / "x.png"
    noise((48, 32)).save(path, pnginfo=pnginfo_for(text))
    image = selected_image([(str(path), None)], {"selected": 0})
    assert image.size == (48, 32) and gallery_fields(image, "img2img") == {
        "prompt": "a dog",
        "negative_prompt": "cat",
        "steps": 6,
        "seed": 77,
        "width": 48,
        "height": 32,
    }
    out = ui.gallery_to_img2img("inpaint", [(str(path), None)], {"selected": 0})
    i2i = ui.img2img
    assert out[i2i.mode] == "inpaint" and out[i2i.inpaint]["value"]["background"].size == (48, 32)
    assert out[i2i.inpaint]["brush"].default_size == 2  # sized for the picture, as an upload is (#19 item 16)
    assert out[i2i.prompt] == "a dog" and not isinstance(out[i2i.width], int)  # inpaint keeps the size
    extras = ui.to_extras(image)
    assert extras[ui.extras.image] is image and extras[ui.extras.mode] == "single"
    pasted = ui.paste(ui.txt2img, text)
    assert pasted[-1] == text and pasted[0] == "a dog" and pasted[1] == "cat"
    nothing = ui.paste(ui.txt2img, "just a prompt")
    assert nothing[-1] == "" and all(u.get("__type__") == "update" and "value" not in u for u in nothing[:-1])


def test_extras_scale_and_errors(app, ui, tmp_path):
    tab = ui.extras
    src = noise((32, 24), seed=5)
    settings = [False, 2, 512, 512, True, "Lanczos", "None", 0]
    gallery, info = tab.run("single", src, None, "", "", True, *settings)
    assert gallery[0].size == (64, 48) and "1 image(s) processed" in info
    assert "Postprocess upscale by: 2" in info and "extras-images" in info
    (tmp_path / "in").mkdir()
    src.save(tmp_path / "in" / "a.png")
    gallery, info = tab.run(
        "directory",
        None,
        None,
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        False,
        True,
        2,
        40,
        40,
        True,
        "Lanczos",
        "None",
        0,
    )
    assert gallery == [] and Image.open(tmp_path / "out" / "a.png").size == (40, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, info = tab.run("single", src, None, "", "", True, False, 2, 512, 512, True, "4x-broken", "None", 0)
    assert "easel-error" in info and "read 4x-broken.pth as a state dict" in info


def test_batch_tab_and_resize_by(app, ui, tmp_path):
    tab = ui.img2img
    (tmp_path / "in").mkdir()
    (tmp_path / "masks").mkdir()
    noise((32, 32), seed=1).save(tmp_path / "in" / "a.png")
    Image.new("L", (32, 32), 255).save(tmp_path / "masks" / "a.png")
    values = values_of(tab, prompt="x", steps=1, seed=3, sampler_name="Euler", denoising_strength=0.5)
    extra = [
        "batch",
        None,
        None,
        None,
        None,
        None,
        None,
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        str(tmp_path / "masks"),
        True,
        2.0,
    ]
    final = run_all(tab.run(*values, *extra))[-1]
    written = Image.open(tmp_path / "out" / "a.png")
    assert written.size == (64, 64) and "Mask blur" in written.info["parameters"]  # resized by 2, inpainted
    assert final[tab.gallery]["value"][0].size == (64, 64)
    missing = run_all(tab.run(*values, "batch", *extra[1:7], str(tmp_path / "nowhere"), "", "", False, 1.0))
    assert "input folder not found" in missing[-1][tab.info]


def test_send_switches_to_the_checkpoint_with_that_hash(app):
    from webui.ui.sendto import switch_model

    other = next(i for i in app.catalog.list() if i.title != app.models.active.info.title)
    text = f"p\nSteps: 1, Seed: 1, Size: 64x64, Model hash: {other.shorthash}, Model: {other.infotext_name}"
    dropdown, message, _note = switch_model(app, text)
    assert app.models.active.info.title == other.title and dropdown["value"] == other.title and message == ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dropdown, message, _note = switch_model(app, text.replace(other.shorthash, "ffffffffff"))
    assert "not found" in message and "easel-error" in message and app.models.active.info.title == other.title


def test_history_job_is_sent_to_img2img_with_its_image_and_fields(app, ui):
    job = app.submit_txt2img(
        Txt2ImgRequest(prompt="history to img2img", steps=2, seed=77, width=64, height=48), from_api=False
    )
    app.jobs.wait(job)
    out = ui.history_to_img2img(job.id)
    i = ui.img2img
    assert out[i.init_image].size == (64, 48)
    assert "history to img2img" in out[ui.text] and "Seed: 77" in out[ui.text]
    fields = dict(zip([k for k, _ in i.FIELDS], [out.get(c) for c in i.field_components]))
    assert any("history to img2img" in str(v) for v in fields.values())
    assert ui.history_to_img2img("no-such-job") == {}
