"""Isolation (a raising setup, hook or route), step_end, and script arguments by name from the API."""

from __future__ import annotations

import pytest

from tests.extensions.conftest import extension_item, pixels, txt2img, write_extension

BROKEN = """
def setup(ext):
    raise RuntimeError("boom in setup")
"""

FLAKY = """
from webui.extensions.api import ScriptError

def setup(ext):
    def after_image(image, ctx):
        raise ValueError("hook bug")
    def bad_route():
        raise KeyError("route bug")
    ext.on("after_image", after_image)
    ext.add_api_route("/bad", bad_route)
    ext.add_api_route("/fine", lambda: {"ok": True})
"""

ECHO = """
from webui.extensions.api import Script, ScriptError

CALLS = []


class EchoArgs(Script):
    title = "Echo args"
    always_on = True
    args = ("strength", "label")

    def ui(self, is_img2img):
        import gradio as gr
        return {"strength": gr.Slider(0, 2, value=1.0, step=0.25, label="Strength"),
                "label": gr.Textbox("hi", label="Label")}

    def process(self, request, *, strength=1.0, label=""):
        CALLS.append({"script": self.title, "strength": strength, "label": label})
        return request.model_copy(update={"prompt": request.prompt + f" [{label}]"})


class EchoRun(Script):
    title = "Echo run"
    visibility = "txt2img"
    args = ("repeat", "mode")

    def ui(self, is_img2img):
        import gradio as gr
        return {"repeat": gr.Number(1, label="Repeat", precision=0),
                "mode": gr.Dropdown(["plain", "upper"], value="plain", label="Mode")}

    def run(self, runner, request, *, repeat=1, mode="plain"):
        if int(repeat) < 1:
            raise ScriptError("repeat must be at least 1")
        CALLS.append({"script": self.title, "repeat": repeat, "mode": mode})
        results = [runner.generate(request.model_copy(update={"seed": request.seed + i})) for i in range(int(repeat))]
        first = results[0]
        return first.model_copy(update={"images": [im for r in results for im in r.images],
                                        "infotexts": [t for r in results for t in r.infotexts]})


def setup(ext):
    ext.add_script(EchoArgs())
    ext.add_script(EchoRun())
    ext.add_api_route("/calls", lambda: CALLS)
"""


@pytest.fixture
def ext_dir(data_dir):
    return data_dir / "extensions"


def test_broken_setup_listed_with_error_and_generation_works(make_app, serve, ext_dir):
    write_extension(ext_dir, "broken", BROKEN)
    client = serve(make_app("--nowebui"))
    item = extension_item(client, "broken")
    assert item["status"] == "error" and "boom in setup" in item["error"] and "setup failed" in item["error"]
    images, _ = txt2img(client)
    assert len(images) == 1


def test_raising_hook_and_route_are_reported_image_still_made(make_app, serve, ext_dir):
    write_extension(ext_dir, "flaky", FLAKY)
    app = make_app("--nowebui")
    client = serve(app)
    assert client.get("/ext/flaky/fine").json() == {"ok": True}
    images, info = txt2img(client)  # the hook raises: reported, and the image is produced without it
    plain_app_image = images[0]
    warned = [w for w in info.get("warnings", []) if "extension flaky" in w]  # the job says so, not just the log
    assert len(warned) == 1 and "after_image" in warned[0] and "hook bug" in warned[0], info.get("warnings")
    _, info = txt2img(client)
    assert not any("flaky" in w for w in info.get("warnings", []))  # once: the next job runs without it, silently
    item = extension_item(client, "flaky")
    assert item["status"] == "error" and "after_image raised" in item["error"] and "hook bug" in item["error"]
    assert client.get("/ext/flaky/fine").status_code == 404  # disabled for the session

    app2 = make_app("--nowebui")  # next session: it runs again; a raising route is a 500 and reports it
    client2 = serve(app2)
    r = client2.get("/ext/flaky/bad")
    assert r.status_code == 500 and "route bug" in r.json()["detail"]
    assert "route /ext/flaky/bad raised" in extension_item(client2, "flaky")["error"]
    again, _ = txt2img(client2)
    assert (pixels(again[0]) == pixels(plain_app_image)).all()


