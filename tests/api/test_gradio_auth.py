"""With the UI on: --gradio-auth makes the UI need a login, --api-auth also covers the Gradio API (/gradio_api),
and the --share tunnel failing offline leaves the local server serving. A tiny Blocks stands in for the UI."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

API_USER, UI_USER = ("api", "api-pass"), ("ui", "ui-pass")


def _basic(user: tuple[str, str]) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(":".join(user).encode()).decode()}


@pytest.fixture
def ui_client(make_app):
    import gradio as gr

    from webui.api.server import build_fastapi

    clients = []

    def factory(*flags: str) -> TestClient:
        app = make_app(*flags, start=False)
        with gr.Blocks() as blocks:
            box = gr.Textbox(elem_id="echo_in")
            out = gr.Textbox()
            box.submit(lambda s: s.upper(), box, out, api_name="echo")
        client = TestClient(build_fastapi(app, blocks=blocks), base_url="http://127.0.0.1:7860")
        client.__enter__()
        clients.append(client)
        return client

    yield factory
    for c in clients:
        c.__exit__(None, None, None)


def _login(client: TestClient, user: tuple[str, str]):
    return client.post("/login", data={"username": user[0], "password": user[1]})


def test_gradio_auth_protects_the_ui(ui_client):
    c = ui_client("--gradio-auth", ":".join(UI_USER))
    assert c.get("/config").status_code == 401
    assert c.get("/gradio_api/info").status_code == 401
    assert _login(c, ("ui", "wrong")).status_code == 400
    assert _login(c, UI_USER).status_code == 200
    assert c.get("/config").status_code == 200
    assert c.get("/gradio_api/info").status_code == 200
    page = c.get("/")
    assert page.headers["x-frame-options"] == "SAMEORIGIN" and page.headers["x-content-type-options"] == "nosniff"


def test_api_auth_covers_the_gradio_api(ui_client):
    c = ui_client("--api", "--api-auth", ":".join(API_USER))
    assert c.get("/").status_code == 200  # the page itself is the UI's (no --gradio-auth here)
    r = c.get("/gradio_api/info")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert c.get("/gradio_api/info", headers=_basic(("api", "nope"))).status_code == 401
    assert c.get("/gradio_api/info", headers=_basic(API_USER)).status_code == 200
    assert c.post("/gradio_api/call/echo", json={"data": ["x"]}).status_code == 401
    assert c.post("/gradio_api/call/echo", json={"data": ["x"]}, headers=_basic(API_USER)).status_code == 200
    assert c.get("/sdapi/v1/samplers").status_code == 401
    assert c.get("/sdapi/v1/samplers", headers=_basic(API_USER)).status_code == 200


def test_both_auths_ui_login_cookie_opens_only_the_gradio_api(ui_client):
    c = ui_client("--api", "--api-auth", ":".join(API_USER), "--gradio-auth", ":".join(UI_USER))
    assert c.get("/gradio_api/info").status_code == 401
    from starlette.routing import Mount

    gradio_app = next(m.app for m in c.app.routes if isinstance(m, Mount) and hasattr(m.app, "tokens"))
    forged = {f"access-token-{gradio_app.cookie_id}": "forged", f"access-token-unsecure-{gradio_app.cookie_id}": "x"}
    assert c.get("/gradio_api/info", cookies=forged).status_code == 401
    assert _login(c, UI_USER).status_code == 200
    assert c.get("/gradio_api/info").status_code == 200  # the UI's own calls work after its login
    assert c.get("/sdapi/v1/samplers").status_code == 401  # ... but the UI login is not an API credential
    c.cookies.clear()
    assert c.get("/gradio_api/info").status_code == 401


def test_share_offline_keeps_serving_locally(make_app, capsys):
    from types import SimpleNamespace

    from webui.security import open_share

    app = make_app("--share", "--gradio-auth", "a:b", start=False)
    blocks = SimpleNamespace(share_token="t", share_url=None)

    def offline_tunnel(**kw):
        raise RuntimeError("Could not get share link from Gradio API Server.")

    assert open_share(app, blocks, host="127.0.0.1", port=7860, setup=offline_tunnel) is None
    assert app.share_url is None
    out = capsys.readouterr().out
    assert "Could not open the --share tunnel" in out and "serving locally" in out
    url = open_share(app, blocks, host="0.0.0.0", port=7860, setup=lambda **kw: "https://abc123.gradio.live")
    assert url == app.share_url == blocks.share_url == "https://abc123.gradio.live"
