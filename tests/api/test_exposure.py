"""Issue #16 items 1, 10, 11, 12: what an exposed Easel answers to a stranger.

- Without --api no API route exists (A1111's rule), also when the UI is exposed behind --gradio-auth.
- State-changing requests from another site's page are refused (CSRF), GETs are not.
- --allowed-hosts: a foreign Host gets 400 before any password is asked for, also when exposed.
- Password guessing backs off per address, for HTTP Basic and for the UI login; --api-auth-path keeps passwords
  out of `ps`.
"""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient

API_USER, UI_USER = ("api", "api-pass"), ("ui", "ui-pass")
REMOTE = ("203.0.113.7", 40000)  # a client that came through a socket from another machine


def _basic(user: tuple[str, str]) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(":".join(user).encode()).decode()}


@pytest.fixture
def server(make_app):
    """server(*flags, ui=True) → a TestClient on the real build_fastapi; a tiny Blocks stands in for the UI."""
    import gradio as gr

    from webui.api.server import build_fastapi

    clients = []

    def factory(*flags: str, host: str = "127.0.0.1:7860", client=REMOTE) -> TestClient:
        app = make_app(*flags, start=False)
        blocks = None
        if "--nowebui" not in flags:
            with gr.Blocks() as blocks:
                box = gr.Textbox()
                out = gr.Textbox()
                box.submit(lambda s: s.upper(), box, out, api_name="echo")
        c = TestClient(build_fastapi(app, blocks=blocks), base_url=f"http://{host}", client=client)
        c.__enter__()
        c.application = app
        clients.append(c)
        return c

    yield factory
    for c in clients:
        c.__exit__(None, None, None)


API_PROBES = [
    ("GET", "/sdapi/v1/cmd-flags", None),
    ("GET", "/sdapi/v1/options", None),
    ("POST", "/sdapi/v1/options", {"outdir_txt2img_samples": "/tmp/x"}),
    ("POST", "/sdapi/v1/txt2img", {"prompt": "x", "steps": 1}),
    ("POST", "/easel/v1/train/lora", {"dataset_dir": "/root"}),
    ("GET", "/easel/v1/system", None),
    ("GET", "/easel/v1/jobs", None),
    ("POST", "/sdapi/v1/interrupt", None),
    ("GET", "/ext/controlnet/model_list", None),
    ("GET", "/controlnet/model_list", None),
    ("GET", "/docs", None),
    ("GET", "/openapi.json", None),
    ("GET", "/redoc", None),
]


@pytest.mark.parametrize(
    "flags",
    [
        ("--listen", "--gradio-auth", "u:p"),
        ("--server-name", "192.0.2.10", "--gradio-auth", "u:p"),
        ("--share", "--gradio-auth", "u:p"),
        (),  # loopback without --api: A1111 mounts no API either
    ],
)
def test_no_api_route_without_api_flag(server, flags):
    c = server(*flags)
    config = c.application.paths.config_file
    before = config.read_bytes() if config.exists() else None
    for method, path, body in API_PROBES:
        r = c.request(method, path, json=body, headers={"Origin": "http://127.0.0.1:7860"})
        assert r.status_code in (401, 404), (flags, method, path, r.status_code, r.text[:200])
        assert "outdir" not in r.text and "dataset" not in r.text
        if path.startswith(("/sdapi", "/easel", "/ext")):
            assert r.status_code == 404 and "--api" in r.json()["detail"]
    assert (config.read_bytes() if config.exists() else None) == before  # nothing was written


def test_exposed_ui_only_gradio_api_needs_the_login(server):
    c = server("--listen", "--gradio-auth", ":".join(UI_USER))
    assert c.get("/gradio_api/info").status_code in (401, 403)
    assert c.post("/gradio_api/call/echo", json={"data": ["hi"]}).status_code in (401, 403)
    assert c.post("/login", data={"username": UI_USER[0], "password": UI_USER[1]}).status_code == 200
    r = c.post("/gradio_api/call/echo", json={"data": ["hi"]}, headers={"Origin": "http://127.0.0.1:7860"})
    assert r.status_code == 200, r.text  # the UI's own calls keep working behind the login
    assert "HI" in c.get(f"/gradio_api/call/echo/{r.json()['event_id']}").text


