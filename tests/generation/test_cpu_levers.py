"""The CPU fast path's other levers (issue 10): threads, opt-in torch.compile with its eager fallback, live preview
methods (Approx cheap, TAESD, Full) and VAE tiling/slicing.

No test here runs a real inductor compile: on this 2-core CPU a cold compile of even the tiny UNet takes ~80 s
(~14 s with a warm on-disk cache), over the suite's budget. The compiled path is tested with torch.compile replaced
by a stand-in (the wiring), and the fallback with a torch.compile that raises and a compiled function that raises.
"""

from __future__ import annotations

import os

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from webui.generation import preview
from webui.generation.requests import Txt2ImgRequest
from webui.models import compile as compile_mod
from webui.models.device import (
    ThreadPlan,
    apply_threads,
    choose_threads,
    physical_cores,
)
from webui.models.precision import install_unet_autocast
from webui.models.vae_tiling import configure_vae_memory, tiling_wanted

DEMO = Path(__file__).resolve().parents[2] / "models" / "Demo" / "easel-demo.safetensors"
needs_demo = pytest.mark.skipif(not DEMO.exists(), reason="the bundled demo model is missing")


@pytest.fixture
def tiny_unet():
    from tests.factories import tiny_components

    return tiny_components(0)[0]


def _unet_inputs(unet):
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 77, unet.config.cross_attention_dim, generator=g)


# --- threads ---------------------------------------------------------------------------------------------------------


def test_thread_choice_respects_flag_env_and_embedding_process():
    assert choose_threads(3, {}, owns_process=True) == ThreadPlan(3, "--threads")
    assert choose_threads(3, {"OMP_NUM_THREADS": "1"}, owns_process=False).count == 3  # the flag wins
    assert choose_threads(None, {"OMP_NUM_THREADS": "1"}, owns_process=True).count is None
    assert choose_threads(None, {}, owns_process=False) == ThreadPlan(None, "set by the embedding process")
    assert choose_threads(None, {}, owns_process=True) == ThreadPlan(physical_cores(), "physical cores")
    assert 1 <= physical_cores() <= 4096


