"""OpenVINO's attention kernel under the torch UNet (#21; setting `cpu_attention`, infotext `CPU attention`): the
kernel computes what torch's SDPA does, calls it can't answer stay torch's, a bf16 job routes its attention there
under Automatic and pastes back, `torch` turns it off, the same seed gives the same pixels, hostile settings are 422,
and without the package Automatic quietly stays on torch while an explicit `openvino` says how to install it."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.factories import psnr
from webui.generation.requests import Txt2ImgRequest
from webui.infotext import infotext_to_request_fields, parse_infotext
from webui.generation import cpu_backend
from webui.models import attention_kernel as ak
from webui.models import device

ov = pytest.importorskip(
    "openvino", reason="openvino is not installed (pip install --no-deps -r requirements-openvino.txt)"
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("lq", "lk", "d", "scale"), [(256, 256, 40, None), (1024, 77, 40, None), (256, 256, 160, 0.3)])
def test_kernel_gives_torchs_attention(dtype, lq, lk, d, scale):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, n, d) for n in (lq, lk, lk))
    ref = F.scaled_dot_product_attention(q, k, v, scale=scale)
    kernel = ak.OpenVinoSdpa(ov, threads=1)
    # diffusers hands the kernel transposed views: not contiguous, so the kernel makes them so
    qt, kt, vt = (t.to(dtype).transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
    out = kernel(qt, kt, vt, scale)
    assert out.dtype == dtype and out.shape == ref.shape
    error = float((out.float() - ref).norm() / ref.norm())
    assert error < (1e-5 if dtype == torch.float32 else 0.02), error  # bf16: inputs rounded too (torch: ~0.2–0.5%)
    kernel(qt, kt, vt, scale)
    assert kernel.compiles == 1 and kernel.calls == 2  # compiled once per shape, dtype and scale


def test_calls_it_cannot_answer_stay_torchs():
    q = torch.randn(1, 2, 1024, 16)  # 1024 × 1024 × 16: over MIN_WORK
    assert ak.answerable((q, q, q), {})
    assert ak.answerable((q, q, q), {"scale": 0.5, "dropout_p": 0.0, "is_causal": False, "attn_mask": None})
    assert ak.answerable((), {"query": q, "key": q, "value": q, "attn_mask": None})  # diffusers' dispatcher's way
    assert not ak.answerable((q, q), {"value": q, "bogus": 1}) and not ak.answerable((q,), {"query": q})
    for kwargs in ({"attn_mask": torch.ones(1024, 1024, dtype=torch.bool)}, {"dropout_p": 0.1}, {"is_causal": True}):
        assert not ak.answerable((q, q, q), kwargs), kwargs
    assert not ak.answerable((q, q, q), {"enable_gqa": True})
    assert not ak.answerable((q[0], q[0], q[0]), {})  # 3-D
    assert not ak.answerable((q, q.half(), q), {})  # mixed dtypes
    assert not ak.answerable((q.half(), q.half(), q.half()), {})
    assert not ak.answerable((q, torch.randn(1, 1, 1024, 16), torch.randn(1, 1, 1024, 16)), {})  # broadcast heads
    small = q[:, :, :512]
    assert not ak.answerable((small, small, small), {})  # less work than MIN_WORK: the kernel's overhead loses
    assert ak.answerable((small, q, q), {})  # 512 queries × 1024 keys × 16: the threshold itself
    with torch.enable_grad():
        assert not ak.answerable((q.requires_grad_(), q, q), {})  # training keeps torch's backward


@pytest.fixture
def route_small(monkeypatch):
    """Every call of the tiny models is under MIN_WORK (4-wide heads), so they would stay torch's (as the threshold
    test above checks); the job tests lower it to run the routing itself, as on a CPU without AMX (where Automatic
    routes; the machine running the tests may have AMX)."""
    monkeypatch.setattr(ak, "MIN_WORK", 0)
    monkeypatch.setattr(device, "cpu_has_amx", lambda: False)


def test_the_rule_keeps_torchs_attention_where_amx_is_faster():
    rule = cpu_backend.attention_kernel
    assert rule("Automatic", "bf16", "cpu", False, False, False) == ("openvino", "")
    kernel, why = rule("Automatic", "bf16", "cpu", False, False, True)
    assert kernel == "torch" and "AMX" in why
    assert rule("openvino", "bf16", "cpu", False, False, True) == ("openvino", "")  # asked for: still honoured
    assert rule("Automatic", "fp32", "cpu", False, False, False)[0] == "torch"
    assert rule("Automatic", "bf16", "cpu", False, True, False)[0] == "none"


def test_on_a_cpu_with_amx_automatic_keeps_torch_and_openvino_still_routes(make_app, monkeypatch):
    monkeypatch.setattr(ak, "MIN_WORK", 0)
    monkeypatch.setattr(device, "cpu_has_amx", lambda: True)
    app = make_app("--nowebui")
    assert app.models.policy.cpu_amx
    _, info, warnings = _job(app, cpu_precision="bf16")
    switch = ak.switch_of(app.models.active.pipeline.unet)
    assert "CPU attention" not in info and not warnings  # Automatic's choice there: nothing to paste back
    assert switch is None or switch.kernel.calls == 0
    _, info, warnings = _job(app, cpu_precision="bf16", cpu_attention="openvino")
    switch = ak.switch_of(app.models.active.pipeline.unet)
    assert "CPU attention: openvino" in info and not warnings and switch.kernel.calls > 0


def _job(app, **overrides):
    req = Txt2ImgRequest(prompt="a red circle", steps=4, seed=5, override_settings=overrides)
    res = app.jobs.wait(app.submit_txt2img(req, from_api=True))
    return np.asarray(res.images[0]).astype(np.int16), res.infotexts[0], res.warnings


def test_a_bf16_job_routes_its_attention_to_the_kernel_and_pastes_back(make_app, route_small):
    app = make_app("--nowebui")
    img, info, warnings = _job(app, cpu_precision="bf16")
    unet = app.models.active.pipeline.unet
    switch = ak.switch_of(unet)
    assert switch is not None and not switch.enabled  # off again after the job
    assert "CPU attention: openvino" in info and not warnings
    calls = switch.kernel.calls
    assert calls == 4 * len(ak.attention_modules(unet))  # every attention call of the 4 steps (CFG batched)
    again, _, _ = _job(app, cpu_precision="bf16")
    assert np.array_equal(img, again)  # the same seed, the same pixels
    torch_img, torch_info, _ = _job(app, cpu_precision="bf16", cpu_attention="torch")
    assert switch.kernel.calls == 2 * calls  # torch's own attention this time
    assert "CPU attention: torch" in torch_info  # named, so pasting it back doesn't route it where openvino is
    assert psnr(img, torch_img, 255) > 35  # both bf16; the kernels round differently
    fields = infotext_to_request_fields(parse_infotext(info))["override_settings"]
    assert fields["cpu_attention"] == "openvino"
    assert infotext_to_request_fields(parse_infotext(torch_info))["override_settings"]["cpu_attention"] == "torch"
    # fp32 jobs keep torch's kernel under Automatic (the kernel's gain was measured for bf16) and name nothing
    _, fp32_info, _ = _job(app, cpu_precision="fp32")
    assert "CPU attention" not in fp32_info and switch.kernel.calls == 2 * calls
    # with the speed presets, whose hooks sit on the same Attention modules
    _, preset_info, warnings = _job(app, cpu_precision="bf16", token_merging_ratio=0.5, step_cache_interval=2)
    assert "CPU attention: openvino" in preset_info and "Token merging ratio: 0.5" in preset_info and not warnings
    assert switch.kernel.calls > 2 * calls
    # the whole UNet on OpenVINO: nothing left to route
    _, ov_info, _ = _job(app, cpu_precision="bf16", cpu_backend="openvino")
    assert "CPU backend: openvino" in ov_info and "CPU attention" not in ov_info


HOSTILE = ["OpenVINO", "../torch", "/tmp/x", "", 1, None, 1e9, float("nan"), float("inf"), ["torch"], "x" * 10**5]


def test_hostile_values_are_422_and_nothing_is_saved(client, app):
    for bad in HOSTILE:
        body = json.dumps({"cpu_attention": bad}, allow_nan=True)
        r = client.post("/sdapi/v1/options", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and "detail" in r.json(), (bad, r.text[:300])
        body = json.dumps({"prompt": "x", "steps": 1, "override_settings": {"cpu_attention": bad}}, allow_nan=True)
        r = client.post("/sdapi/v1/txt2img", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, (bad, r.text[:300])
    f = app.paths.config_file
    assert "cpu_attention" not in (json.loads(f.read_text()) if f.exists() else {})
    assert client.get("/sdapi/v1/options").json()["cpu_attention"] == "Automatic"
    assert app.options.defs["cpu_attention"].section == "Optimizations"


def test_without_the_package_automatic_stays_torch_and_openvino_is_refused(client, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    body = {"prompt": "x", "steps": 1, "override_settings": {"cpu_precision": "bf16"}}
    r = client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 200 and "CPU attention" not in r.json()["info"]
    body["override_settings"]["cpu_attention"] = "openvino"
    r = client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 422 and "requirements-openvino.txt" in r.json()["detail"], r.text[:300]
