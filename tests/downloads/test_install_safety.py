"""What an install must refuse, as an outside client sees it: a pickle that would run code (never unpickled), files
over the size limit, loopback sources without --allow-private-downloads, any install on an exposed server, and
hostile fields, each a 4xx JSON body or a failed job that leaves nothing behind."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.downloads.conftest import files_in, install, wait_job
from tests.factories import write_tiny_checkpoint


class _Hostile:
    """Unpickling this would create the marker file (the stand-in for any code a pickle runs)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_hostile_pickle_is_never_unpickled(dl_client, dl_app, models_server, tmp_path):
    marker = tmp_path / "PWNED"
    src = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "payload": _Hostile(marker)}, src)
    url = models_server.add("/m/evil.ckpt", body=src.read_bytes())
    before = files_in(dl_app.paths.models_dir)
    for folder in ("Stable-diffusion", "Lora", "embeddings", None):
        view = install(dl_client, url=url, **({"folder": folder} if folder else {}), convert_to_safetensors=True)
        assert view["status"] == "failed" and "refused" in view["error"] and "executed" in view["error"], view
        assert not marker.exists()
    assert files_in(dl_app.paths.models_dir) == before  # deleted, not left for a scanner to open
    dl_client.post("/sdapi/v1/refresh-checkpoints")
    dl_client.post("/sdapi/v1/refresh-loras")
    assert not marker.exists()


def test_a_weights_only_ckpt_is_kept_or_converted(dl_client, dl_app, models_server, tmp_path):
    sd = load_file(str(write_tiny_checkpoint(tmp_path / "t.safetensors", seed=5)))
    src = tmp_path / "old.ckpt"
    torch.save({"state_dict": sd, "global_step": 10}, src)
    url = models_server.add("/m/old-format.ckpt", body=src.read_bytes())
    view = install(dl_client, url=url, convert_to_safetensors=True)
    assert view["status"] == "done", view
    model = view["result"]["model"]
    assert view["result"]["name"] == "old-format.safetensors" and model["converted"] and model["pickle"]
    out = dl_app.paths.ckpt_dir / "old-format.safetensors"
    converted = load_file(str(out))
    assert set(converted) == set(sd) and all(converted[k].equal(sd[k]) for k in sd)
    assert not (dl_app.paths.ckpt_dir / "old-format.ckpt").exists()
    titles = [m["title"] for m in dl_client.get("/sdapi/v1/sd-models").json()]
    assert model["title"] in titles and model["title"].startswith("old-format.safetensors")
    # without the flag the pickle is kept as it is, and the conversion is offered
    url = models_server.add("/m/kept.bin", body=src.read_bytes())
    view = install(dl_client, url=url, folder="Stable-diffusion")
    model = view["result"]["model"]
    assert view["status"] == "done" and model["convertible"] and not model["converted"]
    assert any("convert_to_safetensors" in n for n in model["notes"])
    assert view["result"]["name"] == "kept.ckpt"  # a .bin checkpoint is renamed so the catalog lists it
    assert "kept.ckpt" in str(dl_client.get("/sdapi/v1/sd-models").json())


def test_size_limit(dl_client, dl_app, models_server, tmp_path):
    body = write_tiny_checkpoint(tmp_path / "big.safetensors", seed=2).read_bytes()
    assert len(body) > 2 * 1024 * 1024
    r = dl_client.post("/sdapi/v1/options", json={"model_download_max_mb": 1})
    assert r.status_code == 200, r.text
    for bad in (0, -1, 10**9, "lots", 1.5):
        assert dl_client.post("/sdapi/v1/options", json={"model_download_max_mb": bad}).status_code == 422, bad
    before = files_in(dl_app.paths.models_dir)
    announced = models_server.add("/m/announced.safetensors", body=body)
    view = install(dl_client, url=announced)
    assert view["status"] == "failed" and "limit" in view["error"], view
    assert models_server.sent < len(body)  # refused from Content-Length, before the body was read
    unannounced = models_server.add("/m/unannounced.safetensors", body=body, length=False)
    view = install(dl_client, url=unannounced)
    assert view["status"] == "failed" and "larger than the limit" in view["error"], view
    assert files_in(dl_app.paths.models_dir) == before


def test_loopback_refused_without_the_flag(make_app, models_server, tmp_path):
    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    app = make_app("--nowebui")
    body = write_tiny_checkpoint(tmp_path / "x.safetensors", seed=1).read_bytes()
    with TestClient(build_fastapi(app)) as client:
        for host in ("127.0.0.1", "[::1]", "10.0.0.1", "169.254.169.254", "192.168.1.1"):
            url = f"http://{host}:{models_server.port}/m/x.safetensors"
            r = client.post("/easel/v1/models/install", json={"url": url})
            assert r.status_code == 403 and "--allow-private-downloads" in r.json()["detail"], (host, r.text)
        models_server.add("/m/x.safetensors", body=body)
        # a name that resolves to loopback is refused when the job connects
        r = client.post("/easel/v1/models/install", json={"url": models_server.url("/m/x.safetensors", "localhost")})
        assert r.status_code == 202
        view = wait_job(client, r.json()["id"])
        assert view["status"] == "failed" and "non-public address" in view["error"], view
    assert models_server.seen == []
    assert not (app.paths.ckpt_dir / "x.safetensors").exists()


