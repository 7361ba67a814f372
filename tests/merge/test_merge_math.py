"""The merge's arithmetic, tensor for tensor against A1111's formulas on tiny models (computed in float32, cast to
the output dtype), through the real API and job queue."""

from __future__ import annotations

import torch

from tests.factories import write_tiny_checkpoint
from tests.merge.conftest import A, B, add_checkpoint, merged, read_all

SKIP = "cond_stage_model.transformer.text_model.embeddings.position_ids"


def _merged_key(key: str, a: torch.Tensor) -> bool:
    return "model" in key and key != SKIP and a.is_floating_point()


def test_weighted_sum_is_exact(client, app, ckpt):
    _, ta, tb = ckpt
    m = 0.3
    out, _, view = merged(client, app, primary=A, secondary=B, method="weighted_sum", multiplier=m, name="ws")
    assert view["result"]["name"] == "ws.safetensors" and view["progress"] == 1.0
    assert set(out) == set(ta)
    n_merged = 0
    for key, a in ta.items():
        if _merged_key(key, a):
            expected = ((1 - m) * a.float() + m * tb[key].float()).to(a.dtype)
            n_merged += 1
        else:
            expected = a
        assert out[key].dtype == expected.dtype, key
        assert torch.equal(out[key], expected), key
    assert n_merged > 100  # UNet, VAE and text encoder all merged
    assert not torch.equal(out["model.diffusion_model.out.2.weight"], ta["model.diffusion_model.out.2.weight"])


def test_add_difference_is_exact(client, app, ckpt):
    _, ta, tb = ckpt
    add_checkpoint(app, "tiny-c.safetensors", write_tiny_checkpoint, seed=2)
    tc = read_all(app.paths.ckpt_dir / "tiny-c.safetensors")[0]
    m = 0.75
    out, _, _ = merged(
        client, app, primary=A, secondary=B, tertiary="tiny-c", method="add_difference", multiplier=m, name="ad"
    )
    for key, a in ta.items():
        expected = (a.float() + m * (tb[key].float() - tc[key].float())).to(a.dtype) if _merged_key(key, a) else a
        assert torch.equal(out[key], expected), key


def test_no_interpolation_copies_primary(client, app, ckpt):
    _, ta, _ = ckpt
    out, _, view = merged(client, app, primary=A, method="no_interpolation", name="copy-of-a")
    assert set(out) == set(ta)
    for key, a in ta.items():
        assert out[key].dtype == a.dtype and torch.equal(out[key], a), key


def test_save_as_half_gives_fp16_of_the_fp32_result(client, app, ckpt):
    _, ta, tb = ckpt
    m = 0.5
    out, meta, _ = merged(client, app, primary=A, secondary=B, multiplier=m, name="half", save_as_half=True)
    for key, a in ta.items():
        if a.dtype == torch.float32:
            assert out[key].dtype == torch.float16, key
            expected = ((1 - m) * a.float() + m * tb[key].float()) if _merged_key(key, a) else a
            assert torch.equal(out[key], expected.half()), key
        else:  # integer buffers stay as they are
            assert out[key].dtype == a.dtype and torch.equal(out[key], a), key


def test_no_interpolation_half_halves_everything(client, app, ckpt):
    _, ta, _ = ckpt
    out, _, _ = merged(client, app, primary=A, method="no_interpolation", name="a-half", save_as_half=True)
    assert {v.dtype for k, v in out.items() if ta[k].is_floating_point()} == {torch.float16}
    assert all(torch.equal(out[k], a.half() if a.dtype == torch.float32 else a) for k, a in ta.items())


def test_inpainting_primary_merges_its_shared_channels(client, app, ckpt):
    """A1111: a 9-channel A with a 4-channel B merges the 4 latent channels; the name gets `.inpainting`."""
    _, _, tb = ckpt
    add_checkpoint(app, "inp.safetensors", write_tiny_checkpoint, seed=4, in_channels=9)
    ti = read_all(app.paths.ckpt_dir / "inp.safetensors")[0]
    m = 0.4
    out, meta, view = merged(client, app, primary="inp", secondary=B, multiplier=m, name="inp-merge")
    assert view["result"]["name"] == "inp-merge.inpainting.safetensors"
    key = "model.diffusion_model.input_blocks.0.0.weight"
    assert out[key].shape[1] == 9
    assert torch.equal(out[key][:, :4], (1 - m) * ti[key][:, :4] + m * tb[key])
    assert torch.equal(out[key][:, 4:], ti[key][:, 4:])
    assert '"is_inpainting": true' in meta["sd_merge_recipe"]
