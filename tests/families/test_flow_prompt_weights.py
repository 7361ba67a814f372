"""A1111 weights on the CLIP branches of FLUX.1 (CLIP-L's pooled vector) and SD 3.5 (CLIP-L/G hidden states), T5
getting the plain text: on tiny models loaded through the production path, against the pipelines' own encoding."""

from __future__ import annotations

import pytest
import torch

from tests.families.conftest import merge_models
from webui.prompts.flow_prompts import flow_prompt_kwargs, weighted_text

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def data_dir(tmp_path, request, tiny_models, flux_models, sd3_models):
    # one family per test: the tiny FLUX and SD 3 sets both name their T5 file t5xxl_fp16.safetensors
    merge_models(tmp_path / "models", tiny_models, flux_models if "flux" in request.node.name else sd3_models)
    return tmp_path


def _t5_ids(pipe, t5, **kwargs) -> tuple[dict, list]:
    """flow_prompt_kwargs(...) and the input ids T5 received."""
    seen: list = []
    handle = t5.register_forward_pre_hook(
        lambda _m, args, kw: seen.append((args[0] if args else kw["input_ids"]).tolist()), with_kwargs=True
    )
    try:
        return flow_prompt_kwargs(pipe, **kwargs), seen
    finally:
        handle.remove()


def test_flux_weights_reach_clip_l_pooled_and_t5_gets_plain_text(app):
    pipe = app.models.load("flux1-dev-tiny").pipeline
    common = dict(flux=True, negative=None, steps=20, max_length=64, batch=1)
    plain, ids_plain = _t5_ids(pipe, pipe.text_encoder_2, prompt="a red circle", **common)
    with torch.no_grad():  # as inside the pipeline's call (grad mode can pick another attention kernel: other bits)
        ref_embeds, ref_pooled, _ = pipe.encode_prompt(prompt="a red circle", prompt_2=None, max_sequence_length=64)
    assert torch.equal(plain["prompt_embeds"], ref_embeds) and torch.equal(plain["pooled_prompt_embeds"], ref_pooled)
    weighted, ids_weighted = _t5_ids(pipe, pipe.text_encoder_2, prompt="a (red:1.5) circle <lora:x:1>", **common)
    assert ids_weighted == ids_plain  # T5: the same input ids, the syntax gone
    assert torch.equal(weighted["prompt_embeds"], plain["prompt_embeds"])
    assert not torch.allclose(weighted["pooled_prompt_embeds"], plain["pooled_prompt_embeds"])  # CLIP-L: emphasis
    lower, _ = _t5_ids(pipe, pipe.text_encoder_2, prompt="a [red] circle", **common)
    assert not torch.allclose(lower["pooled_prompt_embeds"], weighted["pooled_prompt_embeds"])
    one, _ = _t5_ids(pipe, pipe.text_encoder_2, prompt="a (red:1) circle", **common)
    assert torch.equal(one["pooled_prompt_embeds"], plain["pooled_prompt_embeds"])


def test_sd3_weights_on_clip_l_and_g_hidden_states_t5_plain(app):
    pipe = app.models.load("sd35_medium_tiny").pipeline
    common = dict(flux=False, steps=20, max_length=32, batch=2)
    plain, ids_plain = _t5_ids(pipe, pipe.text_encoder_3, prompt="a blue square", negative="blurry", **common)
    with torch.no_grad():  # as inside the pipeline's call
        ref = pipe.encode_prompt(
            prompt="a blue square",
            prompt_2=None,
            prompt_3=None,
            negative_prompt="blurry",
            max_sequence_length=32,
            num_images_per_prompt=2,
        )
    for key, want in zip(
        ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"), ref
    ):
        assert torch.equal(plain[key], want), key  # weights of 1: exactly the pipeline's own encoding
    weighted, ids_weighted = _t5_ids(
        pipe, pipe.text_encoder_3, prompt="a (blue:1.5) square", negative="blurry", **common
    )
    assert ids_weighted == ids_plain
    clip_width = pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size
    clip, t5 = weighted["prompt_embeds"][:, :77], weighted["prompt_embeds"][:, 77:]
    assert torch.equal(t5, plain["prompt_embeds"][:, 77:])  # T5's tokens untouched
    for part in (
        slice(0, pipe.text_encoder.config.hidden_size),
        slice(pipe.text_encoder.config.hidden_size, clip_width),
    ):  # L and G both weighted
        assert not torch.allclose(clip[..., part], plain["prompt_embeds"][:, :77, part])
    assert torch.equal(weighted["pooled_prompt_embeds"], plain["pooled_prompt_embeds"])  # pooled as A1111's SDXL
    assert torch.equal(weighted["negative_prompt_embeds"], plain["negative_prompt_embeds"])