def test_exposed_server_refuses_installs(make_app, models_server):
    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    url = models_server.url("/m/x.safetensors")
    for flags, status in (
        (("--listen", "--gradio-auth", "u:p", "--nowebui"), 403),
        (
            (
                "--listen",
                "--gradio-auth",
                "u:p",
                "--nowebui",
                "--enable-insecure-extension-access",
                "--allow-private-downloads",
            ),
            202,
        ),
    ):
        app = make_app(*flags, start=False)
        with TestClient(build_fastapi(app)) as client:
            r = client.post("/easel/v1/models/install", json={"url": url, "folder": "Lora"})
            assert r.status_code == status, r.text
            if status == 403:
                assert "--enable-insecure-extension-access" in r.json()["detail"]
    assert models_server.seen == []  # the accepted one was never run: start=False, no worker


HOSTILE = [
    {"url": "file:///etc/passwd"},
    {"url": "ftp://example.com/x.safetensors"},
    {"url": "javascript:alert(1)//x.safetensors"},
    {"url": "http://"},
    {"url": "http:///x.safetensors"},
    {"url": "http://example.com:99999/x.safetensors"},
    {"url": "http://exa mple.com/x.safetensors"},
    {"url": "http://example.com/x\r\nHost: evil.safetensors"},
    {"url": "https://example.com/" + "a" * 5000 + ".safetensors"},
    {"url": 12345},
    {"url": ["http://example.com/x.safetensors"]},
    {},
    {"url": "https://example.com/x.safetensors", "folder": "../../etc"},
    {"url": "https://example.com/x.safetensors", "folder": "Stable-diffusion/../.."},
    {"url": "https://example.com/x.safetensors", "folder": "/tmp"},
    {"url": "https://example.com/x.safetensors", "filename": "../x.safetensors"},
    {"url": "https://example.com/x.safetensors", "filename": "/etc/x.safetensors"},
    {"url": "https://example.com/x.safetensors", "filename": "sub/x.safetensors"},
    {"url": "https://example.com/x.safetensors", "filename": "sub\\x.safetensors"},
    {"url": "https://example.com/x.safetensors", "filename": ".hidden.safetensors"},
    {"url": "https://example.com/x.safetensors", "filename": "x..safetensors"},
    {"url": "https://example.com/x.safetensors", "filename": "x.exe"},
    {"url": "https://example.com/x.safetensors", "filename": "x.safetensors\x00.txt"},
    {"url": "https://example.com/x.safetensors", "filename": "CON.safetensors"},
    {"url": "https://example.com/x.safetensors", "filename": "a" * 300 + ".safetensors"},
    {"url": "https://example.com/x.safetensors", "filename": ""},
    {"url": "https://example.com/x.safetensors", "sha256": "zz" * 32},
    {"url": "https://example.com/x.safetensors", "sha256": "ab" * 33},
    {"url": "https://example.com/x.safetensors", "convert_to_safetensors": {"a": 1}},
    {"url": "https://example.com/x.safetensors", "extra": 1},
]


@pytest.mark.parametrize("body", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_fields_are_4xx_json(dl_client, dl_app, body):
    before = files_in(dl_app.paths.models_dir)
    r = dl_client.post("/easel/v1/models/install", json=body)
    assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
    assert r.json()["detail"], r.text
    assert files_in(dl_app.paths.models_dir) == before and dl_app.jobs.queued() == []


def test_nan_and_huge_bodies_are_4xx(dl_client):
    r = dl_client.post(
        "/easel/v1/models/install",
        content=b'{"url": "https://example.com/x.safetensors", "sha256": NaN}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    r = dl_client.post("/easel/v1/models/install", json={"url": "https://example.com/" + "x" * 2_000_000})
    assert 400 <= r.status_code < 500


def test_an_existing_name_is_409(dl_client, dl_app, models_server):
    url = models_server.add("/m/tiny-a.safetensors", body=b"never sent")
    r = dl_client.post(
        "/easel/v1/models/install", json={"url": url, "folder": "Stable-diffusion", "filename": "tiny-a.safetensors"}
    )
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    # the same name taken from the URL is refused when the job learns it, before any byte is stored
    original = (dl_app.paths.ckpt_dir / "tiny-a.safetensors").read_bytes()
    view = install(dl_client, url=url, folder="Stable-diffusion")
    assert view["status"] == "failed" and "already exists" in view["error"]
    assert (dl_app.paths.ckpt_dir / "tiny-a.safetensors").read_bytes() == original
