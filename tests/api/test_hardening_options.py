"""Issue #16 items 5 and 8: every path that changes options goes through one check, and options are typed and finite.

- Exposed, `disabled_extensions` is refused (403) by /sdapi/v1/options, by `override_settings` of txt2img, img2img
  and the jobs API (also with override_settings_restore_afterwards=false), and by Settings → Apply.
- NaN/Infinity, wrong types and out-of-range values are 422 on every route, the limits themselves are bounded, and
  nothing bad reaches config.json; a damaged config.json starts with defaults and is kept aside.
"""

from __future__ import annotations

import base64
import json
import logging

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import png_base64

AUTH = {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
EXPOSED = ("--listen", "--api", "--api-auth", "u:p", "--gradio-auth", "g:p", "--nowebui")


@pytest.fixture
def serve_app(make_app):
    """serve_app(*flags, start=False) → a TestClient (as a remote client) on the real server of a new Application."""
    from webui.api.server import build_fastapi

    clients = []

    def factory(*flags: str, start: bool = False) -> TestClient:
        app = make_app(*flags, start=start)
        c = TestClient(
            build_fastapi(app),
            base_url="http://127.0.0.1:7860",
            client=("203.0.113.7", 40000),
            headers=AUTH if "--api-auth" in flags else {},
        )
        c.__enter__()
        c.application = app
        clients.append(c)
        return c

    yield factory
    for c in clients:
        c.__exit__(None, None, None)


def _config(app) -> dict:
    f = app.paths.config_file
    return json.loads(f.read_text()) if f.exists() else {}


def test_disabled_extensions_is_locked_on_every_route_when_exposed(serve_app):
    c = serve_app(*EXPOSED)
    app = c.application
    before = _config(app)
    lock = {"disabled_extensions": ["xyz_grid"]}
    gen = {
        "prompt": "x",
        "steps": 1,
        "width": 64,
        "height": 64,
        "override_settings": lock,
        "override_settings_restore_afterwards": False,
    }
    refused = [
        c.post("/sdapi/v1/options", json=lock),
        c.post("/sdapi/v1/txt2img", json=gen),
        c.post("/sdapi/v1/txt2img", json={**gen, "override_settings_restore_afterwards": True}),
        c.post("/sdapi/v1/img2img", json={**gen, "init_images": [png_base64((64, 64))]}),
        c.post("/easel/v1/jobs", json={"kind": "txt2img", "params": gen}),
        c.post("/easel/v1/jobs", json={"kind": "img2img", "params": {**gen, "init_images": [png_base64((64, 64))]}}),
        c.post("/sdapi/v1/options", json={"disabled_extensions": "not even a list"}),  # locked whatever the value
    ]
    for r in refused:
        assert r.status_code == 403, (r.request.url, r.text[:300])
        assert "--enable-insecure-extension-access" in r.json()["detail"]
    with pytest.raises(Exception) as e:  # Settings → Apply calls this
        app.set_options(lock)
    assert getattr(e.value, "status", None) == 403
    assert app.jobs.queued() == [] and app.jobs.current is None  # nothing was queued
    assert _config(app) == before and app.options.get("disabled_extensions") == []
    assert c.get("/sdapi/v1/options").json()["disabled_extensions"] == []
    # posting back the value it already has changes nothing and passes (clients that round-trip all options)
    assert c.post("/sdapi/v1/options", json={"disabled_extensions": []}).status_code == 200
    assert c.post("/sdapi/v1/options", json=c.get("/sdapi/v1/options").json()).status_code == 200

    unlocked = serve_app(*EXPOSED, "--enable-insecure-extension-access")
    assert unlocked.post("/sdapi/v1/options", json=lock).status_code == 200
    assert _config(unlocked.application)["disabled_extensions"] == ["xyz_grid"]


def test_loopback_override_settings_persist_only_what_passes_the_check(serve_app):
    c = serve_app("--api", "--nowebui", start=True)
    app = c.application
    body = {"prompt": "x", "steps": 1, "width": 64, "height": 64, "override_settings_restore_afterwards": False}
    r = c.post("/sdapi/v1/txt2img", json={**body, "override_settings": {"eta_noise_seed_delta": 7}})
    assert r.status_code == 200, r.text[:300]
    assert _config(app)["eta_noise_seed_delta"] == 7  # the legitimate path still works
    for bad in (
        {"jpeg_quality": "zzz"},
        {"eta_ancestral": "NaN"},
        {"max_generation_pixels": 1e30},
        {"CLIP_stop_at_last_layers": 99},
        {"some_unknown_option": {"nested": 1}},
    ):
        r = c.post("/sdapi/v1/txt2img", json={**body, "override_settings": bad})
        assert r.status_code == 422, (bad, r.text[:300])
        assert next(iter(bad)) in r.json()["detail"]
    # infotext-driven overrides go through the same check (Clip skip → CLIP_stop_at_last_layers, 1..12)
    r = c.post("/sdapi/v1/txt2img", json={**body, "infotext": "cat\nSteps: 1, Seed: 1, Size: 64x64, Clip skip: 99"})
    assert r.status_code == 422 and "CLIP_stop_at_last_layers" in r.json()["detail"]
    r = c.post("/sdapi/v1/txt2img", json={**body, "infotext": "cat\nSteps: 1, Size: 64x64, Token merging ratio: nan"})
    assert r.status_code == 422 and "token_merging_ratio" in r.json()["detail"]
    config = _config(app)
    assert "jpeg_quality" not in config and "token_merging_ratio" not in config and "eta_ancestral" not in config
    assert c.get("/sdapi/v1/options").status_code == 200


@pytest.mark.parametrize(
    "change",
    [
        {"eta_ancestral": "NaN"},
        {"eta_ancestral": "Infinity"},
        {"eta_ancestral": 2},
        {"jpeg_quality": "zzz"},
        {"jpeg_quality": 0},
        {"jpeg_quality": 101},
        {"jpeg_quality": 80.5},
        {"jpeg_quality": True},  # JSON true is no number: pydantic's lax mode made it 1
        {"eta_ancestral": True},
        {"openvino_cache_mb": True},
        {"max_generation_pixels": 1e30},
        {"max_generation_pixels": 10**12},
        {"max_image_pixels": 1e30},
        {"vae_tiling_min_pixels": 10**15},
        {"eta_noise_seed_delta": 2**64},
        {"samples_save": "maybe"},
        {"samples_format": "gif"},
        {"directories_max_prompt_words": 10**6},
        {"sd_vae": ["a", "list"]},
        {"control_net_max_resolution": "zzz"},  # an extension's option, by the type the extension declared
        {"control_net_max_resolution": 1e30},
        {"control_net_max_resolution": 10**6},  # the extension's own maximum
        {"control_net_unit_count": 0},
        {"unknown_key": {"nested": "dict"}},
        {"unknown_key": [1, 2]},
        {"unknown_key": "x" * 5000},
        {"": 1},
    ],
)
def test_options_are_typed_and_finite(serve_app, change):
    c = serve_app("--api", "--nowebui")
    app = c.application
    before = c.get("/sdapi/v1/options").json()
    r = c.post("/sdapi/v1/options", json=change)
    assert r.status_code == 422, r.text[:300]
    key = next(iter(change))
    assert key in r.text
    after = c.get("/sdapi/v1/options")
    assert after.status_code == 200 and after.json() == before
    assert key not in _config(app)


def test_numbers_as_text_or_integral_floats_still_pass(serve_app):
    c = serve_app("--api", "--nowebui")
    for change, stored in (({"jpeg_quality": "81"}, 81), ({"jpeg_quality": 82.0}, 82), ({"eta_ancestral": 0}, 0.0)):
        r = c.post("/sdapi/v1/options", json=change)
        assert r.status_code == 200, r.text[:300]
        key = next(iter(change))
        assert c.get("/sdapi/v1/options").json()[key] == stored


def test_options_with_a_raw_nan_body_and_a_restart(serve_app, make_app):
    c = serve_app("--api", "--nowebui")
    for body in ('{"eta_ancestral": NaN}', '{"eta_ancestral": -Infinity}', '{"something_else": NaN}'):
        r = c.post("/sdapi/v1/options", content=body, headers={"Content-Type": "application/json"})
        assert 400 <= r.status_code < 500, (body, r.status_code, r.text[:200])
    good = {
        "jpeg_quality": "90",
        "eta_ancestral": 0.5,
        "max_generation_pixels": 1024 * 1024,
        "an_a1111_option_easel_lacks": "kept",
        "a1111_list_option": ["a", "b"],
    }
    assert c.post("/sdapi/v1/options", json=good).status_code == 200
    opts = c.get("/sdapi/v1/options").json()
    assert opts["jpeg_quality"] == 90 and opts["an_a1111_option_easel_lacks"] == "kept"
    text = c.application.paths.config_file.read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in config.json"))
    again = serve_app("--api", "--nowebui")  # a restart on the same data dir
    assert again.get("/sdapi/v1/options").json()["jpeg_quality"] == 90


@pytest.mark.parametrize(
    "content",
    [
        '{"eta_ancestral": NaN, "jpeg_quality": "zzz", "max_generation_pixels": 1e30, "bad_unknown": {"x": [1]},'
        ' "CLIP_stop_at_last_layers": 2, "kept_unknown": "yes"}',
        '{"eta_ancestral": 0.5, "CLIP_stop_at_last_lay',  # truncated
        '["not", "an", "object"]',
        "\xff\xfe garbage",
    ],
)
def test_damaged_config_starts_with_defaults_and_is_kept_aside(serve_app, data_dir, caplog, content):
    config = data_dir / "config.json"
    config.write_bytes(content.encode("latin-1"))
    with caplog.at_level(logging.WARNING):
        c = serve_app("--api", "--nowebui")
    r = c.get("/sdapi/v1/options")
    assert r.status_code == 200
    opts = r.json()
    assert opts["eta_ancestral"] == (1.0 if "NaN" in content else opts["eta_ancestral"])
    assert opts["jpeg_quality"] == 80 and opts["max_generation_pixels"] == 2048 * 2048
    aside = list(data_dir.glob("config.json.bad-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == content.encode("latin-1")  # the original, byte for byte
    assert any("config.json" in m and aside[0].name in m for m in caplog.messages)
    if "kept_unknown" in content:  # the good keys survive
        assert opts["CLIP_stop_at_last_layers"] == 2 and opts["kept_unknown"] == "yes" and "bad_unknown" not in opts
    assert c.post("/sdapi/v1/options", json={"jpeg_quality": 70}).status_code == 200  # and saving works again
    assert json.loads(config.read_text())["jpeg_quality"] == 70


def test_config_write_is_atomic(serve_app, monkeypatch):
    import os

    c = serve_app("--api", "--nowebui")
    assert c.post("/sdapi/v1/options", json={"jpeg_quality": 70}).status_code == 200
    config = c.application.paths.config_file
    before = config.read_bytes()

    def fail(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        c.application.options.set({"jpeg_quality": 60})
    monkeypatch.undo()
    assert config.read_bytes() == before  # the old file is whole, and no temp file is left behind
    assert [p.name for p in config.parent.iterdir() if p.name.startswith(".config.json")] == []


def test_settings_tab_applies_the_same_check_when_exposed(make_app):
    """Settings → Apply: the path and extension options are shown read-only (with the reason), and a change sent
    anyway is refused by the same check as the API; other settings still apply."""
    import gradio as gr

    from webui.ui.settings_tab import SettingsTab

    app = make_app(*EXPOSED, start=False)
    with gr.Blocks() as demo:
        settings = SettingsTab(app)
    by_id = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
    assert by_id["setting_outdir_txt2img_samples"].interactive is False
    assert "--allow-path-options" in by_id["setting_outdir_txt2img_samples"].info
    assert by_id["setting_disabled_extensions"].interactive is False
    assert by_id["setting_jpeg_quality"].interactive is not False
    keys = [d.key for d in settings.defs]
    values = settings.values()
    values[keys.index("outdir_txt2img_samples")] = "/tmp/elsewhere"
    message = settings.on_apply(*values)[0]
    assert "easel-error" in message and "--allow-path-options" in message
    assert app.options.get("outdir_txt2img_samples") == "outputs/txt2img-images"
    values = settings.values()
    values[keys.index("jpeg_quality")] = 70
    assert "1 setting(s) changed" in settings.on_apply(*values)[0] and app.options.get("jpeg_quality") == 70
