"""The Extensions tab and the scripts block, built in a real Blocks and driven through their handlers."""

from __future__ import annotations

import gradio as gr

from tests.extensions.conftest import EXAMPLE, git_repo, write_extension
from tests.extensions.test_hooks_and_scripts import ECHO
from webui.generation.requests import Txt2ImgRequest
from webui.ui.extensions_tab import build_extensions_tab
from webui.ui.scripts_ui import build_scripts_ui


def value(update):
    return update["value"] if isinstance(update, dict) else update


def test_extensions_tab_install_apply_uninstall_and_index(make_app, tmp_path):
    url = git_repo(EXAMPLE, tmp_path / "src" / "example-frame")
    app = make_app("--nowebui", start=False)
    with gr.Blocks():
        tab = build_extensions_tab(app)
    assert not tab.lock_note.visible and tab.install.interactive is not False
    assert {r[0] for r in tab.rows()} == {
        "xyz_grid (built-in)",
        "prompts_from_file (built-in)",
        "controlnet (built-in)",
        "adetailer (built-in)",
        "ip_adapter (built-in)",
    }

    message, table, enabled, selected = tab.on_install(url, "", "")
    assert "Installed example-frame 1.0.0" in message and "Restart" in message
    row = next(r for r in value(table) if r[0] == "example-frame")
    assert row[2] == "✓" and row[3] == url and row[4] == "main" and len(row[5]) == 8 and row[7] == "restart to load"
    assert selected["choices"] == ["example-frame"] or ("example-frame", "example-frame") in selected["choices"]
    failed = tab.on_install(url, "", "")[0]
    assert "easel-error" in failed and "already exists" in failed

    message, table, enabled, _ = tab.on_apply(["example-frame", "prompts_from_file"])
    assert "2 extension(s) enabled" in message and "Restart" in message
    assert app.options.get("disabled_extensions") == ["adetailer", "controlnet", "ip_adapter", "xyz_grid"]
    assert set(value(enabled)) == {"example-frame", "prompts_from_file"}
    restarted = make_app("--nowebui", start=False)
    assert {r.name for r in restarted.extensions.active()} == {"example-frame", "prompts_from_file"}

    assert "up to date" in tab.on_check()[0]
    assert "easel-error" in tab.on_update(None)[0]
    message = tab.on_uninstall("example-frame")[0]
    assert "Uninstalled example-frame" in message and not (app.paths.extensions_dir / "example-frame").exists()

    message, rows, pick = tab.on_load("")
    assert "No extension index is set" in message and value(rows) == []
    message, rows, pick = tab.on_load(str(tmp_path / "nowhere.json"))
    assert "be reached or read" in message
    (tmp_path / "index.json").write_text('[{"name": "frame", "url": "%s", "description": "d"}]' % url)
    message, rows, pick = tab.on_load(str(tmp_path / "index.json"))
    assert "1 extension(s)" in message and value(rows)[0][:3] == ["frame", "d", url]
    assert "Installed example-frame" in tab.on_install_picked(url)[0]


def test_extensions_tab_locked_when_exposed(make_app, tmp_path):
    app = make_app("--listen", "--gradio-auth", "u:p", start=False)
    with gr.Blocks():
        tab = build_extensions_tab(app)
    assert tab.lock_note.visible and "--enable-insecure-extension-access" in tab.lock_note.value
    for button in (tab.apply, tab.install, tab.update, tab.uninstall, tab.install_picked):
        assert button.interactive is False
    assert not tab.enabled.interactive
    message = tab.on_install(EXAMPLE.as_uri(), "", "")[0]  # a crafted request is refused by the service too
    assert "easel-error" in message and "reachable from the network" in message
    assert not app.paths.extensions_dir.exists() or list(app.paths.extensions_dir.iterdir()) == []


def test_scripts_ui_sends_arguments_by_name(make_app, data_dir):
    write_extension(data_dir / "extensions", "echo", ECHO)
    app = make_app("--nowebui")
    with gr.Blocks():
        scripts = build_scripts_ui(app, "txt2img")
    assert scripts.script.choices[0][0] == "None" and "Echo run" in scripts.titles and "X/Y/Z plot" in scripts.titles
    names = [(slot.title, name) for slot in scripts.slots for name in slot.names]
    assert [n for n in names if n[0] == "Echo args"] == [("Echo args", "strength"), ("Echo args", "label")]
    values = {
        ("Echo args", "strength"): 1.5,
        ("Echo args", "label"): "ui",
        ("Echo run", "repeat"): 2.0,
        ("Echo run", "mode"): "upper",
    }
    # one value per component (a ControlNet unit is an ArgGroup of many components)
    ui_values = [values.get((s.title, a.name), c.value) for s in scripts.slots for a in s.args for c in a.components]
    assert len(scripts.components) == len(ui_values) + 1
    name, args, alwayson = scripts.request_fields("Echo run", *ui_values)
    assert name == "Echo run" and args == {"repeat": 2.0, "mode": "upper"}
    assert alwayson["Echo args"] == {"args": {"strength": 1.5, "label": "ui"}}
    assert not any(u["enabled"] for u in alwayson["ControlNet"]["args"].values())  # units start disabled
    assert scripts.request_fields("None", *ui_values)[:2] == (None, {})
    assert [u["visible"] for u in scripts.on_select("Echo run")] == [t == "Echo run" for t in scripts.titles]

    req = Txt2ImgRequest(prompt="a red circle", steps=1, seed=3, script_name=name, alwayson_scripts=alwayson)
    req = req.model_copy(update={"script_args": args})  # by name (until the request model declares dict too)
    result = app.jobs.wait(app.submit_txt2img(req, from_api=False))
    assert len(result.images) == 2
    calls = app.extensions.records["echo"].handle.routes[0][1]()
    assert calls == [
        {"script": "Echo args", "strength": 1.5, "label": "ui"},
        {"script": "Echo run", "repeat": 2.0, "mode": "upper"},
    ]

    with gr.Blocks():
        img2img = build_scripts_ui(app, "img2img")
    assert "Echo run" not in img2img.titles
    assert [s.title for s in img2img.slots if s.always_on and s.names] == [
        "ADetailer",
        "ControlNet",
        "IP-Adapter",
        "Echo args",
    ]
