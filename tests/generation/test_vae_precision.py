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
        latents = pipe(
            "a red circle on a blue background",
            num_inference_steps=20,
            height=64,
            width=64,
            generator=torch.Generator().manual_seed(seed),
            output_type="latent",
        ).images
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


# --- Automatic (issue 21): bf16 for a VAE the guard passes, large enough to gain -----------------------------------

BIG_VAE = (32, 64, 128, 256)  # a 6.8M-parameter decoder: over AUTO_MIN_DECODER_PARAMS, its guard measured 41.7 dB


def test_automatic_needs_a_large_decoder_and_the_guard(monkeypatch):
    from tests.factories import tiny_components

    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: True)
    policy = device_mod.choose_policy(use_cpu=["all"])
    guard = vae_precision.Bf16VaeGuard()
    small = tiny_components(0)[1]
    assert choose_vae_precision("Automatic", policy, small, guard) == "fp32"
    assert guard.psnr(small, measure=False) is None  # a small decoder is never measured
    big = tiny_components(0, vae_channels=BIG_VAE)[1]
    assert choose_vae_precision("Automatic", policy, big, None) == "fp32"  # no guard: verdict unknown
    assert choose_vae_precision("Automatic", policy, big, guard, measure=False) == "fp32"  # not measured yet
    assert choose_vae_precision("Automatic", policy, big, guard) == "bf16"
    measured = guard.psnr(big, measure=False)
    assert vae_precision.MIN_PSNR <= measured < 100
    assert choose_vae_precision("fp32", policy, big, guard) == "fp32"
    # a bar no bf16 decode can reach: the same VAE stays fp32 (the measurement itself is cached per VAE)
    monkeypatch.setattr(vae_precision, "MIN_PSNR", 101.0)
    assert choose_vae_precision("Automatic", policy, big, guard) == "fp32"
    assert guard.psnr(big, measure=False) == measured
    assert choose_vae_precision("bf16", policy, big, guard) == "bf16"  # asked for: forced
    assert all(p.dtype == torch.float32 for p in big.parameters())  # measuring left the weights fp32


@pytest.mark.skipif(not DEMO.exists(), reason="the bundled demo model is missing")
def test_the_guard_passes_the_demo_vae(tmp_path):
    from webui.models.loader import build_from_single_file

    vae = build_from_single_file(DEMO, tmp_path).pipeline.vae
    value = vae_precision.measure_bf16_psnr(vae)
    print(f"\ndemo VAE guard: {value:.1f} dB")  # measured 51.7, as its 20-step latents (51.7–53.8)
    assert value >= vae_precision.MIN_PSNR


def test_automatic_decodes_in_bf16_records_it_and_an_explicit_fp32_is_named(make_app, data_dir, monkeypatch):
    from tests.factories import write_tiny_checkpoint
    from webui.infotext import infotext_to_request_fields, parse_infotext

    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: True)
    write_tiny_checkpoint(data_dir / "models" / "Stable-diffusion" / "big-vae.safetensors", vae_channels=BIG_VAE)
    app = make_app("--nowebui", "--ckpt", str(data_dir / "models" / "Stable-diffusion" / "big-vae.safetensors"))
    req = lambda **o: Txt2ImgRequest(prompt="a red circle", steps=2, seed=5, override_settings=o)  # noqa: E731
    auto = app.jobs.wait(app.submit_txt2img(req(), from_api=True))
    assert "VAE precision: bf16" in auto.infotexts[0]
    vae = app.models.active.pipeline.vae
    assert app.models.vae_bf16_guard.psnr(vae, measure=False) >= vae_precision.MIN_PSNR
    forced = app.jobs.wait(app.submit_txt2img(req(cpu_vae_precision="bf16"), from_api=True))
    assert np.array_equal(np.asarray(auto.images[0]), np.asarray(forced.images[0]))
    plain = app.jobs.wait(app.submit_txt2img(req(cpu_vae_precision="fp32"), from_api=True))
    assert "VAE precision: fp32" in plain.infotexts[0]  # Automatic would pick bf16: pasted back, fp32 again
    assert (
        infotext_to_request_fields(parse_infotext(plain.infotexts[0]))["override_settings"]["cpu_vae_precision"]
        == "fp32"
    )
    a, b = np.asarray(auto.images[0]), np.asarray(plain.images[0])
    assert not np.array_equal(a, b) and psnr(a, b, peak=255) > 30
    again = app.jobs.wait(app.submit_txt2img(req(), from_api=True))
    assert np.array_equal(np.asarray(again.images[0]), a)  # same seed, same pixels
