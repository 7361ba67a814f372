"""FLUX.1 GGUF transformer files (city96 layout: BFL names, GGML blocks) at tiny scale through the production path:
probed from the GGUF header, listed, loaded with diffusers' GGUF quantizer, txt2img through the API."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.families.conftest import merge_models

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="session")
def flux_gguf_models(tmp_path_factory, flux_models):
    from tests.factories_gguf import write_flux_gguf

    root = tmp_path_factory.mktemp("flux-gguf")
    merge_models(root, flux_models)
    write_flux_gguf(root, "Q4_0")
    write_flux_gguf(root, "Q8_0", twin=False)
    return root


@pytest.fixture
def data_dir(tmp_path, flux_gguf_models):
    merge_models(tmp_path / "models", flux_gguf_models)
    return tmp_path


def _txt2img(client, model: str, **body):
    payload = {
        "prompt": "a red circle",
        "steps": 2,
        "width": 64,
        "height": 48,
        "seed": 7,
        "cfg_scale": 1,
        "distilled_cfg_scale": 3.5,
        "override_settings": {"sd_model_checkpoint": model},
        **body,
    }
    r = client.post("/sdapi/v1/txt2img", json=payload)
    assert r.status_code == 200, r.text
    data = r.json()
    return (
        [np.asarray(Image.open(io.BytesIO(base64.b64decode(b)))).astype(int) for b in data["images"]],
        json.loads(data["info"]),
    )


def test_gguf_probed_from_its_header(data_dir):
    from webui.models.gguf_files import read_header
    from webui.models.loader import probe_file

    path = data_dir / "models" / "Stable-diffusion" / "flux1-dev-tiny-Q4_0.gguf"
    shapes, meta = read_header(path)
    assert shapes["double_blocks.0.img_attn.qkv.weight"] == (96, 32)  # logical shape, not the quantized bytes
    assert json.loads(meta["easel.config"])["native_size"] == 64 and meta["general.architecture"] == "flux"
    r = probe_file(path)
    assert (r.family.value, r.variant) == ("flux", "flux-dev")
    cfg = r.configs["transformer"]
    assert (cfg["num_attention_heads"], cfg["attention_head_dim"], cfg["axes_dims_rope"]) == (2, 16, [4, 4, 8])


def test_gguf_listed(client):
    names = {m["model_name"] for m in client.get("/sdapi/v1/sd-models").json()}
    assert {"flux1-dev-tiny-Q4_0", "flux1-dev-tiny-Q8_0", "flux1-dev-tiny-w32"} <= names


def test_gguf_txt2img_same_seed_and_close_to_unquantized(client):
    a, info = _txt2img(client, "flux1-dev-tiny-Q8_0")
    assert a[0].shape == (48, 64, 3)
    b, _ = _txt2img(client, "flux1-dev-tiny-Q8_0")
    assert np.array_equal(a[0], b[0])
    assert "Model: flux1-dev-tiny-Q8_0" in info["infotexts"][0] and "Distilled CFG Scale: 3.5" in info["infotexts"][0]
    full, _ = _txt2img(client, "flux1-dev-tiny-w32")
    q4, _ = _txt2img(client, "flux1-dev-tiny-Q4_0")
    other_seed, _ = _txt2img(client, "flux1-dev-tiny-w32", seed=8)
    d8, d4 = np.abs(a[0] - full[0]).mean(), np.abs(q4[0] - full[0]).mean()
    d_seed = np.abs(other_seed[0] - full[0]).mean()
    # the quantized weights map onto the same layers: Q8_0 is nearly the unquantized image, Q4_0 further off,
    # both far closer than another seed
    assert 0 < d8 < d4 < d_seed / 3, (d8, d4, d_seed)


def test_gguf_weights_stay_quantized_in_ram(make_app):
    app = make_app("--nowebui")
    q4 = app.models.load("flux1-dev-tiny-Q4_0")
    assert q4.probe.quantization == "Q4_0"
    qkv = q4.pipeline.transformer.transformer_blocks[0].attn.to_q.weight  # split out of the fused BFL qkv
    assert qkv.dtype == torch.uint8 and qkv.quant_type.name == "Q4_0" and tuple(qkv.quant_shape) == (32, 32)

    def nbytes(m):
        return sum(p.numel() * p.element_size() for p in m.pipeline.transformer.parameters())

    q4_bytes = nbytes(q4)
    full = app.models.load("flux1-dev-tiny-w32")
    assert full.probe.quantization == "" and q4_bytes < nbytes(full) / 2
