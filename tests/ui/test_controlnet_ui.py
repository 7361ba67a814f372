"""The ControlNet accordion's handlers called directly (no browser): ArgGroup arguments in ScriptsUI, the unit
dict a unit's controls combine into, a real generation from the txt2img/img2img handlers with a tiny ControlNet,
and the units restored from that generation's infotext (↙️, PNG Info / gallery Send-to)."""

from __future__ import annotations

import logging
import shutil
import warnings

import gradio as gr
import pytest
from PIL import Image

from tests.controlnet.conftest import EXT, FakeSettings, load_script, square, tiny_controlnet
from webui.extensions.api import ArgGroup, ExtensionHandle, Script
from webui.extensions.hooks import describe_args
from webui.infotext import parse_infotext
from webui.ui.scripts_ui import NONE, ScriptsUI


def run_all(gen):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gr.Warning outside a request is a Python warning
        return list(gen)


def cn_lib(name: str):
    return load_script().lib(name)


def is_unchanged(update) -> bool:
    return isinstance(update, dict) and update.get("__type__") == "update" and "value" not in update


def value_of(update):
    return update.get("value") if isinstance(update, dict) else update


# --- ScriptsUI with an ArgGroup (a toy script through a stub host) -----------------------------------------------


class Toy(Script):
    title = "Toy"
    always_on = True
    args = ("pair", "plain")

    def ui(self, is_img2img):
        a, b = gr.Number(1, label="a"), gr.Textbox("x", label="b")
        return {
            "pair": ArgGroup([a, b], combine=lambda n, s: {"n": n, "s": s}, describe={"n": 1, "s": "x"}),
            "plain": gr.Checkbox(False, label="plain"),
        }

    def paste(self, params, is_img2img):
        return {"pair": [params.get("Toy n"), None]} if "Toy n" in params else {}


class StubHost:
    """Just what ScriptsUI uses of the extension host: the scripts and `call`."""

    def __init__(self, script):
        self.script = script

    def scripts(self, kind):
        return [("rec", self.script)]

    def call(self, rec, what, fn, *args, **kwargs):
        return fn(*args, **kwargs)


class StubApp:
    def __init__(self, script):
        self.extensions = StubHost(script)


def test_scripts_ui_sends_an_arg_group_as_one_argument_and_pastes_per_component():
    with gr.Blocks():
        scripts = ScriptsUI(StubApp(Toy()), "txt2img")
    assert len(scripts.inputs) == 3  # every component of the group is a Generate input
    name, script_args, alwayson = scripts.request_fields(NONE, 5, "hello", True)
    assert (name, script_args) == (None, {})
    assert alwayson == {"Toy": {"args": {"pair": {"n": 5, "s": "hello"}, "plain": True}}}
    with pytest.raises(ValueError):
        scripts.request_fields(NONE, 5, "hello")

    updates = scripts.paste_updates({"Toy n": 7, "Steps": "20"})
    assert len(updates) == 3 and value_of(updates[0]) == 7 and is_unchanged(updates[1]) and is_unchanged(updates[2])
    assert all(is_unchanged(u) for u in scripts.paste_updates({}))

    with gr.Blocks():
        described = describe_args(Toy(), Toy().ui(False))
    assert described[0] == {
        "name": "pair",
        "label": "pair",
        "value": {"n": 1, "s": "x"},
        "minimum": None,
        "maximum": None,
        "step": None,
        "choices": None,
    }
    assert described[1]["label"] == "plain"


# --- the ControlNet script on a bare handle -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cn_models(tmp_path_factory):
    """A models/ControlNet/ folder with one tiny SD 1.x ControlNet, `tiny-canny`."""
    from tests.factories import tiny_components

    root = tmp_path_factory.mktemp("cn-ui") / "ControlNet"
    tiny_controlnet(tiny_components(0)[0], 1).save_pretrained(root / "tiny-canny")
    return root