def test_an_embedded_application_leaves_the_test_suites_thread_count_alone(make_app, monkeypatch):
    """The suite pins 1 thread (tests/conftest.py); an Application that doesn't own the process keeps it."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    app = make_app("--nowebui")
    assert torch.get_num_threads() == before and app.threads_source == "set by the embedding process"
    assert apply_threads(ThreadPlan(None, "x")) == before
    pinned = make_app("--nowebui", "--threads", str(before))  # --threads applies even when embedded
    assert pinned.threads_source == "--threads" and torch.get_num_threads() == before


# --- torch.compile -------------------------------------------------------------------------------------------------


def test_compiled_graphs_are_cached_in_the_data_folder_unless_the_environment_chose(tmp_path, make_app, monkeypatch):
    from webui.models.compile import INDUCTOR_CACHE_ENV, use_cache_dir

    env: dict[str, str] = {}
    assert use_cache_dir(tmp_path / "inductor", env) == str(tmp_path / "inductor") == env[INDUCTOR_CACHE_ENV]
    assert use_cache_dir(tmp_path / "inductor", {INDUCTOR_CACHE_ENV: "/elsewhere"}) == "/elsewhere"  # the user's
    monkeypatch.delenv(INDUCTOR_CACHE_ENV, raising=False)
    app = make_app("--nowebui")  # embedded: the process-wide variable is left alone
    assert app.inductor_cache is None and INDUCTOR_CACHE_ENV not in os.environ
    # inductor reads the variable at each compile, so a server's setting reaches it
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    monkeypatch.setenv(INDUCTOR_CACHE_ENV, str(tmp_path / "inductor"))
    assert cache_dir() == str(tmp_path / "inductor") and (tmp_path / "inductor").is_dir()


def test_compile_raising_falls_back_to_eager(tiny_unet, monkeypatch, caplog):
    def broken(*a, **k):
        raise RuntimeError("no inductor here")

    monkeypatch.setattr(torch, "compile", broken)
    x, ctx = _unet_inputs(tiny_unet)
    with torch.no_grad():
        ref = tiny_unet(x, 500, encoder_hidden_states=ctx).sample
        state = compile_mod.set_unet_compile(tiny_unet, True)
        out = tiny_unet(x, 500, encoder_hidden_states=ctx).sample
    assert state.status == "failed" and "no inductor here" in state.error
    assert torch.equal(out, ref)
    assert "torch.compile failed" in caplog.text


def test_compiled_function_raising_at_first_call_falls_back_and_stays_eager(tiny_unet, monkeypatch):
    calls = []

    def fake_compile(fn, **kw):
        assert kw.get("dynamic") is False and kw.get("backend") == "inductor"

        def compiled(*a, **k):
            calls.append(1)
            raise RuntimeError("C++ compile failed")

        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    x, ctx = _unet_inputs(tiny_unet)
    with torch.no_grad():
        ref = tiny_unet(x, 500, encoder_hidden_states=ctx).sample
        state = compile_mod.set_unet_compile(tiny_unet, True)
        assert state.status == "pending"
        out = tiny_unet(x, 500, encoder_hidden_states=ctx).sample
        again = tiny_unet(x, 500, encoder_hidden_states=ctx).sample
    assert torch.equal(out, ref) and torch.equal(again, ref)
    assert calls == [1] and state.status == "failed" and "C++ compile failed" in state.error
    compile_mod.set_unet_compile(tiny_unet, True)  # asking again doesn't retry a model that failed
    assert state.status == "failed"


def test_compiled_forward_sits_under_autocast_and_gets_tensor_timesteps(tiny_unet, monkeypatch):
    seen = []

    def fake_compile(fn, **kw):
        def compiled(*a, **k):
            seen.append((type(a[1]), torch.is_autocast_enabled("cpu")))
            return fn(*a, **k)

        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    x, ctx = _unet_inputs(tiny_unet)
    state = compile_mod.set_unet_compile(tiny_unet, True)
    switch = install_unet_autocast(tiny_unet)
    with torch.no_grad():
        tiny_unet(x, 500, encoder_hidden_states=ctx)
        switch.enabled = True
        out = tiny_unet(x, 400, encoder_hidden_states=ctx).sample
        switch.enabled = False
    assert out.dtype == torch.float32
    assert seen == [(torch.Tensor, False), (torch.Tensor, True)]
    assert state.status == "compiled" and set(state.first_call_seconds) == {"2x4x8x8 fp32", "2x4x8x8 bf16"}
    compile_mod.set_unet_compile(tiny_unet, False)
    with torch.no_grad():
        tiny_unet(x, 300, encoder_hidden_states=ctx)
    assert len(seen) == 2 and switch.inner is switch.eager


def test_cpu_compile_setting_reaches_the_unet_and_a_failure_still_answers(make_app, monkeypatch):
    from webui.api.system import system_report

    compiled_calls = []

    def fake_compile(fn, **kw):
        def compiled(*a, **k):
            compiled_calls.append(1)
            return fn(*a, **k)

        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    app = make_app("--nowebui")
    req = Txt2ImgRequest(prompt="x", steps=2, seed=1, override_settings={"cpu_compile": True})
    r = app.jobs.wait(app.submit_txt2img(req, from_api=True))
    assert r.images and compiled_calls  # the UNet ran through the compiled function
    report = system_report(app)["compile"]
    assert report["status"] == "compiled" and report["first_call_seconds"]

    def raising(*a, **k):
        raise RuntimeError("boom")

    compile_mod.compile_state(app.models.active.pipeline.unet).compiled = raising  # a later (re)compile that fails
    r = app.jobs.wait(app.submit_txt2img(req, from_api=True))
    assert r.images and system_report(app)["compile"]["status"] == "failed"
    r = app.jobs.wait(app.submit_txt2img(Txt2ImgRequest(prompt="x", steps=2, seed=1), from_api=True))
    assert r.images and system_report(app)["compile"]["enabled"] is False


# --- live previews ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_latent(tmp_path_factory):
    """The demo model, and the final latent of "a red square on a blue background" (20 steps)."""
    from webui.models.loader import build_from_single_file

    pipe = build_from_single_file(DEMO, tmp_path_factory.mktemp("demo-cache")).pipeline
    pipe.set_progress_bar_config(disable=True)
    latent = pipe(
        "a red square on a blue background",
        negative_prompt="",
        num_inference_steps=20,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(3),
        output_type="latent",
    ).images[0]
    return pipe, latent


@needs_demo
def test_cheap_preview_has_the_output_size_and_tracks_the_full_decode(demo_latent):
    pipe, latent = demo_latent
    src = preview.PreviewSource()
    full = np.asarray(preview.make_preview("Full", pipe.vae, latent, src)).astype(float)
    cheap = np.asarray(preview.make_preview("Approx cheap", pipe.vae, latent, src)).astype(float)
    assert cheap.shape == full.shape == (64, 64, 3)
    r, g, b = cheap.reshape(-1, 3).mean(0)
    assert b > r > g  # a red square on a blue background: blue-dominant, red second, little green
    centre = cheap[24:40, 24:40].reshape(-1, 3).mean(0)
    assert centre[0] > 1.5 * centre[2]  # the square's middle is red
    corr = np.corrcoef(cheap.ravel(), full.ravel())[0, 1]
    print(f"\ncheap vs full preview correlation {corr:.3f}")
    assert corr > 0.8
    assert src.linear is not None  # the fitted map is kept for the next preview
    assert preview.preview_status("Approx cheap", pipe.vae)["approx_map"] == "fitted to this VAE"


@needs_demo
def test_taesd_does_not_apply_to_the_demo_latent_space(demo_latent, tmp_path):
    pipe, latent = demo_latent
    src = preview.PreviewSources().attach(pipe.vae, tmp_path)
    image = preview.make_preview("TAESD", pipe.vae, latent, src)
    assert image.size == (64, 64)
    status = preview.preview_status("TAESD", pipe.vae, tmp_path, src)
    assert status["method"] == "Approx cheap" and "latent space" in status["reason"]


def _sd_space_vae():
    """Stands in for an SD 1.x VAE: only its config decides the latent space and the TAESD file."""
    return SimpleNamespace(
        config=SimpleNamespace(latent_channels=4, block_out_channels=(1, 2, 3, 4), scaling_factor=0.18215)
    )


def test_taesd_missing_falls_back_to_cheap_and_says_why(tmp_path):
    vae = _sd_space_vae()
    src = preview.PreviewSource(approx_dir=tmp_path / "VAE-approx")
    latent = torch.randn(4, 8, 8)
    image = preview.make_preview("TAESD", vae, latent, src)
    assert image.size == (64, 64)
    assert np.array_equal(np.asarray(image), np.asarray(preview.approx_cheap(latent, scale=8)))
    status = preview.preview_status("TAESD", vae, tmp_path / "VAE-approx", src)
    assert status["method"] == "Approx cheap" and "taesd_decoder" in status["reason"]
    assert status["approx_map"] == "published table"


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_taesd_loads_a1111_decoder_files(tmp_path, suffix):
    """A1111's taesd_decoder files keep madebyollin's layout (index 0 is the clamp); they load into diffusers'
    AutoencoderTiny and decode at 8× the latent size."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    ref = AutoencoderTiny().eval()
    original = {
        f"{int(k.split('.')[1]) + 1}.{k.split('.', 2)[2]}": v for k, v in ref.decoder.state_dict().items()
    }  # back to madebyollin's numbering
    approx = tmp_path / "VAE-approx"
    approx.mkdir()
    path = approx / f"taesd_decoder{suffix}"
    if suffix == ".pth":
        torch.save(original, path)
    else:
        from safetensors.torch import save_file

        save_file(original, str(path))
    vae = _sd_space_vae()
    src = preview.PreviewSource(approx_dir=approx)
    latent = torch.randn(4, 8, 8)
    image = preview.make_preview("TAESD", vae, latent, src)
    assert image.size == (64, 64)
    with torch.no_grad():
        expected = preview._to_pil(ref.decode(latent[None]).sample[0])
    assert np.array_equal(np.asarray(image), np.asarray(expected))
    assert preview.preview_status("TAESD", vae, approx, src) == {"setting": "TAESD", "method": "TAESD", "reason": None}


