"""Auth on every API route, no secrets in cmd-flags, the Host check, CORS, protective headers, the body and pixel
limits, and SSRF-safe remote images."""

from __future__ import annotations

import base64
import io
import re

import pytest
import requests
import webuiapi

from tests.api.conftest import ALLOWED_ORIGIN, png_base64

USERS = "alice:s3cret:with:colons,bob:hunter22"
UI_USERS = "carol:ui-pass-987"
SECRETS = ("s3cret", "hunter22", "ui-pass-987")
UPSTREAM = {"/easel/v1/extensions/available"}  # reads a remote index: 502 when it can't (none is set here)


def _requests_for(spec: dict):
    """(method, concrete path) for every operation in the OpenAPI document; path params get a dummy value."""
    for path, ops in spec["paths"].items():
        for method in ops:
            yield method.upper(), re.sub(r"\{[^}]+\}", "does-not-exist", path), "{" in path


def test_api_auth_on_every_route(live_server):
    srv = live_server("--api", "--nowebui", "--api-auth", USERS, "--gradio-auth", UI_USERS)
    srv.server.config.app.state.auth_throttle.free_failures = 10**6  # the back-off has its own test (test_exposure)
    base = srv.url
    spec = requests.get(f"{base}/openapi.json", auth=("bob", "hunter22"), timeout=10).json()
    ops = list(_requests_for(spec)) + [
        ("GET", "/docs", False),
        ("GET", "/redoc", False),
        ("GET", "/openapi.json", False),
        ("GET", "/docs/oauth2-redirect", False),
    ]
    assert len(ops) >= 38
    wrong = [None, ("alice", "wrong"), ("mallory", "s3cret:with:colons"), ("bob", "hunter22 "), ("ALICE", "s3cret")]
    for method, path, _ in ops:
        for auth in wrong:
            r = requests.request(method, base + path, auth=auth, json=[], timeout=30)
            assert r.status_code == 401, (method, path, auth, r.status_code)
            assert r.headers["www-authenticate"].startswith("Basic")
            assert r.json()["error"] == "Unauthorized" and not any(s in r.text for s in SECRETS)
    for method, path, has_param in ops:
        r = requests.request(method, base + path, auth=("alice", "s3cret:with:colons"), json=[], timeout=60)
        assert r.status_code != 401, (method, path)
        if method == "GET" and not has_param:
            ok = (200, 409, 502) if path in UPSTREAM else (200,)  # 409: no extension index set
            assert r.status_code in ok, (method, path, r.text[:200])
        elif method == "POST" and "requestBody" in spec["paths"].get(path, {}).get("post", {}):
            assert r.status_code == 422, (method, path, r.text[:200])  # the [] body was read, so auth passed
    # the real client with credentials
    client = webuiapi.WebUIApi(host="127.0.0.1", port=srv.port, username="bob", password="hunter22")
    assert client.util_get_model_names()
    assert requests.get(f"{base}/sdapi/v1/options", timeout=10).status_code == 401
    # cmd-flags: no secret, anywhere
    flags = requests.get(f"{base}/sdapi/v1/cmd-flags", auth=("bob", "hunter22"), timeout=10)
    assert flags.json()["api_auth"] == "***" and flags.json()["gradio_auth"] == "***"
    assert not any(s in flags.text for s in SECRETS)
    # a server without --cors-allow-origins sends no CORS header to anyone
    r = requests.get(f"{base}/sdapi/v1/samplers", auth=("bob", "hunter22"), headers={"Origin": ALLOWED_ORIGIN})
    assert "access-control-allow-origin" not in r.headers


@pytest.mark.parametrize(
    "host, ok",
    [
        ("evil.example", False),
        ("evil.example:{port}", False),
        ("127.0.0.1.nip.io:{port}", False),
        ("localhost.evil.example", False),
        ("", False),
        ("127.0.0.1:{port}", True),
        ("localhost:{port}", True),
        ("[::1]:{port}", True),
        ("LOCALHOST", True),
    ],
)
def test_foreign_host_header_is_refused(api_server, host, ok):
    r = requests.get(
        f"{api_server.url}/sdapi/v1/samplers", headers={"Host": host.format(port=api_server.port)}, timeout=10
    )
    if ok:
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 400 and r.json()["error"] == "InvalidHost"
        assert r.headers["x-content-type-options"] == "nosniff"


def test_cors_only_for_the_allowed_origin(api_server):
    url = f"{api_server.url}/sdapi/v1/samplers"
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    ok = requests.options(url, headers={"Origin": ALLOWED_ORIGIN, **pre}, timeout=10)
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    bad = requests.options(url, headers={"Origin": "http://evil.example", **pre}, timeout=10)
    assert bad.status_code >= 400 and "access-control-allow-origin" not in bad.headers
    get = requests.get(url, headers={"Origin": ALLOWED_ORIGIN}, timeout=10)
    assert get.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    get = requests.get(url, headers={"Origin": "http://evil.example"}, timeout=10)
    assert "access-control-allow-origin" not in get.headers