def test_sd3_long_prompt_chunks_and_break(app):
    pipe = app.models.load("sd35_medium_tiny").pipeline
    out = flow_prompt_kwargs(pipe, flux=False, prompt="red BREAK blue", negative="", steps=20, max_length=32, batch=1)
    assert out["prompt_embeds"].shape[1] == 2 * 77 + 32  # two CLIP chunks, then T5
    assert out["negative_prompt_embeds"].shape == out["prompt_embeds"].shape  # the negative padded to match


@pytest.mark.parametrize(
    "prompt,text", [("a (red:1.5) cat <lora:x:1>", "a (red:1.5) cat"), ("[cat:dog:0.8] AND a box", "cat a box")]
)
def test_weighted_text_keeps_weights_drops_tags(prompt, text):
    assert " ".join(weighted_text(prompt, 10).split()) == text


def test_flux_prompt_editing_switches_clip_pooled_per_step(app):
    import torch

    from webui.prompts.flow_prompts import flow_prompt, flux_pooled, weighted_texts

    pipe = app.models.load("flux1-dev-tiny").pipeline
    fp = flow_prompt(pipe, flux=True, prompt="a [red:blue:0.5] circle", negative="x", steps=4, max_length=64, batch=2)
    texts = weighted_texts("a [red:blue:0.5] circle", 4)
    # A1111's schedule: [from:to:0.5] over 4 steps ends "from" at step 2, used through the 0-based step 2
    assert [" ".join(t.split()) for t in texts] == ["a red circle"] * 3 + ["a blue circle"]
    assert not fp.static and len(fp.per_step) == 4
    red, blue = flux_pooled(pipe, texts[0]), flux_pooled(pipe, texts[3])
    assert torch.equal(fp.kwargs["pooled_prompt_embeds"][1], red)  # the call starts with step 0's text
    seen = []
    for t in (1.0, 1.0, 0.75, 0.75, 0.5, 0.5, 0.25, 0.25):  # FLUX's true CFG: cond then uncond per timestep
        for key in ("pooled_prompt_embeds", "negative_pooled_prompt_embeds"):
            if (t, key) in seen:
                continue
            seen.append((t, key))
            out = fp.replace({"timestep": torch.tensor([t, t]), "pooled_projections": fp.kwargs[key]})
            if key == "pooled_prompt_embeds":
                assert torch.equal(out["pooled_projections"][0], red if t > 0.3 else blue), t
            else:  # the negative has one text: unchanged
                assert torch.equal(out["pooled_projections"], fp.kwargs[key])


@pytest.mark.parametrize("model", ["flux1-dev-tiny", "sd35_medium_tiny"])
def test_prompt_editing_reaches_the_image(client, model):
    import base64
    import io

    import numpy as np
    from PIL import Image

    def image(prompt: str):
        r = client.post(
            "/sdapi/v1/txt2img",
            json={
                "prompt": prompt,
                "negative_prompt": "blurry",
                "steps": 4,
                "width": 32,
                "height": 32,
                "seed": 2,
                "cfg_scale": 3,
                "override_settings": {"sd_model_checkpoint": model},
            },
        )
        assert r.status_code == 200, r.text
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0]))))

    edited, red, blue = image("a [red:blue:0.5] circle"), image("a red circle"), image("a blue circle")
    assert not np.array_equal(edited, red) and not np.array_equal(edited, blue)
    assert np.array_equal(image("a [red:blue:0.5] circle"), edited)  # deterministic; the hook was removed after
    transformer = client.app.state.application.models.active.pipeline.transformer
    assert not transformer._forward_pre_hooks


def test_sd3_textual_inversion_on_clip_branches(client, data_dir):
    import base64
    import io
    import json

    import numpy as np
    from PIL import Image
    from safetensors.torch import save_file

    def run():
        r = client.post(
            "/sdapi/v1/txt2img",
            json={
                "prompt": "a zorbo square",
                "steps": 2,
                "width": 32,
                "height": 32,
                "seed": 2,
                "cfg_scale": 3,
                "override_settings": {"sd_model_checkpoint": "sd35_medium_tiny"},
            },
        )
        assert r.status_code == 200, r.text
        return (
            np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))),
            json.loads(r.json()["info"])["infotexts"][0],
        )

    plain, text = run()
    assert "TI hashes" not in text
    emb = data_dir / "embeddings"
    emb.mkdir(exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    save_file(
        {"clip_l": torch.randn(2, 32, generator=gen), "clip_g": torch.randn(2, 48, generator=gen)},
        str(emb / "zorbo.safetensors"),
    )  # SDXL's embedding layout: one vector set per CLIP tower
    with_ti, text = run()
    assert 'TI hashes: "zorbo: ' in text or "TI hashes: zorbo: " in text, text
    assert not np.array_equal(with_ti, plain)
