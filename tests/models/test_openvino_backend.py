"""OpenVINO as the CPU backend of the UNet (#21; setting `cpu_backend`, infotext `CPU backend`), on the tiny SD 1.x
checkpoint through the Application: the converted UNet gives torch's pixels at f32, the same pixels twice, its IR is
converted once per checkpoint + LoRA set and read back by a new process, the infotext pastes back, what it can't run
falls back or is refused, hostile settings are 422, and without the package the job says how to install it."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from tests.factories import psnr
from webui.generation.requests import Txt2ImgRequest
from webui.infotext import infotext_to_request_fields, parse_infotext
from webui.models import openvino_backend as ovb
from webui.models.runtime import RuntimeConfig, cpu_backend

pytest.importorskip("openvino", reason="openvino is not installed (pip install --no-deps -r requirements-openvino.txt)")


def _job(app, prompt: str = "a red circle", **overrides):
    req = Txt2ImgRequest(prompt=prompt, steps=4, seed=5, override_settings=overrides)
    res = app.jobs.wait(app.submit_txt2img(req, from_api=True))
    return np.asarray(res.images[0]).astype(np.int16), res.infotexts[0], res.warnings


def _hook(app) -> ovb.OpenVinoUnet:
    hook = ovb.hook_of(app.models.active.pipeline.unet)
    assert hook is not None
    return hook


def test_f32_gives_torchs_pixels_bf16_is_close_and_the_ir_is_converted_once(make_app):
    app = make_app("--nowebui")
    torch_img, torch_info, _ = _job(app, cpu_precision="fp32")
    ov_img, info, warnings = _job(app, cpu_backend="openvino", cpu_precision="fp32")
    hook = _hook(app)
    assert "CPU backend: openvino" in info and "Precision: fp32" in info and not warnings
    assert "CPU backend" not in torch_info
    # f32: the same graph in another runtime; per-step relative error ~1e-6, so pixels within 1/255
    assert np.abs(ov_img - torch_img).max() <= 1
    assert hook.conversions == 1 and hook.compiles == 1 and hook.calls == 4  # CFG batched: one call per step
    # the IR keeps Easel's fp32 islands and the timestep embedding in f32 under bf16 inference precision
    (xml,) = (app.models.cache_root.parent / "openvino").glob("*.xml")
    layers = xml.read_text().split("<layer ")
    kept = [layer.split('"')[3] for layer in layers if "DisablePrecisionConversion" in layer]
    for island in ("conv_in", "time_proj", "time_embedding", "conv_shortcut", "time_emb_proj"):
        assert any(f".{island}/" in name or f".{island}." in name for name in kept), island
    assert not any(".attn1." in name or ".conv1/" in name for name in kept)  # the heavy layers go bf16
    again, _, _ = _job(app, cpu_backend="openvino", cpu_precision="fp32")
    assert np.array_equal(again, ov_img)  # same seed, same pixels
    assert hook.conversions == 1 and hook.compiles == 1  # the IR and the compiled shape are reused
    bf16, bf16_info, _ = _job(app, cpu_backend="openvino", cpu_precision="bf16")
    assert "Precision: bf16" in bf16_info and hook.conversions == 1 and hook.compiles == 2  # same IR, new precision
    # bf16 inference precision changes the pixels, not the picture (the random tiny UNet amplifies rounding over
    # the steps: 17 dB here; the per-step error on SD-size UNets is in docs/performance.md)
    assert not np.array_equal(bf16, ov_img) and psnr(bf16, torch_img, peak=255) > 12
    # each precision's compiled blobs in a folder of their own: OpenVINO names an f32 and a bf16 blob of one IR alike,
    # and a bf16 compile that found the f32 blob gave NaN (a black image) on a Xeon with AMX
    (compiled,) = (app.models.cache_root.parent / "openvino" / "compiled").iterdir()
    assert sorted(p.name for p in compiled.iterdir() if p.is_dir()) == ["bf16", "f32"]
    assert all(any(p.glob("*.blob")) for p in compiled.iterdir())
    # after the job the hook is off: a torch job is bit for bit what it was before
    after, _, _ = _job(app, cpu_precision="fp32")
    assert np.array_equal(after, torch_img) and hook.plan is None
    # inputs the graph has no place for (a ControlNet's residuals; IP-Adapter's image embeddings) are refused with
    # the way out, through the runtime part a job runs in
    pipe = app.models.active.pipeline
    key = _hook(app).model_key
    plan = ovb.OpenVinoPlan(key=key, cache_dir=str(app.models.cache_root.parent / "openvino"), precision="f32")
    sample, ctx = torch.randn(2, 4, 8, 8), torch.randn(2, 77, pipe.unet.config.cross_attention_dim)
    with cpu_backend(pipe, RuntimeConfig(openvino=plan)):
        out = pipe.unet(sample, 500, encoder_hidden_states=ctx).sample
        assert out.shape == sample.shape
        residuals = [torch.zeros(1)]
        with pytest.raises(ovb.Unsupported, match="down_block_additional_residuals.*cpu_backend to torch"):
            pipe.unet(sample, 500, encoder_hidden_states=ctx, down_block_additional_residuals=residuals)
        with pytest.raises(ovb.Unsupported, match="added_cond_kwargs"):
            pipe.unet(sample, 500, encoder_hidden_states=ctx, added_cond_kwargs={"image_embeds": [sample]})
        inner = ovb.OpenVinoPlan(key=key, cache_dir=plan.cache_dir, precision="bf16")
        with cpu_backend(pipe, RuntimeConfig(openvino=inner)):  # a nested job (a detailer's) on the same UNet
            assert _hook(app).plan == inner
        assert _hook(app).plan == plan  # the outer job's plan again, not off
    with torch.no_grad():  # off again: the torch UNet answers everything
        assert torch.allclose(pipe.unet(sample, 500, encoder_hidden_states=ctx).sample, out, atol=1e-4)
    # pasted back (PNG Info / the API's infotext): the same backend and precision, the same pixels
    overrides = infotext_to_request_fields(parse_infotext(info))["override_settings"]
    assert overrides["cpu_backend"] == "openvino" and overrides["cpu_precision"] == "fp32"
    replay, _, _ = _job(app, **overrides)
    assert np.array_equal(replay, ov_img)


def test_the_ir_is_read_back_by_a_new_process_and_a_lora_set_converts_again(make_app, data_dir):
    from tests.lora.factory import write_kohya

    app = make_app("--nowebui")
    plain, _, _ = _job(app, cpu_backend="openvino", cpu_precision="fp32")
    cache = app.models.cache_root.parent / "openvino"
    irs = sorted(p.name for p in cache.glob("*.xml"))
    assert len(irs) == 1 and not list(cache.glob("*.tmp.*"))
    app.paths.lora_dir.mkdir(parents=True, exist_ok=True)
    write_kohya(app.paths.lora_dir / "tiny_style.safetensors", seed=7, text_encoder=False)
    app.loras.refresh()
    hook = _hook(app)
    torch_lora, _, _ = _job(app, "a red circle <lora:tiny_style:1>", cpu_precision="fp32")
    ov_lora, info, _ = _job(app, "a red circle <lora:tiny_style:1>", cpu_backend="openvino", cpu_precision="fp32")
    assert hook.conversions == 2 and "Lora hashes" in info  # another adapter set: another IR
    assert np.abs(ov_lora - torch_lora).max() <= 1 and not np.array_equal(ov_lora, plain)
    assert len(list(cache.glob("*.xml"))) == 2
    # another weight of the same file is another adapter set, so another key (not converted here: ~25 s each)
    model = app.models.active
    at_one = app.loras.unet_adapter_set(model)
    app.loras.apply_prompt(model, "x <lora:tiny_style:0.5>")
    assert at_one and app.loras.unet_adapter_set(model) != at_one
    app.loras.apply_prompt(model, "x")
    assert app.loras.unet_adapter_set(model) == ()
    app.stop()
    # a new process (Application) on the same data folder reads the IRs instead of converting
    second = make_app("--nowebui")
    again, _, _ = _job(second, cpu_backend="openvino", cpu_precision="fp32")
    assert np.array_equal(again, plain) and _hook(second).conversions == 0


def test_bf16_per_step_error_is_torch_autocasts_at_any_timestep(tmp_path):
    """bf16 inference precision rounds where Easel's torch default does (openvino_precision.py): per call, against
    the fp32 UNet, within 0.1 point of torch's bf16 autocast and under 1.05% (measured 0.35-1.00% / torch 0.27-0.96%)
    at timesteps bf16 can't hold (999, 946.3: the old rule rounded them, 2.2-3.5%) and at the low noise levels
    where the error is largest."""
    from types import SimpleNamespace

    import openvino as ov

    from tests.factories import tiny_components
    from webui.models.precision import bf16_weights, install_unet_autocast

    unet = tiny_components()[0]
    switch = install_unet_autocast(unet)
    plan = ovb.OpenVinoPlan(ovb.ir_key("tiny", (), ov.__version__), str(tmp_path), "bf16", threads=1)
    g = torch.Generator().manual_seed(0)
    ctx = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g)
    errors = []
    with ovb.running(unet, plan) as hook, torch.no_grad():
        assert hook.model.inputs[1].get_partial_shape().rank.get_length() == 2  # the timestep: (batch, 1), f32
        for scale, t in ((14.6, 999), (14.6, 946.3), (3.0, 501.7), (1.0, 50), (1.0, 1)):
            x = torch.randn(2, 4, 8, 8, generator=g) * scale
            hook.plan = None
            ref = unet(x, t, encoder_hidden_states=ctx).sample
            switch.enabled = True
            with bf16_weights(SimpleNamespace(unet=unet)):
                fast = unet(x, t, encoder_hidden_states=ctx).sample
            switch.enabled, hook.plan = False, plan
            out = unet(x, torch.tensor([t]), encoder_hidden_states=ctx).sample
            errors.append((t, ((fast - ref).norm() / ref.norm()).item(), ((out - ref).norm() / ref.norm()).item()))
    for t, torch_error, ov_error in errors:
        assert ov_error < 0.0105 and ov_error < torch_error + 0.001, errors


def test_unets_with_added_conditions_are_not_converted():
    from tests.factories import tiny_components, tiny_sdxl_components

    assert ovb.supports(tiny_components()[0]) == ""
    assert "SDXL" in ovb.supports(tiny_sdxl_components()[0])  # text_time: the graph has no input for it
    assert ovb.supports(None) != ""


def test_what_it_cannot_run_falls_back_to_torch(make_app):
    app = make_app("--nowebui")
    img, info, warnings = _job(app, cpu_backend="openvino", step_cache_interval=2)
    assert "CPU backend: torch" in info and "Step cache: 2" in info
    assert any("step cache" in w and "ran on torch" in w for w in warnings)
    torch_img, _, _ = _job(app, step_cache_interval=2)
    assert np.array_equal(img, torch_img)  # it really ran on torch
    assert infotext_to_request_fields(parse_infotext(info))["override_settings"]["cpu_backend"] == "torch"


HOSTILE = ["OpenVINO", "../openvino", "/tmp/x", "", 1, None, 1e9, float("nan"), float("inf"), ["openvino"], "x" * 10**5]


def test_hostile_values_are_422_and_nothing_is_saved(client, app):
    for bad in HOSTILE:
        body = json.dumps({"cpu_backend": bad}, allow_nan=True)
        r = client.post("/sdapi/v1/options", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and "detail" in r.json(), (bad, r.text[:300])
        r = client.post(
            "/sdapi/v1/txt2img",
            content=json.dumps({"prompt": "x", "steps": 1, "override_settings": {"cpu_backend": bad}}, allow_nan=True),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 422, (bad, r.text[:300])
    f = app.paths.config_file
    assert "cpu_backend" not in (json.loads(f.read_text()) if f.exists() else {})
    assert client.get("/sdapi/v1/options").json()["cpu_backend"] == "torch"
    assert client.post("/sdapi/v1/options", json={"cpu_backend": "openvino"}).status_code == 200
    assert app.options.defs["cpu_backend"].section == "Optimizations"


def test_without_the_package_the_job_is_refused_with_the_install_line(client, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    module, why = ovb.import_openvino()
    assert module is None and "pip install --no-deps -r requirements-openvino.txt" in why
    body = {"prompt": "x", "steps": 1, "override_settings": {"cpu_backend": "openvino"}}
    r = client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 422 and "requirements-openvino.txt" in r.json()["detail"], r.text[:300]
    assert client.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 1}).status_code == 200  # torch still runs


@pytest.mark.parametrize("rank", [3, 4])
def test_group_norm_written_out_keeps_the_graph_at_any_rank(rank):
    """mark_f32 writes GroupNorm out (Reshape → MVN → Reshape → affine); a (B, C, L) input — the VAE's attention
    normalises one — must broadcast scale and bias as (C, 1), not (C, 1, 1), which made a (C, C, L) output."""
    import openvino as ov

    from webui.models.openvino_precision import mark_f32

    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(4, 8).eval()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(1, 8, *([6, 5] if rank == 4 else [30]))
    with torch.no_grad():
        model, marked = mark_f32(ov, ov.convert_model(norm, example_input=(x,)))
    assert marked >= 5  # the written-out nodes carry the f32 mark
    assert "GroupNormalization" not in {op.get_type_name() for op in model.get_ops()}
    out = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})([x.numpy()])[0]
    assert out.shape == tuple(x.shape)
    assert np.abs(out - norm(x).detach().numpy()).max() < 1e-4