@pytest.mark.parametrize("path", ["/sdapi/v1/samplers", "/sdapi/v1/nothing-here", "/docs"])
def test_protective_headers(api_server, path):
    r = requests.get(api_server.url + path, timeout=10)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "SAMEORIGIN"
    assert r.headers["referrer-policy"] == "same-origin"
    assert "frame-ancestors 'self'" in r.headers["content-security-policy"]


def test_body_limit_is_413(api_server):
    url = f"{api_server.url}/sdapi/v1/txt2img"  # the shared server runs with --max-body-size 1 (MB)
    r = requests.post(url, json={"prompt": "x" * (1_100_000), "steps": 1}, timeout=30)
    assert r.status_code == 413 and r.json()["error"] == "PayloadTooLarge"

    def chunks():  # no Content-Length: the limit counts the streamed bytes
        yield b'{"prompt": "'
        for _ in range(40):
            yield b"y" * 32_768
        yield b'"}'

    r = requests.post(url, data=chunks(), headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 413 and r.json()["error"] == "PayloadTooLarge"
    assert requests.get(f"{api_server.url}/sdapi/v1/samplers", timeout=10).status_code == 200


def test_pixel_limit_and_decompression_bomb_are_413(api_server):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buf, format="PNG", optimize=True)  # 25 Mpx, a few kB
    assert len(buf.getvalue()) < 200_000
    r = requests.post(
        f"{api_server.url}/sdapi/v1/png-info", timeout=30, json={"image": base64.b64encode(buf.getvalue()).decode()}
    )
    assert r.status_code == 413 and "pixels" in r.json()["detail"]
    r = requests.post(f"{api_server.url}/sdapi/v1/png-info", json={"image": "bm90IGFuIGltYWdl"}, timeout=10)
    assert r.status_code == 422


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:{port}/sdapi/v1/samplers",
        "http://[::1]/",
        "http://10.0.0.1/a.png",
        "http://192.168.1.1/a.png",
        "http://0x7f000001/",
        "http://[::ffff:127.0.0.1]/",
        "https://127.0.0.1:{port}/",
        "http://0.0.0.0:{port}/",
    ],
)
def test_remote_images_refuse_internal_addresses(api_server, url):
    app = api_server.app
    url = url.format(port=api_server.port)
    post = lambda: requests.post(f"{api_server.url}/sdapi/v1/png-info", json={"image": url}, timeout=30)  # noqa
    r = post()
    assert r.status_code == 403 and "api_enable_requests" in r.json()["detail"]
    app.options.set({"api_enable_requests": True})
    try:
        r = post()
        assert r.status_code == 403, r.text
        assert "non-public" in r.json()["detail"]
    finally:
        app.options.set({"api_enable_requests": False})


def test_remote_image_fetch_works_for_allowed_addresses(monkeypatch, tmp_path):
    """The download path itself (with the address rule relaxed for this test's loopback server)."""
    import http.server
    import threading
    from types import SimpleNamespace

    from webui import security
    from webui.errors import PayloadTooLarge

    png = base64.b64decode(png_base64((12, 10), text="remote infotext\nSteps: 3, Seed: 9, Size: 12x10"))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "/img.png")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        opts = {"api_enable_requests": True, "max_image_pixels": 4096 * 4096}
        fake = SimpleNamespace(options=SimpleNamespace(get=opts.__getitem__), ns=SimpleNamespace(max_body_size=1))
        monkeypatch.setattr(security, "is_public_address", lambda a: a == "127.0.0.1")
        url = f"http://127.0.0.1:{httpd.server_port}"
        image = security.load_image_field(f"{url}/redirect", fake)
        assert image.size == (12, 10) and image.info["parameters"].startswith("remote infotext")
        opts["max_image_pixels"] = 100
        with pytest.raises(PayloadTooLarge):
            security.load_image_field(f"{url}/img.png", fake)
    finally:
        httpd.shutdown()


def test_basic_auth_parser_edge_cases():
    from webui.security import check_basic_auth

    creds = [("u", "p:q")]
    good = "Basic " + base64.b64encode(b"u:p:q").decode()
    assert check_basic_auth(good, creds) == "u"
    for header in (
        None,
        "",
        "Basic",
        "Bearer abc",
        "Basic !!!",
        "Basic " + base64.b64encode(b"nocolon").decode(),
        "Basic " + base64.b64encode(b"u:p").decode(),
        "Basic " + base64.b64encode(b"\xff:\xfe").decode(),
    ):
        assert check_basic_auth(header, creds) is None, header
