"""IP-Adapter on FLUX.1: a tiny adapter in XLabs' `ip_adapter.safetensors` layout (`ip_adapter_proj_model.proj/norm`,
`double_blocks.<i>.processor.ip_adapter_double_stream_k/v_proj` with biases) for the tiny FLUX transformer, with the
tiny CLIP image encoder folder, through the production path (the ip_adapter extension's pipeline_call hook →
diffusers' FluxIPAdapterMixin.load_ip_adapter). Weight 0 is the plain image bit for bit, weight 1 changes it, the
transformer is restored after the job, an adapter of another family is refused either way."""

from __future__ import annotations

import base64
import functools
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.factories_families import FLUX_TINY
from tests.families.conftest import merge_models
from tests.ip_adapter.test_ip_adapter import ENC_DIM, _b64, _prompt_image, write_tiny_adapter, write_tiny_encoder

pytestmark = pytest.mark.filterwarnings("ignore")
FLUX = "flux1-dev-tiny"
BASE = {"prompt": "a red circle", "steps": 3, "width": 32, "height": 32, "seed": 4, "cfg_scale": 1}


def write_xlabs_flux_adapter(path, seed: int = 0):
    """XLabs' layout: ImageProjModel (4 tokens of joint_attention_dim) and one biased k/v pair per double block."""
    from safetensors.torch import save_file

    joint, inner = FLUX_TINY["joint_attention_dim"], FLUX_TINY["num_attention_heads"] * FLUX_TINY["attention_head_dim"]
    g = torch.Generator().manual_seed(seed)
    state = {
        "ip_adapter_proj_model.proj.weight": torch.randn(joint * 4, ENC_DIM, generator=g),
        "ip_adapter_proj_model.proj.bias": torch.zeros(joint * 4),
        "ip_adapter_proj_model.norm.weight": torch.ones(joint),
        "ip_adapter_proj_model.norm.bias": torch.zeros(joint),
    }
    for i in range(FLUX_TINY["num_layers"]):
        for kv in ("k", "v"):
            p = f"double_blocks.{i}.processor.ip_adapter_double_stream_{kv}_proj."
            state[p + "weight"] = torch.randn(inner, joint, generator=g) * 2
            state[p + "bias"] = torch.randn(inner, generator=g)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


@pytest.fixture
def data_dir(tmp_path, tiny_models, flux_models, request):
    models = tmp_path / "models"
    # SD 3's text encoders have the same file names as FLUX's: one family per data dir
    merge_models(
        models, tiny_models, request.getfixturevalue("sd3_models") if "sd3" in request.node.name else flux_models
    )
    write_xlabs_flux_adapter(models / "ipadapter" / "flux-ip-adapter.safetensors")
    write_tiny_adapter(models / "ipadapter" / "ip-adapter_tiny.safetensors")
    write_tiny_encoder(models / "clip_vision" / "tiny-vision")
    return tmp_path


def _run(client, *units, model=FLUX, **extra):
    body = {**BASE, **extra, "override_settings": {"sd_model_checkpoint": model}}
    if units:
        body["alwayson_scripts"] = {"IP-Adapter": {"args": list(units)}}
    r = client.post("/sdapi/v1/txt2img", json=body)
    return r


def _image(r):
    assert r.status_code == 200, r.text
    data = r.json()
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["images"][0]))).convert("RGB"), dtype=np.int16)
    return pixels, json.loads(data["info"])["infotexts"][0]


def _unit(**kw):
    return {"enabled": True, "image": _b64(_prompt_image()), "model": "flux-ip-adapter", "weight": 1.0, **kw}


def test_flux_weight_zero_is_plain_weight_one_changes_it_and_the_transformer_is_restored(client, app):
    from diffusers.models.transformers.transformer_flux import FluxIPAdapterAttnProcessor

    plain, plain_info = _image(_run(client))
    assert np.array_equal(_image(_run(client, _unit(weight=0)))[0], plain)
    seen: list = []
    original = FluxIPAdapterAttnProcessor.__call__

    @functools.wraps(original)  # FluxAttention passes the processor only the parameters its signature names
    def spy(self, attn, hidden_states, *args, **kwargs):
        seen.append(self.scale)
        return original(self, attn, hidden_states, *args, **kwargs)

    FluxIPAdapterAttnProcessor.__call__ = spy  # type: ignore[method-assign]
    try:
        one, info = _image(_run(client, _unit()))
    finally:
        FluxIPAdapterAttnProcessor.__call__ = original  # type: ignore[method-assign]
    assert seen and seen[0] == [1.0]  # the adapter's attention ran on the double block, at the unit's weight
    assert np.abs(one - plain).mean() > 2
    assert 'IP-Adapter 0: "model: flux-ip-adapter, weight: 1, mask: False"' in info
    assert "IP-Adapter" not in plain_info
    half, _ = _image(_run(client, _unit(weight=0.5)))
    assert not np.array_equal(half, one) and not np.array_equal(half, plain)
    assert np.array_equal(_image(_run(client))[0], plain)  # unloaded after its call
    transformer = app.models.active.pipeline.transformer
    assert transformer.encoder_hid_proj is None
    assert not any(isinstance(p, FluxIPAdapterAttnProcessor) for p in transformer.attn_processors.values())
    # the start/end window: none of the 3 steps at [0.9, 1) is the plain image
    assert np.array_equal(_image(_run(client, _unit(guidance_start=0.9)))[0], plain)
    # true CFG (cfg_scale > 1): the negative image prompt is a black image's embedding; the image still differs
    cfg_plain, _ = _image(_run(client, cfg_scale=2))
    cfg_one, _ = _image(_run(client, _unit(), cfg_scale=2))
    assert not np.array_equal(cfg_plain, cfg_one)