def test_previews_follow_the_setting_during_a_job(make_app):
    """Every method makes a preview image of the output size through the real step callback."""
    app = make_app("--nowebui")
    for method in preview.METHODS:
        req = Txt2ImgRequest(
            prompt="x",
            steps=4,
            seed=1,
            override_settings={
                "show_progress_type": method,
                "show_progress_every_n_steps": 1,
                "live_previews_enable": True,
            },
        )
        job = app.submit_txt2img(req, from_api=True)
        app.jobs.wait(job)
        image = job.control.current_image
        assert image is not None and image.size == (64, 64), method
    src = app.generation.previews.get(app.models.active.pipeline.vae)  # kept by the services, not on the VAE
    assert src is not None and "taesd" in src.tried and src.approx_dir == app.paths.models_dir / "VAE-approx"


# --- VAE tiling and slicing ------------------------------------------------------------------------------------------


def test_tiling_threshold():
    assert not tiling_wanted(1024, 1024, 1024 * 1024) and tiling_wanted(1032, 1024, 1024 * 1024)
    assert not tiling_wanted(4096, 4096, 0)


@needs_demo
def test_tiled_decode_is_as_faithful_as_the_untiled_one(demo_latent):
    """256² through the demo VAE, whose config gives 64-pixel tiles (16 tiles with blended seams). Tiled and
    untiled decodes are compared with the source image rather than with each other: this VAE was trained on 32–64
    pixel crops and doesn't handle 256² in one piece well (untiled reconstruction 23.7 dB with a blue cast; tiled vs
    untiled only 22.9 dB apart), while the tiled decode reconstructs the source at 24.8 dB."""
    from PIL import Image, ImageDraw

    pipe, _ = demo_latent
    vae = pipe.vae
    canvas = Image.new("RGB", (256, 256), (30, 60, 200))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((40, 50, 150, 170), fill=(220, 30, 30))
    draw.ellipse((140, 120, 240, 220), fill=(240, 220, 40))
    x = torch.from_numpy(np.array(canvas)).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mean
        assert configure_vae_memory(vae, 256, 256, 1, 0) == {}
        plain = vae.decode(z).sample
        assert configure_vae_memory(vae, 256, 256, 1, 128 * 128) == {"VAE tiling": True}
        tiled = vae.decode(z).sample
        configure_vae_memory(vae, 64, 64, 1, 128 * 128)
        assert not vae.use_tiling

    def psnr(a):
        return 10 * np.log10(1 / ((a.clamp(-1, 1) - x) / 2).pow(2).mean().item())

    assert tiled.shape == plain.shape == (1, 3, 256, 256)
    print(f"\ndemo VAE at 256², PSNR against the source: untiled {psnr(plain):.1f} dB, tiled {psnr(tiled):.1f} dB")
    assert psnr(tiled) > 20 and psnr(tiled) >= psnr(plain) - 1


