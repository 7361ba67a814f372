"""Units from `alwayson_scripts.controlnet.args`: modes by string or integer, and each kind of bad input refused
with a clear message before the generation starts. Models: listing, lookup, family refusal."""

from __future__ import annotations

import pytest

from tests.controlnet.conftest import b64, load_script, square
from webui.extensions.api import ScriptError


def unit(**kw):
    return {"enabled": True, "module": "canny", "model": "tiny-canny", "image": b64(square()), **kw}


def test_units_parse_with_string_and_integer_modes(installed):
    state, _ = installed
    units = state.parse(
        [
            unit(
                resize_mode="Resize and Fill",
                control_mode=2,
                weight=0.5,
                guidance_start=0.1,
                guidance_end=0.8,
                processor_res=-1,
                threshold_a=50,
            ),
            unit(resize_mode=0, control_mode="my prompt is more important"),
            unit(resize_mode="Envelope (Outer Fit)", control_mode="1"),
            {"enabled": False},
            None,
        ],
        "txt2img",
    )
    assert [u.index for u in units] == [0, 1, 2]
    a, b, c = units
    assert (a.resize_mode, a.control_mode, a.weight, a.guidance_start, a.guidance_end) == (2, 2, 0.5, 0.1, 0.8)
    assert a.processor_res == 512 and a.threshold_a == 50 and a.threshold_b == -1
    assert (b.resize_mode, b.control_mode, c.resize_mode, c.control_mode) == (0, 1, 2, 1)
    assert a.model.startswith("tiny-canny [") and a.image.size == (64, 64)
    text = load_script().lib("units").infotext(a)
    assert text.startswith("Module: canny, Model: tiny-canny [") and "Weight: 0.5" in text
    assert "Resize Mode: Resize and Fill" in text and "Control Mode: ControlNet is more important" in text


@pytest.mark.parametrize(
    "bad, message",
    [
        (unit(image=None), "enabled without an image"),
        (unit(model="None"), "enabled without a model"),
        (unit(model=""), "enabled without a model"),
        (unit(module="depth_midas"), "unknown module 'depth_midas'"),
        (unit(module="softedge_hed"), "unavailable: annotator weights ControlNetHED.pth not found"),
        (unit(model="nope [12345678]"), "unknown ControlNet model 'nope \\[12345678\\]'; available: tiny-canny"),
        (unit(image="not an image!"), "not a decodable image"),
        (unit(image="aGVsbG8="), "not a decodable image"),
        (unit(resize_mode="Stretch"), "resize_mode: expected one of"),
        (unit(control_mode=7), "control_mode: expected one of"),
        (unit(weight="heavy"), "weight must be a number"),
        (unit(weight=3), "weight 3.0 is outside"),
        (unit(guidance_start=0.8, guidance_end=0.2), "guidance_start 0.8 is after guidance_end 0.2"),
        (unit(processor_res=4096), "processor_res 4096 is outside 64..2048"),
        ("canny", "expected an object"),
    ],
)
def test_bad_units_are_refused(installed, bad, message):
    state, _ = installed
    with pytest.raises(ScriptError, match=message):
        state.parse([bad], "txt2img")


def test_img2img_units_may_use_the_input_image(installed):
    state, _ = installed
    [u] = state.parse([unit(image=None)], "img2img")
    assert u.image is None


def test_models_are_listed_and_found_by_title_name_or_stale_hash(installed):
    state, _ = installed
    titles = state.catalog.titles()
    assert sorted(t.split(" [")[0] for t in titles) == ["tiny-canny", "tiny-other", "tiny-xl"]
    assert all(len(t.split(" [")[1].rstrip("]")) == 8 for t in titles)
    entry = state.catalog.find("tiny-canny")
    assert state.catalog.find(entry.title) is entry and state.catalog.find("TINY-CANNY [00000000]") is entry
    model = state.catalog.load(entry)
    assert state.catalog.load(entry) is model  # cached
    assert model.config.cross_attention_dim == 32


