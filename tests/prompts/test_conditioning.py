"""Weighted, chunked, scheduled conditioning on the tiny SD 1.x model, and its ride through diffusers' denoise loop."""

from __future__ import annotations

import pytest
import torch

from webui.prompts.chunks import build_chunks, token_count
from webui.prompts.conditioning import Conditioner, build_schedule
from webui.prompts.guidance import GuidedConditioning

LONG = ", ".join(["a red cat"] * 37)  # 147 tokens


@pytest.fixture(scope="module")
def pipe():
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from tests.factories import tiny_components
    from webui.models.tokenizer import load_clip_tokenizer

    unet, vae, te = tiny_components(seed=3)
    with torch.no_grad():  # a trained CLIP's final norm has a bias: without one, every token's mean is ~0 and the
        te.final_layer_norm.bias.normal_(0.5, 0.1)  # mean-restoring factor of the tiny model would be 0/0
    p = StableDiffusionPipeline(
        vae=vae,
        text_encoder=te,
        tokenizer=load_clip_tokenizer(),
        unet=unet,
        scheduler=EulerDiscreteScheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    p.set_progress_bar_config(disable=True)
    return p


def cond(pipe, prompt, steps=10, step=0, **kw):
    return build_schedule(pipe, [prompt], steps, **kw).at(step)[0]


def plain_ids(pipe, text):
    tok = pipe.tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return torch.tensor([[tok.bos_token_id, *ids, *[tok.eos_token_id] * (76 - len(ids))]])


def test_plain_prompt_matches_the_text_encoder(pipe):
    with torch.no_grad():
        ref = pipe.text_encoder(plain_ids(pipe, "a red cat")).last_hidden_state[0]
    assert torch.equal(cond(pipe, "a red cat"), ref)


def test_weight_one_is_exactly_plain(pipe):
    assert torch.equal(cond(pipe, "(red:1.0) cat"), cond(pipe, "red cat"))
    assert torch.equal(cond(pipe, "a (cat:1)"), cond(pipe, "a cat"))


def test_weight_scales_the_token_then_the_mean_is_restored(pipe):
    base, up, down = cond(pipe, "a red cat"), cond(pipe, "a (red:1.5) cat"), cond(pipe, "a [red] cat")
    assert not torch.equal(base, up)
    factor = up[0] / base[0]  # BOS (weight 1): the mean-restoring factor, the same for every position
    assert torch.allclose(factor, factor[0].expand_as(factor), rtol=1e-4)
    f = factor[0]
    assert torch.allclose(up.mean(), base.mean(), rtol=1e-4)
    red = 2  # BOS, "a", "red"
    assert torch.allclose(up[red], 1.5 * f * base[red], rtol=1e-4, atol=1e-6)
    assert torch.allclose(up[[1, 3]], f * base[[1, 3]], rtol=1e-4, atol=1e-6)
    # "right direction": red moves along its own embedding, away from the baseline, more than everything else
    move = up[red] - f * base[red]
    assert torch.cosine_similarity(move, base[red], dim=0) > 0.999
    assert (down[red] / down[0]).norm() < (base[red] / base[0]).norm()


def test_long_prompt_is_two_chunks_each_with_bos_and_eos(pipe):
    chunks, count = build_chunks(pipe.tokenizer, LONG)
    assert len(chunks) == 2 and 75 < count <= 150
    for c in chunks:
        assert len(c.tokens) == 77 and c.tokens[0] == pipe.tokenizer.bos_token_id
        assert c.tokens[-1] == pipe.tokenizer.eos_token_id
    c = cond(pipe, LONG)
    assert c.shape == (154, 32)
    assert build_schedule(pipe, [LONG], 10).max_chunks == 2
    # each chunk is encoded on its own: the first equals a 77-token encoding of its tokens
    with torch.no_grad():
        first = pipe.text_encoder(torch.tensor([chunks[0].tokens])).last_hidden_state[0]
    assert torch.equal(c[:77], first)
    assert token_count(pipe.tokenizer, LONG) == (count, 150)
    assert token_count(pipe.tokenizer, "a cat") == (2, 75)


def test_comma_backtrack_moves_the_words_after_the_last_comma(pipe):
    text = "word " * 70 + ", " + "tail " * 10
    with_bt, _ = build_chunks(pipe.tokenizer, text, comma_padding_backtrack=20)
    without, _ = build_chunks(pipe.tokenizer, text, comma_padding_backtrack=0)
    comma = pipe.tokenizer.get_vocab()[",</w>"]
    eos = pipe.tokenizer.eos_token_id
    assert with_bt[0].tokens[71] == comma and set(with_bt[0].tokens[72:]) == {eos}
    assert without[0].tokens[72] != eos


def test_break_starts_a_new_chunk(pipe):
    c = cond(pipe, "red BREAK cat")
    assert c.shape == (154, 32)
    assert torch.equal(c[:77], cond(pipe, "red"))
    assert torch.equal(c[77:], cond(pipe, "cat"))
    assert token_count(pipe.tokenizer, "red BREAK cat") == (76, 150)


def test_clip_skip_2_is_the_penultimate_layer_with_the_final_norm(pipe):
    ids = plain_ids(pipe, "a red cat")
    with torch.no_grad():
        hidden = pipe.text_encoder(ids, output_hidden_states=True).hidden_states
        ref = pipe.text_encoder.final_layer_norm(hidden[-2])[0]
    skipped = cond(pipe, "a red cat", clip_skip=2)
    assert torch.equal(skipped, ref)
    assert not torch.allclose(skipped, cond(pipe, "a red cat"))


def test_prompt_editing_switches_at_a1111s_step(pipe):
    s = build_schedule(pipe, ["[red:blue:0.5] cat"], 10)
    red, blue = cond(pipe, "red cat"), cond(pipe, "blue cat")
    assert not s.is_static
    for step in range(10):
        assert torch.equal(s.at(step)[0], red if step <= 5 else blue), step


def test_alternation_changes_every_step(pipe):
    s = build_schedule(pipe, ["[red|blue] cat"], 6)
    red, blue = cond(pipe, "red cat"), cond(pipe, "blue cat")
    expected = [red, red, blue, red, blue, red]
    assert all(torch.equal(s.at(i)[0], e) for i, e in enumerate(expected))


def test_each_distinct_chunk_is_encoded_once(pipe):
    rows = []
    h = pipe.text_encoder.register_forward_pre_hook(lambda m, a: rows.append(a[0].shape[0]))
    try:
        build_schedule(pipe, ["[red|blue|red] cat", "[red|blue|red] cat"], 30)
    finally:
        h.remove()
    assert sum(rows) == 3  # "red cat", "blue cat", and "" for padding


def test_negative_is_padded_to_the_positive_and_back(pipe):
    pos = build_schedule(pipe, [LONG], 10)
    neg = build_schedule(pipe, [""], 10, negative=True)
    g = GuidedConditioning(pos, neg, batch_size=2)
    p, n = g.embeds(0)
    assert p.shape == n.shape == (2, 154, 32)
    empty = cond(pipe, "")
    assert torch.equal(n[0, :77], empty) and torch.equal(n[1, 77:], empty)
    assert g.pad_conds and not GuidedConditioning(neg, neg, batch_size=1).pad_conds
    p, n = GuidedConditioning(neg, pos, batch_size=1).embeds(0)
    assert p.shape == n.shape == (1, 154, 32) and torch.equal(p[0, 77:], empty)


def test_textual_inversion_vectors_replace_the_trigger_word(pipe):
    torch.manual_seed(0)
    emb = {"easelstyle": torch.randn(3, 32)}
    with_word = cond(pipe, "a easelstyle cat", embeddings=emb)
    assert not torch.allclose(with_word, cond(pipe, "a easelstyle cat"))
    assert torch.equal(cond(pipe, "a red cat", embeddings=emb), cond(pipe, "a red cat"))
    c = Conditioner(pipe, embeddings=emb)
    chunk = c.chunks("a easelstyle cat")[0]
    assert chunk.fixes == [(2, "easelstyle", 3)]  # after BOS and "a", three positions
    cat = pipe.tokenizer("cat", add_special_tokens=False)["input_ids"][0]
    assert chunk.tokens[5] == cat
    assert token_count(pipe.tokenizer, "a easelstyle cat", embeddings={"easelstyle": 3}) == (5, 75)
    assert c.used_embeddings == {"easelstyle"}


def _run(pipe, prompt, negative="", steps=10, cfg=7.0, record=None, **kw):
    pos = build_schedule(pipe, [prompt], steps)
    neg = build_schedule(pipe, [negative], steps, negative=True)
    g = GuidedConditioning(pos, neg, batch_size=1)
    hooks = []
    if record is not None:
        hooks.append(
            pipe.unet.register_forward_pre_hook(
                lambda m, a, k: record.append(k["encoder_hidden_states"].clone()), with_kwargs=True
            )
        )
    try:
        with g.composable(pipe.unet):
            return pipe(
                **g.pipeline_kwargs(),
                callback_on_step_end=g.callback(),
                num_inference_steps=steps,
                guidance_scale=cfg,
                height=64,
                width=64,
                output_type="latent",
                generator=torch.Generator().manual_seed(1),
                **kw,
            ).images
    finally:
        for h in hooks:
            h.remove()


def test_denoise_loop_sees_the_edit_at_the_right_step(pipe):
    seen: list[torch.Tensor] = []
    _run(pipe, "[red:blue:0.5] cat", negative="ugly", record=seen)
    red, blue, ugly = cond(pipe, "red cat"), cond(pipe, "blue cat"), cond(pipe, "ugly", negative=True)
    assert len(seen) == 10
    for step, ehs in enumerate(seen):
        assert ehs.shape == (2, 77, 32)
        assert torch.equal(ehs[0], ugly)  # the pipeline's order: [negative, positive]
        assert torch.equal(ehs[1], red if step <= 5 else blue), step


def test_composable_and_folds_sub_prompts_into_cfg(pipe):
    # uncond + 3.5·(c − u) + 3.5·(c − u) is uncond + 7·(c − u)
    twice = _run(pipe, "red cat AND red cat", cfg=3.5)
    once = _run(pipe, "red cat", cfg=7.0)
    assert torch.allclose(twice, once, atol=1e-4)
    weighted = _run(pipe, "red cat:2", cfg=3.5)
    assert torch.allclose(weighted, once, atol=1e-4)
    mixed = _run(pipe, "red cat AND blue dog:0.5", cfg=7.0)
    assert not torch.allclose(mixed, once, atol=1e-3)


def test_extra_network_tags_do_not_reach_the_text_encoder(pipe):
    s = build_schedule(pipe, ["red <lora:foo:0.5>cat"], 10)
    assert torch.equal(s.at(0)[0], cond(pipe, "red cat"))
    assert [t.name for t in s.extra_networks[0]] == ["foo"]


def test_sd2_pads_with_its_own_token_and_ignores_clip_skip(pipe):
    from types import SimpleNamespace

    from webui.models.tokenizer import load_clip_tokenizer

    tok = load_clip_tokenizer("sd21v/tokenizer")
    assert tok.pad_token_id != tok.eos_token_id
    sd2 = SimpleNamespace(tokenizer=tok, text_encoder=pipe.text_encoder, unet=pipe.unet)
    c = cond(sd2, "a red cat")
    assert torch.equal(cond(sd2, "a red cat", clip_skip=2), c)  # A1111 ignores clip skip for OpenCLIP
    ids = plain_ids(pipe, "a red cat")
    ids[0, 5:] = tok.pad_token_id  # BOS a red cat EOS, then pad
    with torch.no_grad():
        assert torch.equal(c, pipe.text_encoder(ids).last_hidden_state[0])
