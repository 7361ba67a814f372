"""GET /easel/v1/system: what the server computes with, and why (issue 10)."""

from __future__ import annotations

import base64
import os

import diffusers
import torch
from fastapi.testclient import TestClient

from webui.models import device as device_mod


def test_system_reports_policy_threads_versions_compile_vae_and_preview(client, app):
    r = client.get("/easel/v1/system")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["device"] == "cpu"
    assert body["policy"]["label"] == app.policy.label and body["policy"]["note"] == app.policy.note
    assert body["model"] == app.models.active.info.title
    assert body["cpu_precision"]["setting"] == "Automatic"
    assert body["cpu_precision"]["automatic_resolves_to"] == "fp32"  # the tiny UNet is far below the bf16 size
    from webui.models.conv_prepack import available

    # prepacked where this CPU's oneDNN packs bf16 weights (AVX-512 / AVX-NE-CONVERT; not an EPYC without AVX-512)
    assert body["cpu_precision"]["conv_weights"] == (
        "channels_last, prepacked for oneDNN"
        if available()
        else "channels_last (not prepacked: this torch or CPU can't pack bf16 weights)"
    )
    assert body["threads"]["torch"] == torch.get_num_threads() and body["threads"]["physical_cores"] >= 1
    assert body["threads"]["source"] == "set by the embedding process"
    assert body["versions"]["torch"] == torch.__version__ and body["versions"]["diffusers"] == diffusers.__version__
    assert body["compile"]["setting"] is False and body["compile"]["status"] == "off"
    assert body["compile"]["cache_dir"] == os.environ.get("TORCHINDUCTOR_CACHE_DIR")  # embedded: torch's own
    assert body["vae"]["tiling_min_pixels"] == 1024 * 1024 and body["vae"]["tiling"] is False
    # Automatic: the tiny decoder is far below the bf16 size, so fp32, and the guard never measured it
    assert body["vae"]["precision_setting"] == "Automatic" and body["vae"]["precision"] == "fp32"
    assert body["vae"]["bf16_guard_psnr_db"] is None
    assert body["preview"] == {
        "setting": "Approx cheap",
        "method": "Approx cheap",
        "reason": None,
        "approx_map": "published table",
    }  # the tiny VAE has SD's shape and scale


def test_system_explains_a_taesd_fallback(client, app):
    app.options.set({"show_progress_type": "TAESD"}, persist=False)
    body = client.get("/easel/v1/system").json()["preview"]
    assert body["setting"] == "TAESD" and body["method"] == "Approx cheap" and body["reason"]


def test_system_says_when_the_cpu_has_no_bf16(monkeypatch, make_app):
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: False)
    app = make_app("--nowebui")
    app.options.set({"cpu_precision": "bf16"}, persist=False)
    from webui.api.server import build_fastapi

    with TestClient(build_fastapi(app)) as c:
        body = c.get("/easel/v1/system").json()
    assert body["policy"]["cpu_bf16"] is False and "no native bf16" in body["policy"]["note"]
    assert body["cpu_precision"] == {**body["cpu_precision"], "setting": "bf16", "resolved": "fp32"}


def test_system_is_behind_api_auth(make_app):
    from webui.api.server import build_fastapi

    app = make_app("--nowebui", "--api-auth", "alice:secret")
    with TestClient(build_fastapi(app)) as c:
        assert c.get("/easel/v1/system").status_code == 401
        token = base64.b64encode(b"alice:secret").decode()
        assert c.get("/easel/v1/system", headers={"Authorization": f"Basic {token}"}).status_code == 200


def test_system_says_which_attention_kernel_jobs_use(client, app, monkeypatch):
    import sys
    from dataclasses import replace

    import pytest

    openvino = pytest.importorskip("openvino")
    assert client.get("/easel/v1/system").json()["policy"]["cpu_amx"] == app.models.policy.cpu_amx
    for owner in (app, app.models):  # where Automatic routes
        monkeypatch.setattr(owner, "policy", replace(app.models.policy, cpu_amx=False))
    body = client.get("/easel/v1/system").json()["openvino"]
    assert body["version"] == openvino.__version__ and body["missing"] is None
    assert body["cpu_attention"] == "Automatic" and body["cpu_backend"] == "torch"
    assert body["attention_kernel"] == "torch"  # the tiny UNet resolves to fp32: Automatic routes bf16 only
    assert client.post("/sdapi/v1/options", json={"cpu_precision": "bf16"}).status_code == 200
    assert client.get("/easel/v1/system").json()["openvino"]["attention_kernel"] == "openvino"
    for owner in (app, app.models):  # torch's is the faster one there
        monkeypatch.setattr(owner, "policy", replace(app.models.policy, cpu_amx=True))
    assert client.get("/easel/v1/system").json()["openvino"]["attention_kernel"] == "torch"
    assert client.post("/sdapi/v1/options", json={"cpu_attention": "torch"}).status_code == 200
    assert client.get("/easel/v1/system").json()["openvino"]["attention_kernel"] == "torch"
    assert client.post("/sdapi/v1/options", json={"cpu_backend": "openvino"}).status_code == 200
    assert client.get("/easel/v1/system").json()["openvino"]["attention_kernel"].startswith("none")
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    body = client.get("/easel/v1/system").json()["openvino"]
    assert body["version"] is None and "requirements-openvino.txt" in body["missing"]
