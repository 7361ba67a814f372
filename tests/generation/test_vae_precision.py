"""Opt-in bf16 VAE decode on the CPU (setting cpu_vae_precision; webui/models/vae_precision.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.factories import psnr
from webui.generation.requests import Txt2ImgRequest
from webui.models import device as device_mod
from webui.models import runtime, vae_precision
from webui.models.vae_precision import choose_vae_precision

DEMO = Path(__file__).resolve().parents[2] / "models" / "Demo" / "easel-demo.safetensors"


@pytest.mark.parametrize("native", [True, False])
def test_bf16_vae_only_when_asked_on_a_cpu_with_native_bf16(monkeypatch, native):
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: native)
    policy = device_mod.choose_policy(use_cpu=["all"])
    vae = torch.nn.Conv2d(1, 1, 1)  # stands in for the dtype check only
    vae.decode = lambda z: z
    vae.dtype = torch.float32
    assert choose_vae_precision("fp32", policy, vae) == "fp32"
    assert choose_vae_precision("bf16", policy, vae) == ("bf16" if native else "fp32")
    no_half = device_mod.choose_policy(use_cpu=["all"], no_half=True)
    assert choose_vae_precision("bf16", no_half, vae) == "fp32"


@pytest.mark.skipif(not DEMO.exists(), reason="the bundled demo model is missing")
def test_demo_vae_decodes_in_bf16_within_40_db_and_fp32_is_untouched_after(tmp_path):
    """The evidence the setting rests on: the demo's trained VAE, real 20-step latents, bf16 against fp32.
    Measured 51.7–53.1 dB."""
    from webui.models.loader import build_from_single_file

    pipe = build_from_single_file(DEMO, tmp_path).pipeline
    pipe.set_progress_bar_config(disable=True)
    vae = pipe.vae
    values = []
    for seed in (1, 2, 3):
        latents = pipe("a red circle on a blue background", num_inference_steps=20, height=64, width=64,
                       generator=torch.Generator().manual_seed(seed), output_type="latent").images
        z = latents / vae.config.scaling_factor
        with torch.no_grad():
            ref = vae.decode(z).sample
            with runtime.vae_precision(pipe, runtime.RuntimeConfig(vae_precision="bf16")):
                fast = vae.decode(z).sample
            again = vae.decode(z).sample
        assert fast.dtype == torch.float32 and torch.equal(again, ref)
        assert all(p.dtype == torch.float32 for p in vae.parameters())
        to_u8 = lambda x: ((x / 2 + 0.5).clamp(0, 1) * 255).numpy()  # noqa: E731
        values.append(psnr(to_u8(ref), to_u8(fast), peak=255))
    print(f"\ndemo VAE bf16 vs fp32 decode PSNR (dB): {[round(v, 1) for v in values]}")
    assert min(values) >= 40, values


def test_the_setting_reaches_the_decode_and_the_infotext(make_app, monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: True)
    app = make_app("--nowebui")
    req = lambda **o: Txt2ImgRequest(prompt="a red circle", steps=3, seed=5, override_settings=o)  # noqa: E731
    plain = app.jobs.wait(app.submit_txt2img(req(), from_api=True))
    fast = app.jobs.wait(app.submit_txt2img(req(cpu_vae_precision="bf16"), from_api=True))
    again = app.jobs.wait(app.submit_txt2img(req(), from_api=True))
    assert "VAE precision: bf16" in fast.infotexts[0]
    assert "VAE precision" not in plain.infotexts[0] and "VAE precision" not in again.infotexts[0]
    a, b, c = (np.asarray(r.images[0]) for r in (plain, fast, again))
    assert np.array_equal(a, c)  # fp32 again right after a bf16 request
    # the tiny VAE (random weights) in bf16: close, not equal
    assert not np.array_equal(a, b) and psnr(a, b, peak=255) > 25
    assert not runtime.overridden(app.models.active.pipeline.vae, "decode", vae_precision.KEY)  # off after the job
    # pasted back (PNG Info → txt2img, or an API client replaying the infotext), the same decode runs again
    from webui.infotext import infotext_to_request_fields, parse_infotext

    fields = infotext_to_request_fields(parse_infotext(fast.infotexts[0]))
    assert fields["override_settings"]["cpu_vae_precision"] == "bf16"
    replay = app.jobs.wait(app.submit_txt2img(req(cpu_vae_precision="bf16"), from_api=True))
    assert np.array_equal(np.asarray(replay.images[0]), b)
