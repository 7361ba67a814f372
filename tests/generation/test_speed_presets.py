"""Speed presets (#21): UNet step caching (`step_cache_interval`, infotext `Step cache`) and token merging
(`token_merging_ratio[_hr]`, A1111's `Token merging ratio`), run through the model runtime on the tiny checkpoints.

Same seed → same pixels with a preset on; off → bit-exact with a job that never had it; the infotext pasted back
asks for the same preset; values out of range are 422 and never reach config.json."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tests.factories import psnr
from webui.generation.requests import Txt2ImgRequest
from webui.infotext import PARAM_RE, infotext_to_request_fields, parse_infotext
from webui.models import runtime, step_cache, token_merge


def _images(app, **overrides):
    req = Txt2ImgRequest(prompt="a red circle", steps=8, seed=11, override_settings=overrides)
    res = app.jobs.wait(app.submit_txt2img(req, from_api=True))
    return np.asarray(res.images[0]), res.infotexts[0]


@pytest.mark.parametrize(
    "preset, field",
    [({"step_cache_interval": 3}, "Step cache: 3"), ({"token_merging_ratio": 0.5}, "Token merging ratio: 0.5")],
)
def test_a_preset_repeats_its_pixels_and_off_is_bit_exact_with_before(make_app, preset, field):
    app = make_app("--nowebui")
    plain, plain_info = _images(app)
    fast, fast_info = _images(app, **preset)
    fast_again, _ = _images(app, **preset)
    plain_after, after_info = _images(app)
    assert field in fast_info and field.split(":")[0] not in plain_info + after_info
    assert np.array_equal(fast, fast_again)  # same seed, same pixels with the preset on
    assert np.array_equal(plain, plain_after)  # off again: exactly the image of before
    assert not np.array_equal(plain, fast) and psnr(plain, fast, peak=255) > 15  # it changed something, not all
    unet = app.models.active.pipeline.unet
    assert step_cache.clock(unet) is None and token_merge.size_hook(unet) is None  # nothing left on the UNet
    # pasted back (PNG Info → txt2img, or an API client replaying the infotext): the same preset, the same pixels
    fields = infotext_to_request_fields(parse_infotext(fast_info))
    assert fields["override_settings"] == {**fields["override_settings"], **preset}
    replay, _ = _images(app, **fields["override_settings"])
    assert np.array_equal(replay, fast)


def test_infotext_fields_round_trip_and_read_with_a1111s_regex():
    text = (
        "a cat\nSteps: 20, Sampler: Euler a, Seed: 1, Size: 64x64, Token merging ratio: 0.3, "
        "Token merging ratio hr: 0.5, Step cache: 4, Version: easel"
    )
    pairs = dict(PARAM_RE.findall(text.splitlines()[-1]))
    assert pairs["Step cache"] == "4" and pairs["Token merging ratio hr"] == "0.5"
    overrides = infotext_to_request_fields(parse_infotext(text))["override_settings"]
    assert overrides == {"token_merging_ratio": 0.3, "token_merging_ratio_hr": 0.5, "step_cache_interval": 4}


def test_hires_pass_gets_its_own_ratio_and_the_infotext_names_it(make_app):
    app = make_app("--nowebui")
    req = Txt2ImgRequest(
        prompt="a red circle",
        steps=3,
        seed=2,
        enable_hr=True,
        hr_scale=1.5,
        hr_second_pass_steps=2,
        override_settings={"token_merging_ratio": 0.3, "token_merging_ratio_hr": 0.6, "step_cache_interval": 2},
    )
    info = app.jobs.wait(app.submit_txt2img(req, from_api=True)).infotexts[0]
    assert "Token merging ratio: 0.3, Token merging ratio hr: 0.6" in info and "Step cache: 2" in info
    config = runtime.RuntimeConfig(token_merging=0.3, token_merging_hr=0.6)
    assert config.for_hires().token_merging == 0.6
    assert runtime.RuntimeConfig(token_merging=0.3).for_hires().token_merging == 0.3


def _deep_calls(pipe, interval: int, steps: int = 10) -> tuple[int, int, int]:
    """(UNet calls, mid-block runs, reused calls) for one txt2img call with the step cache at `interval`."""
    calls = {"unet": 0, "mid": 0}
    h1 = pipe.unet.register_forward_pre_hook(lambda m, a: calls.__setitem__("unet", calls["unet"] + 1))
    h2 = pipe.unet.mid_block.register_forward_hook(lambda m, a, o: calls.__setitem__("mid", calls["mid"] + 1))
    try:
        with runtime.step_cache(pipe, runtime.RuntimeConfig(step_cache=interval)):
            pipe(
                "a red circle",
                num_inference_steps=steps,
                height=64,
                width=64,
                output_type="latent",
                generator=torch.Generator().manual_seed(1),
            )
            hook = step_cache.clock(pipe.unet)
            reused = hook.state.reused_calls if hook is not None else 0
    finally:
        h1.remove()
        h2.remove()
    return calls["unet"], calls["mid"], reused


def test_the_deep_blocks_run_only_on_every_nth_step(app):
    pipe = app.models.active.pipeline
    pipe.set_progress_bar_config(disable=True)
    assert _deep_calls(pipe, 0) == (10, 10, 0)
    # the hook replaces the mid block's forward (torch's hooks around it still run): count what really ran
    unet_calls, _, reused = _deep_calls(pipe, 3)
    assert unet_calls == 10 and reused == 6  # full at steps 0, 3, 6, 9
    assert _deep_calls(pipe, 2)[2] == 5
    assert step_cache.clock(pipe.unet) is None


def test_a_nested_entry_changes_the_interval_for_its_length_and_puts_it_back(app):
    pipe = app.models.active.pipeline
    with runtime.step_cache(pipe, runtime.RuntimeConfig(step_cache=3)):
        state = step_cache.clock(pipe.unet).state
        with runtime.step_cache(pipe, runtime.RuntimeConfig(step_cache=0)):  # a hires pass / inner job without it
            assert state.interval == 0
        assert state.interval == 3
        with runtime.token_merging(pipe, runtime.RuntimeConfig(token_merging=0.4)):
            tm = token_merge.size_hook(pipe.unet).state
            with runtime.token_merging(pipe, runtime.RuntimeConfig(token_merging=0.6)):
                assert tm.ratio == 0.6
            assert tm.ratio == 0.4
    assert step_cache.clock(pipe.unet) is None and token_merge.size_hook(pipe.unet) is None


def test_token_merging_merges_the_full_resolution_self_attention_only(app):
    pipe = app.models.active.pipeline
    seen: dict[str, int] = {}

    def record(name):  # what the self-attention's query projection gets: the tokens after merging
        return lambda m, args: seen.__setitem__(name, args[0].shape[1])

    from diffusers.models.attention import BasicTransformerBlock

    handles = [
        b.attn1.to_q.register_forward_pre_hook(record(n))
        for n, b in pipe.unet.named_modules()
        if isinstance(b, BasicTransformerBlock)
    ]
    try:
        with runtime.token_merging(pipe, runtime.RuntimeConfig(token_merging=0.5)):
            out = pipe("a red circle", num_inference_steps=1, height=64, width=64, output_type="latent").images
    finally:
        for h in handles:
            h.remove()
    full = 8 * 8  # the tiny model's latent at 64²
    assert {n for name, n in seen.items() if not name.startswith("mid_block")} == {full // 2}  # half merged
    assert seen["mid_block.attentions.0.transformer_blocks.0"] == full // 4  # a deeper level: left alone
    assert out.shape[-2:] == (8, 8) and torch.isfinite(out).all()  # unmerged back to every token


@pytest.mark.parametrize(
    "bad",
    [
        {"step_cache_interval": 11},
        {"step_cache_interval": -1},
        {"step_cache_interval": 1e9},
        {"step_cache_interval": "NaN"},
        {"step_cache_interval": 2.5},
        {"step_cache_interval": "../3"},
        {"token_merging_ratio": 0.95},
        {"token_merging_ratio": -0.1},
        {"token_merging_ratio": "NaN"},
        {"token_merging_ratio": "Infinity"},
        {"token_merging_ratio": 1e9},
        {"token_merging_ratio_hr": 2},
    ],
)
def test_out_of_range_is_422_on_every_route_and_nothing_is_saved(client, app, bad):
    body = {
        "prompt": "x",
        "steps": 1,
        "width": 64,
        "height": 64,
        "override_settings": bad,
        "override_settings_restore_afterwards": False,
    }
    r = client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 422 and next(iter(bad)) in r.json()["detail"], r.text[:300]
    r = client.post("/sdapi/v1/options", json=bad)
    assert r.status_code == 422, r.text[:300]
    r = client.post(
        "/sdapi/v1/options", json=bad, headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    )
    assert r.status_code == 403
    f = app.paths.config_file
    saved = json.loads(f.read_text()) if f.exists() else {}
    assert next(iter(bad)) not in saved
    options = client.get("/sdapi/v1/options").json()
    assert options["step_cache_interval"] == 0 and options["token_merging_ratio"] == 0
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in options.values())


def test_settings_take_the_presets_through_the_options_api(client, app):
    r = client.post("/sdapi/v1/options", json={"step_cache_interval": 4, "token_merging_ratio": 0.3})
    assert r.status_code == 200, r.text[:300]
    options = client.get("/sdapi/v1/options").json()
    assert options["step_cache_interval"] == 4 and options["token_merging_ratio"] == 0.3
    # the Settings tab builds one component per option, grouped by section: these sit under Optimizations (A1111's)
    assert all(
        app.options.defs[k].section == "Optimizations"
        for k in ("step_cache_interval", "token_merging_ratio", "token_merging_ratio_hr")
    )


def test_one_step_runs_in_a_loop_keep_a_bounded_number_of_slots(app):
    """1-step runs all share their timestep, so they look like calls of one step: at most MAX_CALLS_PER_STEP
    slots of deep features are kept, and each run is full (nothing is reused across runs)."""
    pipe = app.models.active.pipeline
    with runtime.step_cache(pipe, runtime.RuntimeConfig(step_cache=2)):
        state = step_cache.clock(pipe.unet).state
        for _ in range(step_cache.MAX_CALLS_PER_STEP + 3):
            pipe("a red circle", num_inference_steps=1, height=64, width=64, output_type="latent")
        assert len({call for _, call in state.outputs}) == step_cache.MAX_CALLS_PER_STEP
        assert state.reused_calls == 0


def test_png_info_send_to_txt2img_carries_the_presets_as_override_settings(app):
    """The UI's paste (PNG Info → txt2img, the ↙️ button) lists them in the tab's Override settings, as A1111 does."""
    from webui.ui.sendto import infotext_fields

    text = "a cat\nSteps: 20, Seed: 1, Size: 64x64, Token merging ratio: 0.5, Step cache: 3"
    entries = [json.loads(value) for _, value in infotext_fields(app, text, "txt2img")["_overrides"]]
    assert {"option": "step_cache_interval", "value": 3} in entries
    assert {"option": "token_merging_ratio", "value": 0.5} in entries


def test_sdxl_runs_both_presets_same_seed_same_pixels(make_app, data_dir):
    """SDXL's UNet ends in an UpBlock2D (no attention) and starts with a DownBlock2D: both presets still apply."""
    from tests.factories import write_tiny_sdxl_checkpoint

    write_tiny_sdxl_checkpoint(data_dir / "models" / "Stable-diffusion" / "tiny-xl.safetensors", seed=0)
    app = make_app("--nowebui")
    assert app.switch_checkpoint("tiny-xl").probe.family == "sdxl"
    both = {"step_cache_interval": 2, "token_merging_ratio": 0.5}
    plain, _ = _images(app)
    # SDXL has no attention at the full resolution: ToMe merges at the next level (else 0.5 would change nothing)
    unet = app.models.active.pipeline.unet
    assert token_merge.blocks(unet) and all(
        not name.startswith(("down_blocks.0.", "up_blocks.1."))
        for name, m in unet.named_modules()
        if m in token_merge.blocks(unet)
    )
    assert not np.array_equal(_images(app, token_merging_ratio=0.5)[0], plain)
    fast, info = _images(app, **both)
    again, _ = _images(app, **both)
    assert "Step cache: 2" in info and "Token merging ratio: 0.5" in info
    assert np.array_equal(fast, again) and not np.array_equal(plain, fast)
    assert np.array_equal(_images(app)[0], plain)


