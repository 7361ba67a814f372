"""The UI's handler functions called directly (no browser): they call the real services on the tiny models."""

from __future__ import annotations

import threading
import warnings

import gradio as gr
import pytest
from PIL import Image

from webui.generation.control import JobControl
from webui.infotext import exif_bytes_for, pnginfo_for
from webui.ui import build_ui
from webui.ui.history_tab import job_fields, job_row
from webui.ui.pnginfo_tab import read_infotext, request_fields
from webui.ui.progress import follow, progress_line
from webui.ui.quicksettings import Quicksettings
from webui.ui.settings_tab import SettingsTab
from webui.ui.txt2img_tab import Txt2ImgTab, canonical_sampler

INFOTEXT = (
    'a cat, "quoted"\nNegative prompt: blurry\nSteps: 7, Sampler: DPM++ 2M Karras, CFG scale: 6.5, '
    "Seed: 42, Size: 64x96, Model hash: 0123456789, Model: tiny, Version: easel-0.1.0"
)


def tab_values(tab, **fields):
    """The values a tab's Generate sends: its components' defaults, with `fields` (request names) set."""
    return [fields.get(key, comp.value) for (key, _), comp in zip(tab.FIELDS, tab.field_components)]


def run_all(gen):
    """Drain a generator handler; return the list of what it yielded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gr.Warning outside a request is a Python warning
        return list(gen)


# --- PNG Info ---------------------------------------------------------------------------------------------------


def test_read_infotext_png_jpeg_and_none(tmp_path):
    png = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(png, pnginfo=pnginfo_for(INFOTEXT))
    text, rows, message = read_infotext(str(png))
    assert text == INFOTEXT and message == ""
    table = dict((k, v) for k, v in rows)
    assert table["Prompt"] == 'a cat, "quoted"' and table["Negative prompt"] == "blurry"
    assert table["Size"] == "64x96" and "Size-1" not in table

    jpg = tmp_path / "a.jpg"
    Image.new("RGB", (8, 8)).save(jpg, exif=exif_bytes_for(INFOTEXT))
    assert read_infotext(str(jpg))[0] == INFOTEXT

    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    assert read_infotext(str(plain))[:2] == ("", []) and "No generation parameters" in read_infotext(str(plain))[2]

    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    assert "Cannot read" in read_infotext(str(junk))[2]
    assert read_infotext(None) == ("", [], "")


def test_request_fields_split_legacy_sampler():
    fields = request_fields(INFOTEXT)
    assert fields["sampler_name"] == "DPM++ 2M" and fields["scheduler"] == "Karras"
    assert (fields["steps"], fields["seed"], fields["width"], fields["height"]) == (7, 42, 64, 96)
    assert fields["cfg_scale"] == 6.5
    assert request_fields("") == {}
    assert canonical_sampler("k_euler_a") == "Euler a" and canonical_sampler("No such sampler") is None


# --- History ----------------------------------------------------------------------------------------------------


def test_history_row_and_fields_use_what_the_job_really_used():
    job = {
        "id": "x",
        "kind": "txt2img",
        "status": "done",
        "prompt": "p",
        "created_at": 0,
        "params": {
            "prompt": "p",
            "negative_prompt": "n",
            "seed": -1,
            "steps": 5,
            "sampler_name": None,
            "scheduler": None,
            "width": None,
            "height": None,
            "cfg_scale": 7,
            "n_iter": 2,
            "batch_size": 1,
        },
        "result": {
            "images": ["/nowhere/a.png"],
            "infotexts": ["p\nSteps: 5"],
            "info": {"seed": 1234, "width": 64, "height": 64, "sampler_name": "Euler a"},
        },
    }
    row = job_row(job)
    assert row[1:] == ["txt2img", "done", "p", 5, "Euler a", "64x64", 1234, 1, ""]  # "": the local worker
    fields = job_fields(job)
    assert fields["seed"] == 1234 and fields["sampler_name"] == "Euler a" and fields["scheduler"] == "Automatic"
    assert (fields["width"], fields["height"], fields["n_iter"]) == (64, 64, 2)


# --- progress ---------------------------------------------------------------------------------------------------


class FakeJobs:
    def __init__(self, pos):
        self.pos = pos

    def position(self, _id):
        return self.pos


class FakeJob:
    id = "j"

    def __init__(self):
        self.control = JobControl()
        self.done = threading.Event()


def test_progress_line_queue_then_steps():
    job = FakeJob()
    assert progress_line(FakeJobs(3), job)[0] == "Queued: position 3"
    job.control.job_count = 2
    job.control.start_batch(1, 10)
    job.control.step(5)
    text, frac, running = progress_line(FakeJobs(0), job)
    assert running and frac == pytest.approx(0.75)
    assert text.startswith("Batch 2/2 · Step 5/10 · 75%") and "ETA" in text
    preview = Image.new("RGB", (4, 4))
    job.control.offer_preview(5, "latent", lambda latent: preview)
    job.done.set()
    snaps = list(follow(FakeJobs(0), job, interval=0.01))
    assert len(snaps) == 1 and snaps[0].preview is preview and "Step 5/10" in snaps[0].html


# --- handlers on a real Application -----------------------------------------------------------------------------


@pytest.fixture
def app(make_app):
    return make_app("--nowebui")


def test_build_ui_has_a1111_elem_ids(app):
    demo = build_ui(app)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    for elem_id in (
        "setting_sd_model_checkpoint",
        "tab_txt2img",
        "tab_img2img",
        "tab_extras",
        "tab_pnginfo",
        "tab_history",
        "tab_settings",
        "txt2img_paste",
        "img2img_paste",
        "txt2img_hr",
        "txt2img_enable_hr",
        "txt2img_prompt",
        "txt2img_neg_prompt",
        "txt2img_generate",
        "txt2img_interrupt",
        "txt2img_skip",
        "txt2img_sampling",
        "txt2img_scheduler",
        "txt2img_steps",
        "txt2img_width",
        "txt2img_height",
        "txt2img_cfg_scale",
        "txt2img_seed",
        "txt2img_batch_count",
        "txt2img_batch_size",
        "txt2img_gallery",
        "html_info_txt2img",
        "txt2img_random_seed",
        "txt2img_reuse_seed",
        "img2img_prompt",
        "img2img_neg_prompt",
        "img2img_generate",
        "img2img_interrupt",
        "img2img_skip",
        "img2img_sampling",
        "img2img_scheduler",
        "img2img_steps",
        "img2img_cfg_scale",
        "img2img_seed",
        "img2img_width",
        "img2img_height",
        "img2img_batch_count",
        "img2img_batch_size",
        "img2img_denoising_strength",
        "img2img_gallery",
        "html_info_img2img",
        "img2img_image",
        "img2maskimg",
        "img_inpaint_base",
        "img_inpaint_mask",
        "img2img_batch_input_dir",
        "extras_image",
        "extras_upscaler_1",
        "extras_upscaler_2",
        "extras_upscaler_2_visibility",
        "extras_gallery",
        "pnginfo_send_to_img2img",
        "pnginfo_send_to_inpaint",
        "pnginfo_send_to_extras",
        "txt2img_send_to_img2img",
        "img2img_send_to_inpaint",
    ):
        assert elem_id in ids, elem_id
    for elem_id in ("txt2img_gallery", "img2img_gallery", "extras_gallery", "img2img_image", "img2maskimg"):
        component = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id)
        assert component.format == "png", elem_id


def test_txt2img_run_yields_progress_then_pngs_with_infotext(app):
    with gr.Blocks():
        tab = Txt2ImgTab(app)
    values = tab_values(
        tab,
        prompt="a blue square",
        sampler_name="Euler",
        scheduler="Automatic",
        steps=2,
        width=64,
        height=64,
        seed=5,
        batch_size=2,
    )
    outputs = run_all(tab.run(*values))
    assert any(tab.job_id in o and o[tab.job_id] for o in outputs)  # the job id is known while it runs
    final = outputs[-1]
    images = final[tab.gallery]["value"]
    assert len(images) == 3  # the grid first, then the two images
    texts = final[tab.results]["infotexts"]
    assert all(im.info["parameters"] == t for im, t in zip(images, texts))
    assert "Seed: 6," in texts[2] and "Steps: 2" in final[tab.info]
    assert tab.on_reuse_seed({"infotexts": texts, "selected": 2}) == 6


def test_txt2img_errors_are_shown(app):
    with gr.Blocks():
        tab = Txt2ImgTab(app)
    small = dict(prompt="x", sampler_name="Euler", width=64, height=64)
    bad_steps = run_all(tab.run(*tab_values(tab, steps=0, **small)))
    assert "steps" in bad_steps[-1][tab.info] and "easel-error" in bad_steps[-1][tab.info]
    app.set_options({"max_generation_pixels": 64 * 64})
    too_big = run_all(tab.run(*tab_values(tab, steps=1, **{**small, "width": 128, "height": 128})))
    assert "over the limit" in too_big[-1][tab.info]
    assert tab.gallery not in too_big[-1]  # the previous images stay


def test_quicksettings_switch_error_keeps_the_model(app, data_dir):
    with gr.Blocks():
        tab = Txt2ImgTab(app)
        quick = Quicksettings(app)
        quick.wire(tab)
    before = app.models.active.info.title
    dropdown, message, _note, width, _height = run_all([quick.on_switch("nope.safetensors [0000000000]")])[0]
    assert "easel-error" in message and app.models.active.info.title == before
    assert dropdown["value"] == before
    other = next(i.title for i in app.catalog.list() if i.title != before)
    dropdown, message, _note, width, height = quick.on_switch(other)
    assert message == "" and dropdown["value"] == other and width == height == app.models.active.native_size


def test_settings_apply_validates_and_persists(app, data_dir):
    from webui.settings import OptionDef

    app.options.add_definition(OptionDef("ui_test_list", [], "A list option", "Tests", list))
    with gr.Blocks():
        settings = SettingsTab(app)
    keys = [d.key for d in settings.defs]
    assert "sd_model_checkpoint" not in keys and "sd_checkpoints_limit" in keys
    values = settings.values()
    values[keys.index("max_generation_pixels")] = 10
    message, *updates = run_all([settings.on_apply(*values)])[0]
    assert "max_generation_pixels" in message and "easel-error" in message
    assert app.options.get("max_generation_pixels") == 2048 * 2048
    values = settings.values()
    values[keys.index("txt2img_default_steps")] = 11.0  # Gradio hands sliders back as floats
    values[keys.index("samples_format")] = "jpg"
    message, *updates = settings.on_apply(*values)
    assert "2 setting(s) changed" in message
    assert app.options.get("txt2img_default_steps") == 11 and app.options.get("samples_format") == "jpg"
    assert '"samples_format": "jpg"' in (data_dir / "config.json").read_text()
    assert "Nothing changed" in settings.on_apply(*settings.values())[0]
    values = settings.values()
    values[keys.index("ui_test_list")] = "a, b,"  # a list option without choices is a comma-separated textbox
    assert "1 setting(s) changed" in settings.on_apply(*values)[0]
    assert app.options.get("ui_test_list") == ["a", "b"]


def test_demo_note_and_footer(app):
    from types import SimpleNamespace

    from webui import VERSION
    from webui.ui import footer_html
    from webui.ui.quicksettings import DEMO_NOTE, demo_note

    assert demo_note(app) == ""  # the tiny test model is not the demo
    demo = SimpleNamespace(info=SimpleNamespace(is_demo=True))
    fake = SimpleNamespace(models=SimpleNamespace(active=demo))
    assert "Easel's small demo model (64×64 shapes)" in demo_note(fake) and "models/Stable-diffusion/" in DEMO_NOTE
    footer = footer_html(app)
    assert f"Easel {VERSION}" in footer and app.policy.label in footer


def test_hires_line_says_from_and_to():
    """#19 item 12: the Hires. fix panel says "from 512×512 to 1024×1024", by the service's own size rule."""
    from webui.ui.txt2img_tab import hires_text

    assert "from 512×512 to 1024×1024" in hires_text(512, 512, 2.0, 0, 0)
    assert "from 512×768 to 768×1152" in hires_text(512, 768, 1.5, 0, 0)
    assert "to 1024×1536" in hires_text(512, 768, 2.0, 1024, 0)  # width given: the height keeps the ratio
    assert "to 640×360" in hires_text(512, 512, 2.0, 640, 360)
    for bad in (
        (512, 512, float("nan"), 0, 0),
        (512, 512, 0, 0, 0),
        (None, 512, 2, 0, 0),
        (512, 0, 2, 64, 0),
        (512, 512, -1, 0, 0),
    ):
        assert hires_text(*bad) == ""