@pytest.fixture
def script(cn_models):
    settings = FakeSettings(control_net_models_path=str(cn_models))
    ext = ExtensionHandle(name="controlnet", path=EXT, settings=settings, log=logging.getLogger("test.cn-ui"))
    state = load_script().install(ext)
    state.family = "sd1"
    return ext.scripts[0]


def unit_values(group: ArgGroup, is_img2img: bool, **fields):
    keys = cn_lib("ui").unit_keys(is_img2img)
    return [fields.get(k, c.value) for k, c in zip(keys, group.components)]


def test_combine_gives_the_unit_dict_parse_unit_accepts(script):
    with gr.Blocks():
        groups = script.ui(False)
    assert list(groups) == ["unit_0", "unit_1", "unit_2"]
    title = script.state.catalog.titles()[0]
    group = groups["unit_0"]
    unit = group.combine(
        *unit_values(
            group,
            False,
            enabled=True,
            image=square(),
            module="canny",
            model=title,
            weight=0.8,
            threshold_a=50,
            threshold_b=150,
            resize_mode="Just Resize",
        )
    )
    assert unit["enabled"] is True and unit["module"] == "canny" and unit["model"] == title
    assert isinstance(unit["image"], str)  # base64 PNG: the request stays JSON (the history stores it)
    assert (unit["threshold_a"], unit["threshold_b"], unit["weight"]) == (50.0, 150.0, 0.8)
    parsed = script.state.parse([unit], "txt2img")[0]
    assert parsed.module == "canny" and parsed.model == title and parsed.image.size == (64, 64)
    assert parsed.resize_mode_name == "Just Resize" and parsed.weight == 0.8

    disabled = group.combine(*unit_values(group, False, image=square()))
    assert disabled["enabled"] is False and disabled["image"] is None  # no image carried for a disabled unit
    plain = group.combine(*unit_values(group, False, enabled=True, image=square(), module="none", model=title))
    assert (plain["threshold_a"], plain["threshold_b"]) == (-1, -1)  # `none` has no sliders

    with gr.Blocks():
        img2img = script.ui(True)["unit_0"]
    unit = img2img.combine(
        *unit_values(img2img, True, enabled=True, image=square(), use_input=True, module="canny", model=title)
    )
    assert unit["image"] is None and script.state.parse([unit], "img2img")[0].image is None
    with pytest.raises(Exception, match="enabled without an image"):
        script.state.parse([unit], "txt2img")


def test_decode_image_takes_a_pil_image():
    units = cn_lib("units")
    image = units.decode_image(Image.new("RGBA", (8, 4)), "unit")
    assert image.mode == "RGB" and image.size == (8, 4)


def test_preview_shows_the_map_or_a_visible_error(script):
    ui = cn_lib("ui")
    choices = script.ui_choices()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        edges, message = ui.on_preview(choices, square(), "canny", 64, 100, 200, False)
        assert message == "" and edges.size == (64, 64) and set(edges.getdata()) == {(0, 0, 0), (255, 255, 255)}
        nothing, message = ui.on_preview(choices, None, "canny", 64, 100, 200, False)
        assert nothing is None and "Upload a control image" in message and "easel-error" in message
        missing = next((m for m in choices.modules.values() if not m.available), None)
        if missing is not None:
            _, message = ui.on_preview(choices, square(), missing.name, 64, 100, 200, False)
            assert "unavailable" in message and missing.reason in message
        _, message = ui.on_preview(choices, square(), "canny", 9000, 100, 200, False)
        assert "64..2048" in message
        # a flat image has no edges: the black map comes with a notice saying why, not an error
        black, message = ui.on_preview(choices, Image.new("RGB", (64, 64), (90, 90, 200)), "canny", 64, 100, 200, False)
        assert black.getextrema() == ((0, 0), (0, 0), (0, 0))
        assert "found nothing to draw" in message and "easel-notice" in message and "easel-error" not in message
        _, message = ui.on_preview(choices, square(), "none", 64, 100, 200, False)
        assert message == ""


