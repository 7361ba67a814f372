"""A FLUX.1 GGUF file in K-quants (Q4_K_M: Q4_K with Q6_K MLP-down matrices, as llama.cpp/city96 mix them) through the
production path. The `gguf` package cannot quantize K-quants, so tests/factories_gguf.py writes their block layouts
itself; the first test checks them against the package's own dequantizers."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.families.conftest import merge_models

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="session")
def flux_k_models(tmp_path_factory, flux_models):
    from tests.factories_gguf import write_flux_gguf_k

    root = tmp_path_factory.mktemp("flux-gguf-k")
    merge_models(root, flux_models)
    write_flux_gguf_k(root)
    return root


@pytest.fixture
def data_dir(tmp_path, flux_k_models):
    merge_models(tmp_path / "models", flux_k_models)
    return tmp_path


@pytest.mark.parametrize("kind,rel_rms", [("Q4_K", 0.1), ("Q6_K", 0.03)])
def test_k_quant_blocks_read_back_with_the_gguf_package(kind, rel_rms):
    import gguf

    from tests.factories_gguf import quantize_q4_k, quantize_q6_k

    a = np.random.default_rng(0).standard_normal((3, 768)).astype(np.float32) * 0.05
    a[1] = np.abs(a[1])  # a row without negatives (Q4_K's min is then 0) and one of zeros
    a[2] = 0
    q = gguf.GGMLQuantizationType[kind]
    blocks = (quantize_q4_k if kind == "Q4_K" else quantize_q6_k)(a)
    assert blocks.shape == (3, 768 // 256 * gguf.GGML_QUANT_SIZES[q][1])
    back = gguf.quants.dequantize(blocks, q)
    assert np.sqrt(((back - a) ** 2).mean()) < rel_rms * a.std() and not back[2].any()


def test_q4_k_m_probed_loaded_reported(client, data_dir):
    from webui.models.gguf_files import read_header, read_state_dict, quantization

    path = data_dir / "models" / "Stable-diffusion" / "flux1-dev-tiny-Q4_K_M.gguf"
    shapes, _ = read_header(path)
    assert shapes["double_blocks.0.img_attn.qkv.weight"] == (768, 256)
    kinds = quantization(read_state_dict(path)).split("+")
    assert {"Q4_K", "Q6_K"} <= set(kinds) and kinds[0] == "Q4_K"
    r = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "flux1-dev-tiny-Q4_K_M"})
    assert r.status_code == 200, r.text
    report = client.get("/easel/v1/system").json()["models"]
    mine = next(m for m in report if "Q4_K_M" in json.dumps(m))
    assert "Q4_K" in json.dumps(mine)


def _image(client, model: str, seed: int = 7):
    r = client.post(
        "/sdapi/v1/txt2img",
        json={
            "prompt": "a red circle",
            "steps": 2,
            "width": 64,
            "height": 48,
            "seed": seed,
            "cfg_scale": 1,
            "override_settings": {"sd_model_checkpoint": model},
        },
    )
    assert r.status_code == 200, r.text
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))).astype(int)


def test_q4_k_m_txt2img_close_to_unquantized(client):
    k = _image(client, "flux1-dev-tiny-Q4_K_M")
    assert k.shape == (48, 64, 3) and np.array_equal(k, _image(client, "flux1-dev-tiny-Q4_K_M"))
    full, other = _image(client, "flux1-dev-tiny-k32"), _image(client, "flux1-dev-tiny-k32", seed=8)
    d_k, d_seed = np.abs(k - full).mean(), np.abs(other - full).mean()
    assert 0 < d_k < d_seed / 3, (d_k, d_seed)  # the K-quant blocks map onto the same layers