def test_adapters_of_another_family_are_refused_with_the_reason(client):
    plain, _ = _image(_run(client))
    r = _run(client, _unit(model="ip-adapter_tiny"))
    assert r.status_code == 422 and "for SD 1.x/2.x/SDXL checkpoints; this checkpoint is FLUX.1" in r.text, r.text
    mask = Image.new("L", (32, 32), 255)
    r = _run(client, _unit(mask=_b64(mask)))
    assert r.status_code == 422 and "masks are not available on FLUX.1" in r.text, r.text
    assert np.array_equal(_image(_run(client))[0], plain)  # nothing left loaded by the refused calls
    r = _run(client, _unit(), model="tiny-a")
    assert r.status_code == 422 and "for FLUX.1 checkpoints; this checkpoint is SD 1.x/2.x/SDXL" in r.text, r.text


def test_flux_img2img_and_a_batch_of_two(client):
    """img2img on FLUX goes through the same hook (weight 0: the plain image bit for bit; weight 1 changes it); a
    batch of two gets the image prompt in both images (the pipeline repeats the [1, 1, dim] embeddings per image)."""
    init = _b64(Image.new("RGB", (32, 32), (200, 40, 40)))
    body = {
        **BASE,
        "init_images": [init],
        "denoising_strength": 0.8,
        "override_settings": {"sd_model_checkpoint": FLUX},
    }

    def img2img(*units):
        extra = {"alwayson_scripts": {"IP-Adapter": {"args": list(units)}}} if units else {}
        return _image(client.post("/sdapi/v1/img2img", json={**body, **extra}))[0]

    plain = img2img()
    assert np.array_equal(img2img(_unit(weight=0)), plain)
    assert np.abs(img2img(_unit()) - plain).mean() > 1

    def batch(*units):
        r = _run(client, *units, batch_size=2)
        assert r.status_code == 200, r.text
        return [
            np.asarray(Image.open(io.BytesIO(base64.b64decode(i))).convert("RGB"), np.int16) for i in r.json()["images"]
        ]

    plain2, with2 = batch(), batch(_unit())
    assert all(not np.array_equal(a, b) for a, b in zip(plain2, with2))


def test_sd3_refuses_an_ip_adapter_with_the_reason(client):
    """SD 3's IP-Adapter (InstantX's, with a SigLIP encoder) is not supported: a unit is refused, not ignored."""
    r = _run(client, _unit(), model="sd35_medium_tiny")
    assert r.status_code == 422 and "SD 1.x/2.x/SDXL and FLUX.1 checkpoints, not this one" in r.text, r.text
    assert _image(_run(client, model="sd35_medium_tiny"))[0].shape == (32, 32, 3)


def test_flux_hires_pass_gets_the_image_prompt_too(client, app):
    """The hires second pass is a pipeline call of its own (flow_call with hires=True): the adapter is loaded for it
    as for the first pass and unloaded after; weight 0 is the plain hires image bit for bit."""
    from diffusers.models.transformers.transformer_flux import FluxIPAdapterAttnProcessor

    hr = {"enable_hr": True, "hr_scale": 2, "hr_upscaler": "Latent", "denoising_strength": 0.5}
    hr["hr_second_pass_steps"] = 2
    plain, _ = _image(_run(client, **hr))
    assert plain.shape == (64, 64, 3)
    assert np.array_equal(_image(_run(client, _unit(weight=0), **hr))[0], plain)
    calls: list = []
    transformer = app.models.active.pipeline.transformer

    def count(module, args, kwargs):
        procs = transformer.attn_processors.values()
        calls.append(any(isinstance(p, FluxIPAdapterAttnProcessor) for p in procs))

    handle = transformer.register_forward_pre_hook(count, with_kwargs=True)
    try:
        one, _ = _image(_run(client, _unit(), **hr))
    finally:
        handle.remove()
    assert len(calls) == BASE["steps"] + 2 and all(calls)  # both passes ran with the adapter
    assert not np.array_equal(one, plain)
    assert not any(isinstance(p, FluxIPAdapterAttnProcessor) for p in transformer.attn_processors.values())
