"""SDXL's two text encoders: penultimate layers side by side, pooled output from the second, zeroed empty negative,
and the per-step conditioning (with pooled `add_text_embeds`) through StableDiffusionXLPipeline's loop."""

from __future__ import annotations

import pytest
import torch

from webui.prompts.conditioning import build_schedule
from webui.prompts.guidance import GuidedConditioning


@pytest.fixture(scope="module")
def xl():
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from webui.models.tokenizer import load_clip_tokenizer

    torch.manual_seed(0)

    def config(width):
        return CLIPTextConfig(
            hidden_size=width,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            vocab_size=49408,
            max_position_embeddings=77,
            projection_dim=16,
            hidden_act="gelu",
        )

    te, te2 = CLIPTextModel(config(32)).eval(), CLIPTextModelWithProjection(config(48)).eval()
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=64,
        cross_attention_dim=80,
        norm_num_groups=1,
    ).eval()
    vae = AutoencoderKL(
        block_out_channels=(32,),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
    ).eval()
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=te,
        text_encoder_2=te2,
        tokenizer=load_clip_tokenizer(),
        tokenizer_2=load_clip_tokenizer("sdxl/tokenizer_2"),
        unet=unet,
        scheduler=EulerDiscreteScheduler(),
        force_zeros_for_empty_prompt=True,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_both_encoders_penultimate_layer_and_pooled(xl):
    s = build_schedule(xl, ["a red cat"], 10)
    c, pooled = s.at(0)[0], s.pooled_at(0)[0]
    assert c.shape == (77, 80) and pooled.shape == (16,)
    ids = xl.tokenizer("a red cat", add_special_tokens=False)["input_ids"]
    eos = xl.tokenizer.eos_token_id
    l_ids = torch.tensor([[xl.tokenizer.bos_token_id, *ids, *[eos] * (76 - len(ids))]])
    g_ids = l_ids.clone()
    g_ids[0, len(ids) + 2 :] = xl.tokenizer_2.pad_token_id  # OpenCLIP pads with "!" after the first EOS
    assert xl.tokenizer_2.pad_token_id == 0
    with torch.no_grad():
        ref_l = xl.text_encoder(l_ids, output_hidden_states=True).hidden_states[-2][0]
        out_g = xl.text_encoder_2(g_ids, output_hidden_states=True)
    assert torch.equal(c[:, :32], ref_l)
    assert torch.equal(c[:, 32:], out_g.hidden_states[-2][0])
    assert torch.equal(pooled, out_g.text_embeds[0])


def test_empty_negative_is_zeros_but_empty_positive_is_not(xl):
    neg = build_schedule(xl, [""], 10, negative=True)
    assert not neg.at(0).any() and not neg.pooled_at(0).any()
    assert build_schedule(xl, [""], 10).at(0).abs().sum() > 0
    assert build_schedule(xl, ["ugly"], 10, negative=True).at(0).abs().sum() > 0


def test_embedding_per_encoder(xl):
    emb = {"easelstyle": {"clip_l": torch.randn(2, 32), "clip_g": torch.randn(2, 48)}}
    plain = build_schedule(xl, ["a easelstyle"], 10).at(0)[0]
    with_emb = build_schedule(xl, ["a easelstyle"], 10, embeddings=emb).at(0)[0]
    assert not torch.allclose(plain[:, :32], with_emb[:, :32]) and not torch.allclose(plain[:, 32:], with_emb[:, 32:])


def test_xl_loop_gets_edited_prompt_and_pooled(xl):
    steps = 6
    g = GuidedConditioning(
        build_schedule(xl, ["[red|blue] cat"], steps), build_schedule(xl, ["ugly"], steps, negative=True), batch_size=1
    )
    red = build_schedule(xl, ["red cat"], steps)
    blue = build_schedule(xl, ["blue cat"], steps)
    seen = []

    def record(module, args, kwargs):
        seen.append((kwargs["encoder_hidden_states"].clone(), kwargs["added_cond_kwargs"]["text_embeds"].clone()))

    h = xl.unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        xl(
            **g.pipeline_kwargs(),
            callback_on_step_end=g.callback(),
            num_inference_steps=steps,
            guidance_scale=5.0,
            height=64,
            width=64,
            output_type="latent",
            generator=torch.Generator().manual_seed(0),
        )
    finally:
        h.remove()
    assert len(seen) == steps
    for step, (ehs, pooled) in enumerate(seen):
        want = red if step in (0, 1, 3, 5) else blue
        assert torch.equal(ehs[1], want.at(0)[0]), step
        assert torch.allclose(pooled[1], want.pooled_at(0)[0], atol=1e-6), step  # batched vs single: ulps


def test_xl_composable(xl):
    def run(prompt, cfg):
        g = GuidedConditioning(build_schedule(xl, [prompt], 4), build_schedule(xl, [""], 4, negative=True), 1)
        with g.composable(xl.unet):
            return xl(
                **g.pipeline_kwargs(),
                callback_on_step_end=g.callback(),
                num_inference_steps=4,
                guidance_scale=cfg,
                height=64,
                width=64,
                output_type="latent",
                generator=torch.Generator().manual_seed(0),
            ).images

    # The same guidance summed in a different order: equal up to fp32 rounding. The random tiny SDXL gives latents
    # of |x| ~ 250, where rounding through 4 steps reaches ~1e-3 absolute, so the bound is relative to that scale
    # (a wrong weighting differs by whole units).
    a, b = run("red cat AND red cat", 2.5), run("red cat", 5.0)
    assert (a - b).abs().max() <= 1e-5 * b.abs().max(), ((a - b).abs().max(), b.abs().max())