def test_inpainting_with_both_presets_repeats_and_keeps_unmasked_pixels(make_app):
    """img2img goes through the same plan: both presets apply (and are recorded), the same seed gives the same
    pixels, and inpainting still leaves the unmasked pixels exactly as they were."""
    from PIL import Image, ImageDraw

    from webui.generation.requests import Img2ImgRequest

    app = make_app("--nowebui")
    init = Image.new("RGB", (64, 64), (30, 60, 200))
    ImageDraw.Draw(init).ellipse((12, 12, 52, 52), fill=(220, 40, 40))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((20, 20, 44, 44), fill=255)

    def run(**overrides):
        req = Img2ImgRequest(
            prompt="a yellow square", steps=8, seed=3, denoising_strength=0.75, mask_blur=0, override_settings=overrides
        )
        res = app.jobs.wait(app.submit_img2img(req, from_api=True, images=[init], mask=mask))
        return np.asarray(res.images[0].convert("RGB")), res.infotexts[0]

    both = {"step_cache_interval": 2, "token_merging_ratio": 0.5}
    plain, _ = run()
    fast, info = run(**both)
    assert "Step cache: 2" in info and "Token merging ratio: 0.5" in info
    assert np.array_equal(fast, run(**both)[0]) and not np.array_equal(fast, plain)
    outside = np.asarray(mask) == 0
    assert np.array_equal(fast[outside], np.asarray(init)[outside])
    # A1111's token_merging_ratio_img2img: img2img's own ratio wins when set (txt2img keeps token_merging_ratio)
    own = {"token_merging_ratio": 0.5, "token_merging_ratio_img2img": 0.3}
    _, own_info = run(**own)
    assert "Token merging ratio: 0.3" in own_info
    _, txt_info = _images(app, **own)
    assert "Token merging ratio: 0.5" in txt_info