def test_ui_login_page_is_distinguishable_from_an_open_ui(server):
    c = server("--listen", "--gradio-auth", ":".join(UI_USER))
    r = c.get("/?__theme=dark", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == "/login?__theme=dark"
    assert r.headers["x-frame-options"] == "SAMEORIGIN"
    page = c.get("/login")
    assert page.status_code == 200 and '"auth_required":true' in page.text.replace(" ", "")
    assert c.post("/login", data={"username": UI_USER[0], "password": UI_USER[1]}).status_code == 200
    assert c.get("/login", follow_redirects=False).headers["location"] == "/"
    r = c.get("/", follow_redirects=False)
    assert r.status_code == 200 and '"auth_required":true' not in r.text.replace(" ", "")


def test_exposed_api_still_needs_api_auth(server):
    from webui.flags import parse_args, validate_args

    ns = parse_args(["--listen", "--api", "--gradio-auth", "u:p"])
    assert any("--api-auth" in e for e in validate_args(ns))
    c = server("--listen", "--api", "--api-auth", ":".join(API_USER), "--gradio-auth", "u:p")
    assert c.get("/sdapi/v1/cmd-flags").status_code == 401
    assert c.get("/sdapi/v1/cmd-flags", headers=_basic(API_USER)).status_code == 200


def test_api_auth_path_keeps_the_password_off_the_command_line(server, tmp_path):
    from webui.flags import parse_args, validate_args

    creds = tmp_path / "api-users.txt"
    creds.write_text("api:from-file-pass\nbob:second\n")
    c = server("--listen", "--api", "--api-auth-path", str(creds), "--gradio-auth", "u:p")
    assert c.get("/sdapi/v1/samplers").status_code == 401
    assert c.get("/sdapi/v1/samplers", headers=_basic(("api", "from-file-pass"))).status_code == 200
    assert c.get("/sdapi/v1/samplers", headers=_basic(("bob", "second"))).status_code == 200
    flags = c.get("/sdapi/v1/cmd-flags", headers=_basic(("bob", "second"))).text
    assert "from-file-pass" not in flags
    # the flag alone satisfies the exposure rule; a missing or malformed file stops the launch
    assert validate_args(parse_args(["--listen", "--api", "--api-auth-path", str(creds), "--gradio-auth", "u:p"])) == []
    assert any("--api-auth-path" in e for e in validate_args(parse_args(["--api-auth-path", str(tmp_path / "no")])))
    (tmp_path / "bad.txt").write_text("no-colon-here\n")
    errors = validate_args(parse_args(["--api-auth-path", str(tmp_path / "bad.txt")]))
    assert any("--api-auth-path" in e for e in errors) and not any("no-colon-here" in e for e in errors)


# ---------------------------------------------------------------- cross-site requests (item 10)

BODYLESS_POSTS = [
    "/sdapi/v1/interrupt",
    "/sdapi/v1/skip",
    "/sdapi/v1/unload-checkpoint",
    "/easel/v1/extensions/xyz_grid/disable",
    "/easel/v1/extensions/check-updates",
]


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:9999"},
        {"Origin": "http://localhost:7860.evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://127.0.0.1.evil.example:7860"},
    ],
)
def test_cross_site_state_changes_are_refused(server, headers):
    c = server("--nowebui", client=("127.0.0.1", 50000))
    config = c.application.paths.config_file
    before = config.read_bytes() if config.exists() else None
    for path in BODYLESS_POSTS:
        r = c.post(path, headers=headers)
        assert r.status_code == 403 and r.json()["error"] == "CrossSiteRequest", (path, headers, r.text)
    r = c.post("/sdapi/v1/options", headers=headers, content=json.dumps({"samples_format": "jpg"}))
    assert r.status_code == 403
    assert (config.read_bytes() if config.exists() else None) == before
    assert c.get("/sdapi/v1/samplers", headers=headers).status_code == 200  # reads are CORS's business


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "http://127.0.0.1:7860"},
        {"Origin": "http://127.0.0.1:7860/"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
        {"Origin": "http://allowed.example"},
    ],
)
def test_same_site_and_allowed_origins_pass(server, headers):
    c = server("--nowebui", "--cors-allow-origins", "http://allowed.example", client=("127.0.0.1", 50000))
    assert c.post("/sdapi/v1/interrupt", headers=headers).status_code == 200


def test_cross_site_behind_a_tls_proxy(server):
    c = server(
        "--nowebui", "--allowed-hosts", "easel.example.org", host="easel.example.org", client=("127.0.0.1", 50000)
    )
    ok = c.post("/sdapi/v1/interrupt", headers={"Host": "easel.example.org", "Origin": "https://easel.example.org"})
    assert ok.status_code == 200  # Host without a port: the origin's default port matches
    bad = c.post("/sdapi/v1/interrupt", headers={"Host": "easel.example.org", "Origin": "https://evil.example.org"})
    assert bad.status_code == 403


# ---------------------------------------------------------------- --allowed-hosts (item 11)