def test_step_end_sees_every_step(make_app, serve, ext_dir):
    write_extension(
        ext_dir,
        "steps",
        """
        SEEN = []

        def setup(ext):
            ext.on("step_end", lambda info: SEEN.append((info.step, info.total, tuple(info.latents.shape))))
            ext.add_api_route("/seen", lambda: SEEN)
    """,
    )
    client = serve(make_app("--nowebui"))
    txt2img(client, steps=5, batch_size=2)
    seen = client.get("/ext/steps/seen").json()
    assert [s[0] for s in seen] == [1, 2, 3, 4, 5] and {s[1] for s in seen} == {5}
    assert seen[0][2] == [2, 4, 8, 8]


def test_script_args_arrive_by_name_from_the_api(make_app, serve, ext_dir):
    write_extension(ext_dir, "echo", ECHO)
    client = serve(make_app("--nowebui"))
    scripts = client.get("/sdapi/v1/scripts").json()
    # A1111 lists lower-cased titles; requests match titles in any case
    assert {"echo args", "echo run", "x/y/z plot", "prompts from file or textbox"} <= set(scripts["txt2img"])
    assert "echo run" not in scripts["img2img"] and "echo args" in scripts["img2img"]

    _, info = txt2img(client, alwayson_scripts={"Echo args": {"args": {"strength": 0.5, "label": "dict"}}})
    assert info["prompt"].endswith("[dict]")
    txt2img(client, alwayson_scripts={"echo args": {"args": [0.25, "list"]}})
    txt2img(client, script_name="Echo run", script_args=[2, "upper"])
    calls = client.get("/ext/echo/calls").json()
    assert calls == [
        {"script": "Echo args", "strength": 0.5, "label": "dict"},
        {"script": "Echo args", "strength": 0.25, "label": "list"},
        {"script": "Echo run", "repeat": 2, "mode": "upper"},
    ]

    bad = client.post(
        "/sdapi/v1/txt2img", json={"prompt": "x", "steps": 1, "alwayson_scripts": {"Echo args": {"args": {"nope": 1}}}}
    )
    assert bad.status_code == 422 and "nope" in bad.json()["detail"]
    rejected = client.post(
        "/sdapi/v1/txt2img", json={"prompt": "x", "steps": 1, "script_name": "Echo run", "script_args": [0]}
    )
    assert rejected.status_code == 422 and "repeat must be at least 1" in rejected.json()["detail"]
    assert extension_item(client, "echo")["status"] == "ok"  # a rejected input does not disable it
    unknown = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "script_name": "No such script"})
    assert unknown.status_code == 422

    info = {s["name"]: s for s in client.get("/sdapi/v1/script-info").json() if not s["is_img2img"]}
    args = info["echo args"]["args"]
    assert info["echo args"]["is_alwayson"] is True and info["echo run"]["is_alwayson"] is False
    assert [a["name"] for a in args] == ["strength", "label"]
    assert args[0] == {
        "name": "strength",
        "label": "Strength",
        "value": 1.0,
        "minimum": 0,
        "maximum": 2,
        "step": 0.25,
        "choices": None,
    }
    assert info["echo run"]["args"][1]["choices"] == ["plain", "upper"]
    xyz = info["x/y/z plot"]["args"]
    assert xyz[0]["name"] == "x_type" and "Seed" in xyz[0]["choices"] and xyz[0]["value"] == "Seed"


def test_app_started_gets_the_documented_app_info_not_the_application(make_app, serve, ext_dir):
    write_extension(
        ext_dir,
        "starter",
        """
        SEEN = []

        def setup(ext):
            def started(info):
                SEEN.append({"type": type(info).__name__, "version": info.version, "api": info.api_version,
                             "device": info.device, "models": str(info.models_dir), "data": str(info.data_dir),
                             "has_models_manager": hasattr(info, "models")})
            ext.on("app_started", started)
            ext.add_api_route("/seen", lambda: SEEN)
    """,
    )
    from webui import VERSION
    from webui.extensions.api import API_VERSION

    app = make_app("--nowebui")
    seen = serve(app).get("/ext/starter/seen").json()
    assert seen == [
        {
            "type": "AppInfo",
            "version": VERSION,
            "api": API_VERSION,
            "device": "cpu",
            "models": str(app.paths.models_dir),
            "data": str(app.paths.data_dir),
            "has_models_manager": False,
        }
    ]