# --- through the app: a real generation, then its infotext pasted back ---------------------------------------------


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_models, cn_models):
    from webui.app import Application
    from webui.flags import parse_args

    root = tmp_path_factory.mktemp("ui-controlnet")
    shutil.copytree(tiny_models, root / "models")
    shutil.copytree(cn_models, root / "models" / "ControlNet")  # found through ext.models_dir("ControlNet")
    application = Application(parse_args(["--data-dir", str(root), "--nowebui"]))
    application.catalog.demo_dir = None
    application.start(wait_for_model=True)
    yield application
    application.stop()


@pytest.fixture(scope="module")
def ui(app):
    from webui.ui.extras_tab import ExtrasTab
    from webui.ui.img2img_tab import Img2ImgTab
    from webui.ui.pnginfo_tab import PngInfoTab
    from webui.ui.quicksettings import Quicksettings
    from webui.ui.sendto import SendTo
    from webui.ui.txt2img_tab import Txt2ImgTab

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


def controlnet_arg(tab, name="unit_0"):
    slot = next(s for s in tab.scripts.slots if s.title == "ControlNet")
    return next(a for a in slot.args if a.name == name)


def generate_values(tab, unit0: dict, **fields):
    """What Generate sends: the tab's fields, then the Script dropdown and every script input, unit 0 set."""
    values = [fields.get(key, comp.value) for (key, _), comp in zip(tab.FIELDS, tab.field_components)]
    keys = cn_lib("ui").unit_keys(tab.tabname == "img2img")
    arg = controlnet_arg(tab)
    chosen = dict(zip([id(c) for c in arg.components], keys))
    scripts = [unit0.get(chosen[id(c)], c.value) if id(c) in chosen else c.value for c in tab.scripts.inputs]
    return values, [NONE, *scripts]


def unit_updates(tab, updates, name="unit_0") -> dict:
    """{unit field: update} for one unit, from updates over all of `tab.scripts.inputs`."""
    keys = cn_lib("ui").unit_keys(tab.tabname == "img2img")
    arg = controlnet_arg(tab, name)
    by_id = {id(c): u for c, u in zip(tab.scripts.inputs, updates)}
    return {k: by_id[id(c)] for k, c in zip(keys, arg.components)}


@pytest.fixture(scope="module")
def generated(app, ui):
    """A txt2img generation from the UI handler with unit 0 on canny + tiny-canny: (final yield, title)."""
    tab = ui.txt2img
    title = app.extensions.find_script("ControlNet", "txt2img")[1].state.catalog.titles()[0]
    fields, scripts = generate_values(
        tab,
        {
            "enabled": True,
            "image": square(),
            "module": "canny",
            "model": title,
            "weight": 0.75,
            "threshold_a": 60,
            "threshold_b": 160,
            "guidance_end": 0.8,
            "resize_mode": "Just Resize",
        },
        prompt="a cat",
        steps=2,
        seed=3,
        width=64,
        height=64,
    )
    final = run_all(tab.run(*fields, *scripts))[-1]
    return final, title


def test_txt2img_handler_generates_with_a_unit_and_writes_its_infotext(ui, generated):
    final, title = generated
    tab = ui.txt2img
    assert tab.gallery in final, final.get(tab.info)
    text = final[tab.results]["infotexts"][0]
    assert f'ControlNet 0: "Module: canny, Model: {title}, Weight: 0.75, Resize Mode: Just Resize' in text
    assert "Threshold A: 60.0, Threshold B: 160.0" in text and "Guidance End: 0.8" in text
    assert "ControlNet 0: &quot;Module: canny" in final[tab.info]  # shown under the gallery (HTML-escaped)