def test_allowed_hosts_when_exposed(server):
    c = server(
        "--listen", "--nowebui", "--api-auth", ":".join(API_USER), "--allowed-hosts", "easel.lan,*.studio.example"
    )
    for host in ("evil.example", "easel.lan.evil.example", "studio.example", "mybox.local"):
        r = c.get("/sdapi/v1/samplers", headers={"Host": host, **_basic(API_USER)})
        assert r.status_code == 400 and r.json()["error"] == "InvalidHost", host
        assert c.get("/sdapi/v1/samplers", headers={"Host": host}).status_code == 400  # 400 before any 401
    for host in (
        "easel.lan",
        "EASEL.LAN:7860",
        "gpu1.studio.example:7860",
        "localhost:7860",
        "127.0.0.1",
        "10.0.0.5:7860",
        "[2001:db8::5]:7860",
    ):
        assert c.get("/sdapi/v1/samplers", headers={"Host": host}).status_code == 401, host
        assert c.get("/sdapi/v1/samplers", headers={"Host": host, **_basic(API_USER)}).status_code == 200, host


def test_without_allowed_hosts_an_exposed_server_answers_its_addresses_and_names(server):
    from webui.security import machine_host_names

    c = server("--listen", "--nowebui", "--api-auth", ":".join(API_USER))
    assert c.get("/sdapi/v1/samplers", headers={"Host": "rebind.example.invalid"}).status_code == 400
    for host in ("10.0.0.5:7860", "[fe80::1]:7860", "192.168.1.20", *machine_host_names()):
        assert c.get("/sdapi/v1/samplers", headers={"Host": host}).status_code == 401, host


# ---------------------------------------------------------------- brute force (item 12)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_basic_auth_backs_off_per_address(server, caplog):
    c = server("--listen", "--nowebui", "--api-auth", ":".join(API_USER))
    clock = FakeClock()
    c.app.state.auth_throttle.clock = clock
    wrong = _basic(("api", "guess"))
    for _ in range(5):
        assert c.get("/sdapi/v1/samplers", headers=wrong).status_code == 401
    assert c.get("/sdapi/v1/samplers", headers=wrong).status_code == 401  # the 6th failure locks for 1 s
    locked = c.get("/sdapi/v1/samplers", headers=_basic(API_USER))
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= 1  # even the right password waits
    assert "locked out" in caplog.text
    clock.now += 1.5
    assert c.get("/sdapi/v1/samplers", headers=wrong).status_code == 401  # 7th: 2 s
    clock.now += 1.5
    assert c.get("/sdapi/v1/samplers", headers=_basic(API_USER)).status_code == 429
    clock.now += 1.0
    assert c.get("/sdapi/v1/samplers", headers=_basic(API_USER)).status_code == 200  # success clears the record
    for _ in range(5):
        assert c.get("/sdapi/v1/samplers", headers=wrong).status_code == 401
    # requests without credentials are no guesses, and another address is not affected
    other = TestClient(c.app, base_url="http://127.0.0.1:7860", client=("198.51.100.9", 1))
    assert other.get("/sdapi/v1/samplers", headers=_basic(API_USER)).status_code == 200


def test_ui_login_backs_off_per_address(server):
    c = server("--listen", "--gradio-auth", ":".join(UI_USER))
    clock = FakeClock()
    c.app.state.auth_throttle.clock = clock
    for _ in range(6):
        assert c.post("/login", data={"username": "ui", "password": "guess"}).status_code in (400, 401)
    r = c.post("/login", data={"username": UI_USER[0], "password": UI_USER[1]})
    assert r.status_code == 429 and r.json()["error"] == "TooManyRequests"
    clock.now += 2
    assert c.post("/login", data={"username": UI_USER[0], "password": UI_USER[1]}).status_code == 200


def test_throttle_memory_is_bounded():
    from webui.api.throttle import AuthThrottle

    t = AuthThrottle(max_clients=100)
    for i in range(10_000):
        t.failed(f"10.0.{i // 256}.{i % 256}", "test")
    assert len(t._records) == 100


# ---------------------------------------------------------------- UI uploads (item 17)


def _image_bytes(fmt: str) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 200, 30)).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["ICO", "PCX", "TGA", "PPM", "SGI"])
def test_ui_uploads_in_other_image_formats_are_refused_and_deleted(server, fmt):
    from pathlib import Path

    from gradio.utils import get_upload_folder

    c = server()
    name = f"x-{fmt.lower()}-refused.{fmt.lower()}"
    r = c.post(
        "/gradio_api/upload",
        files=[
            ("files", ("a.png", _image_bytes("PNG"), "image/png")),
            ("files", (name, _image_bytes(fmt), "image/x-other")),
        ],
    )
    assert r.status_code == 415 and fmt in r.json()["detail"], r.text
    assert not list(Path(get_upload_folder()).rglob(name))  # deleted, not left for a component to decode
    ok = c.post(
        "/gradio_api/upload",
        files=[
            ("files", ("a.png", _image_bytes("PNG"), "image/png")),
            ("files", ("caption.txt", b"a red circle", "text/plain")),
        ],
    )
    assert ok.status_code == 200, ok.text
    saved = ok.json()
    assert len(saved) == 2 and all(Path(p).exists() for p in saved)
