"""#19 item 6: A1111's `quicksettings_list` over /sdapi/v1/options: read, written, checked by the one option check
(type, size, finite; refused whole when bad), and what the top bar makes of it."""

from __future__ import annotations

import json

import pytest
import requests

DEFAULT = ["sd_model_checkpoint"]


@pytest.fixture
def options_url(api_server):
    url = f"{api_server.url}/sdapi/v1/options"
    yield url
    api_server.app.set_options({"quicksettings_list": DEFAULT})  # the shared server is left as it was


def test_read_and_write(api_server, options_url):
    assert requests.get(options_url, timeout=10).json()["quicksettings_list"] == DEFAULT
    pinned = ["sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers"]
    r = requests.post(options_url, json={"quicksettings_list": pinned}, timeout=10)
    assert r.status_code == 200, r.text
    assert requests.get(options_url, timeout=10).json()["quicksettings_list"] == pinned
    stored = json.loads(api_server.app.paths.config_file.read_text())
    assert stored["quicksettings_list"] == pinned


@pytest.mark.parametrize(
    "body",
    [
        '{"quicksettings_list": "sd_vae"}',
        '{"quicksettings_list": [1, 2]}',
        '{"quicksettings_list": NaN}',
        '{"quicksettings_list": [Infinity]}',
        '{"quicksettings_list": 1e9}',
        '{"quicksettings_list": -1}',
        '{"quicksettings_list": {"a": 1}}',
        '{"quicksettings_list": [null]}',
        json.dumps({"quicksettings_list": ["x"] * 300}),
        json.dumps({"quicksettings_list": ["x" * 5000]}),
        json.dumps({"quicksettings_list": ["sd_vae\u0000"]}),
    ],
)
def test_hostile_values_are_422_and_change_nothing(api_server, options_url, body):
    r = requests.post(options_url, data=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 422 and r.json().get("error"), r.text
    assert requests.get(options_url, timeout=10).json()["quicksettings_list"] == DEFAULT


def test_huge_body_and_cross_site_are_refused(api_server, options_url):
    big = json.dumps({"quicksettings_list": ["../" * 100] * 200, "pad": "x" * 2_000_000})
    r = requests.post(options_url, data=big, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 413
    r = requests.post(
        options_url, json={"quicksettings_list": ["sd_vae"]}, timeout=10, headers={"Origin": "http://evil.example"}
    )
    assert r.status_code == 403 and r.json()["error"] == "CrossSiteRequest"
    assert requests.get(options_url, timeout=10).json()["quicksettings_list"] == DEFAULT  # and the server lives


def test_paths_and_unknown_names_are_only_text(api_server, options_url):
    """A name is only looked up among the declared options: '../', an absolute path or an unknown name pins nothing."""
    from webui.ui.quicksettings import pinned_keys

    odd = [
        "../../etc/passwd",
        "/etc/passwd",
        "no_such_option",
        "sd_vae",
        "sd_vae",
        "sd_model_checkpoint",
        "CLIP_stop_at_last_layers",
    ]
    assert requests.post(options_url, json={"quicksettings_list": odd}, timeout=10).status_code == 200
    assert pinned_keys(api_server.app) == ["sd_vae", "CLIP_stop_at_last_layers"]