def test_paste_and_send_to_restore_the_units_but_not_the_image(app, ui, generated):
    final, title = generated
    text = final[ui.txt2img.results]["infotexts"][0]
    t2i, i2i = ui.txt2img, ui.img2img

    pasted = ui.paste(t2i, text)  # ↙️
    assert len(pasted) == len(t2i.field_components) + len(t2i.scripts.inputs) + 1
    unit = unit_updates(t2i, pasted[len(t2i.field_components) : -1])
    assert value_of(unit["enabled"]) is True and value_of(unit["module"]) == "canny"
    assert value_of(unit["model"]) == title and title in unit["model"]["choices"]
    assert value_of(unit["weight"]) == 0.75 and value_of(unit["guidance_end"]) == 0.8
    assert value_of(unit["threshold_a"]) == 60.0 and value_of(unit["resize_mode"]) == "Just Resize"
    assert is_unchanged(unit["image"])  # the control image is not in the infotext
    assert value_of(unit_updates(t2i, pasted[len(t2i.field_components) : -1], "unit_1")["enabled"]) is False

    sent = ui.to_txt2img(text)  # PNG Info → txt2img
    unit = {k: sent[c] for k, c in zip(cn_lib("ui").unit_keys(False), controlnet_arg(t2i).components)}
    assert value_of(unit["enabled"]) is True and value_of(unit["model"]) == title

    updates = ui.img2img_updates(square(), {}, "img2img", text)  # PNG Info / gallery → img2img
    unit = {k: updates[c] for k, c in zip(cn_lib("ui").unit_keys(True), controlnet_arg(i2i).components)}
    assert value_of(unit["module"]) == "canny" and is_unchanged(unit["use_input"])

    # an infotext without ControlNet leaves the units as they are
    plain = ui.paste(t2i, "a dog\nSteps: 2, Sampler: Euler, Seed: 1, Size: 64x64")
    assert all(is_unchanged(u) for u in plain[len(t2i.field_components) : -1])
    assert parse_infotext(text)["ControlNet 0"].startswith("Module: canny")


def test_a_unit_without_an_image_is_a_visible_error_and_nothing_is_generated(app, ui):
    tab = ui.txt2img
    title = app.extensions.find_script("ControlNet", "txt2img")[1].state.catalog.titles()[0]
    before = len(app.history.list(limit=100))
    fields, scripts = generate_values(
        tab, {"enabled": True, "module": "canny", "model": title}, prompt="a cat", steps=2, seed=3, width=64, height=64
    )
    final = run_all(tab.run(*fields, *scripts))[-1]
    assert tab.gallery not in final
    assert "easel-error" in final[tab.info] and "ControlNet unit 0 is enabled without an image" in final[tab.info]
    fields, scripts = generate_values(
        tab, {"enabled": True, "image": square(), "module": "canny"}, prompt="a cat", steps=2
    )
    final = run_all(tab.run(*fields, *scripts))[-1]
    assert "enabled without a model" in final[tab.info]
    jobs = app.history.list(limit=100)[: len(app.history.list(limit=100)) - before]
    assert all(not (j.get("result") or {}).get("images") for j in jobs)


def test_img2img_handler_uses_the_img2img_input_as_the_control_image(app, ui):
    tab = ui.img2img
    title = app.extensions.find_script("ControlNet", "img2img")[1].state.catalog.titles()[0]
    fields, scripts = generate_values(
        tab,
        {"enabled": True, "use_input": True, "module": "canny", "model": title},
        prompt="a cat",
        steps=2,
        seed=3,
        width=64,
        height=64,
    )
    sub = [c.value for c in tab.inputs[len(tab.field_components) : len(tab.inputs) - len(tab.scripts.components)]]
    sub[0], sub[1] = "img2img", square()  # mode, init image
    final = run_all(tab.run(*fields, *sub, *scripts))[-1]
    assert tab.gallery in final, final.get(tab.info)
    assert 'ControlNet 0: "Module: canny' in final[tab.results]["infotexts"][0]