def test_tiling_follows_the_size_and_is_recorded_only_when_on(make_app):
    app = make_app("--nowebui")
    vae = app.models.active.pipeline.vae
    small = app.jobs.wait(app.submit_txt2img(Txt2ImgRequest(prompt="x", steps=2, seed=1, batch_size=2), from_api=True))
    assert "VAE tiling" not in small.infotexts[0] and not vae.use_tiling and vae.use_slicing
    req = Txt2ImgRequest(prompt="x", steps=2, seed=1, override_settings={"vae_tiling_min_pixels": 32 * 32})
    big = app.jobs.wait(app.submit_txt2img(req, from_api=True))
    assert "VAE tiling: True" in big.infotexts[0] and big.images[0].size == (64, 64)
    assert vae.use_tiling and not vae.use_slicing


def test_hires_tiles_for_the_hires_size(make_app):
    """The first pass (64², at the threshold) is untiled; the hires decode at 128² is over it, so it tiles."""
    app = make_app("--nowebui")
    req = Txt2ImgRequest(
        prompt="x",
        steps=2,
        seed=1,
        enable_hr=True,
        hr_scale=2,
        hr_upscaler="Latent",
        denoising_strength=0.5,
        override_settings={"vae_tiling_min_pixels": 64 * 64},
    )
    r = app.jobs.wait(app.submit_txt2img(req, from_api=True))
    assert r.images[0].size == (128, 128) and "VAE tiling: True" in r.infotexts[0]