def test_family_mismatch_is_refused(installed):
    state, _ = installed
    state.family = "sd1"
    with pytest.raises(ScriptError, match="'tiny-xl \\[.*\\]' is for sdxl, but the loaded checkpoint is sd1"):
        state.parse([unit(model="tiny-xl")], "txt2img")
    state.family = "sdxl"
    state.parse([unit(model="tiny-xl")], "txt2img")  # the right family passes
    # with the checkpoint UNet's cross-attention width (proposed ModelInfo field) the check is exact
    state.family, state.cross_attention_dim = "sd1", 768
    with pytest.raises(ScriptError, match="cross-attention width 32.*width 768"):
        state.parse([unit()], "txt2img")
    state.cross_attention_dim = 32
    assert state.parse([unit()], "txt2img")


def test_model_loaded_hook_records_the_family(installed):
    from webui.extensions.api import ModelInfo

    state, ext = installed
    [hook] = ext.hooks["model_loaded"]
    hook(ModelInfo(title="x", name="x", hash="0", family="sdxl", native_size=1024))
    assert state.family == "sdxl" and state.cross_attention_dim is None


def test_single_file_refusals(installed, tmp_path):
    models = load_script().lib("models")
    import torch
    from safetensors.torch import save_file

    save_file({"input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3)}, str(tmp_path / "unet-only.safetensors"))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    cat = models.ControlNetCatalog(tmp_path, template_dir=tmp_path, cache_dir=tmp_path / "cache")
    with pytest.raises(models.ControlNetModelError, match="not an LDM-layout ControlNet"):
        cat.config(cat.find("unet-only"))
    with pytest.raises(models.ControlNetModelError, match="evil.pth was refused"):
        cat.config(cat.find("evil"))


def test_script_registers_with_the_pipeline_call_capability(installed, controlnet_dir):
    import logging

    from webui.extensions import api
    from webui.extensions.api import ExtensionHandle
    from webui.extensions.hooks import named_args
    from webui.generation.requests import Img2ImgRequest, Txt2ImgRequest

    from tests.controlnet.conftest import EXT, FakeSettings

    assert "pipeline_call" in api.EVENTS  # the contract carries it (API 1, additive)
    ext = ExtensionHandle(
        name="controlnet",
        path=EXT,
        log=logging.getLogger("t"),
        settings=FakeSettings(control_net_models_path=str(controlnet_dir)),
    )
    state = load_script().install(ext)
    [script] = ext.scripts
    assert script.always_on and script.args == ("unit_0", "unit_1", "unit_2")
    assert ext.hooks["pipeline_call"] == [state.on_pipeline_call]
    args = named_args(script, {"args": [unit(), {"enabled": False}]})  # an A1111 client's list of units
    script.process(Txt2ImgRequest(prompt="x"), **args)
    assert [u.index for u in state.units] == [0]
    script.process(Img2ImgRequest(prompt="x"), **named_args(script, {"args": [[unit(image=None), unit()]]}))
    assert [u.index for u in state.units] == [0, 1] and state.units[0].image is None
    with pytest.raises(ScriptError, match="without an image"):
        script.process(Txt2ImgRequest(prompt="x"), unit_0=unit(image=None))
    [reset] = ext.hooks["before_generate"]
    reset(Txt2ImgRequest(prompt="x"))
    assert state.units == []


def test_models_stay_in_ram_most_recently_used_first(installed, monkeypatch):
    state, _ = installed
    catalog = state.catalog
    loads = []
    real = catalog._load
    monkeypatch.setattr(catalog, "_load", lambda entry, dtype: loads.append(entry.name) or real(entry, dtype))
    canny, other, xl = (catalog.find(n) for n in ("tiny-canny", "tiny-other", "tiny-xl"))
    first = catalog.load(canny, keep=2)
    assert catalog.load(canny, keep=2) is first and loads == ["tiny-canny"]  # cached: no second read
    catalog.load(other, keep=2)
    catalog.load(canny, keep=2)  # touch: tiny-other is now the least recently used
    catalog.load(xl, keep=2)
    assert loads == ["tiny-canny", "tiny-other", "tiny-xl"]
    assert [p.rsplit("/", 1)[-1] for p in catalog.loaded()] == ["tiny-canny", "tiny-xl"]
    catalog.load(other, keep=2)
    assert loads[-1] == "tiny-other"  # evicted, so read again