def test_script_info_describes_each_unit_with_the_default_unit(app):
    from fastapi.testclient import TestClient

    from tests.extensions.conftest import build_server

    with TestClient(build_server(app)) as client:
        info = client.get("/sdapi/v1/script-info").json()
    cn = next(s for s in info if s["name"].lower() == "controlnet" and not s["is_img2img"])
    assert [a["name"] for a in cn["args"]] == ["unit_0", "unit_1", "unit_2"]
    assert cn["args"][0]["value"] == cn_lib("ui").default_unit() and cn["args"][0]["value"]["enabled"] is False


def test_img2img_a_script_input_that_cannot_be_read_is_a_visible_error(app, ui, monkeypatch):
    """The script components' values are read inside the job's error handling, as in txt2img: a combine() that
    raises shows its message and starts nothing, instead of a generic Gradio error."""
    tab = ui.img2img

    def broken(*values):
        raise ValueError("unit 1: weight is not a number")

    monkeypatch.setattr(tab.scripts, "request_fields", broken)
    before = len(app.history.list(limit=100))
    fields, scripts = generate_values(tab, {"enabled": False}, prompt="a cat", steps=2, width=64, height=64)
    sub = [c.value for c in tab.inputs[len(tab.field_components) : len(tab.inputs) - len(tab.scripts.components)]]
    sub[0], sub[1] = "img2img", square()
    final = run_all(tab.run(*fields, *sub, *scripts))[-1]
    assert tab.gallery not in final
    assert "easel-error" in final[tab.info] and "weight is not a number" in final[tab.info]
    assert len(app.history.list(limit=100)) == before


def test_history_send_to_txt2img_restores_the_units_from_the_jobs_infotext(app, ui, generated):
    final, title = generated
    text = final[ui.txt2img.results]["infotexts"][0]
    job = next(j for j in app.history.list(limit=100) if text in ((j.get("result") or {}).get("infotexts") or []))
    t2i = ui.txt2img
    sent = ui.history_to_txt2img(job["id"])
    unit = {k: sent[c] for k, c in zip(cn_lib("ui").unit_keys(False), controlnet_arg(t2i).components)}
    assert value_of(unit["enabled"]) is True and value_of(unit["model"]) == title
    assert value_of(unit["weight"]) == 0.75 and value_of(sent[t2i.prompt]) == "a cat"
    assert sent[ui.text] == text  # the checkpoint switch that follows reads the same infotext
    assert ui.history_to_txt2img(None) == {}  # nothing selected: a warning, no change


def test_unavailable_preprocessors_behind_a_disclosure_and_the_model_a_unit_needs():
    """#19 item 13: the unavailable list is a closed <details>; a unit says which model file it needs and whether
    this install has one."""
    ui = cn_lib("ui")
    pre = cn_lib("preprocessors")
    note = ui.unavailable_note(pre.registry(None))  # no annotator folder: the weight-based detectors can't run
    assert note.startswith('<details class="easel-disclosure">') and " open" not in note.split(">")[0]
    assert "softedge_hed" in note and "<summary>" in note
    assert ui.unavailable_note({"canny": pre.registry(None)["canny"]}) == ""
    titles = ["control_v11p_sd15_canny [0123abcd]", "tiny-depth [89abcdef]"]
    html = ui.needed_model_html("canny", "None", titles)
    assert "control_v11p_sd15_canny.safetensors" in html and "here: <code>control_v11p_sd15_canny" in html
    assert "none here yet" in ui.needed_model_html("openpose_full", "None", titles)
    assert "here: <code>tiny-depth" in ui.needed_model_html("depth_midas", None, titles)
    assert "doesn't say canny" in ui.needed_model_html("canny", "tiny-depth [89abcdef]", titles)
    hostile = ui.needed_model_html("<script>", "<img src=x onerror=alert(1)>", ["<b>"])
    assert "<script>" not in hostile and "<img" not in hostile
