"""An SD 3.5 GGUF file in K-quants (`sd3.5_large-Q4_K_M.gguf`-style: Q4_K with Q6_K MLP-down matrices) through the
production path: probed from the header, loaded quantized, generating close to the same weights unquantized."""

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
def sd3_k_models(tmp_path_factory, sd3_models):
    from tests.factories_gguf import write_sd3_gguf_k

    root = tmp_path_factory.mktemp("sd3-gguf-k")
    merge_models(root, sd3_models)
    write_sd3_gguf_k(root)
    return root


@pytest.fixture
def data_dir(tmp_path, sd3_k_models):
    merge_models(tmp_path / "models", sd3_k_models)
    return tmp_path


def _image(client, model: str, seed: int = 7):
    r = client.post(
        "/sdapi/v1/txt2img",
        json={
            "prompt": "a red circle",
            "negative_prompt": "blurry",
            "steps": 2,
            "width": 64,
            "height": 48,
            "seed": seed,
            "cfg_scale": 4,
            "override_settings": {"sd_model_checkpoint": model},
        },
    )
    assert r.status_code == 200, r.text
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))).astype(int)


def test_sd35_q4_k_m_probed_loaded_reported_and_close_to_unquantized(client, data_dir):
    from webui.models.gguf_files import quantization, read_header, read_state_dict
    from webui.models.loader import probe_file

    path = data_dir / "models" / "Stable-diffusion" / "sd3.5_large_tiny-Q4_K_M.gguf"
    shapes, _ = read_header(path)
    assert shapes["joint_blocks.0.x_block.attn.qkv.weight"] == (768, 256)
    kinds = quantization(read_state_dict(path)).split("+")
    assert {"Q4_K", "Q6_K"} <= set(kinds) and kinds[0] == "Q4_K"
    probe = probe_file(path)
    assert (probe.family.value, probe.variant) == ("sd3", "sd35-large")
    assert probe.configs["transformer"]["attention_head_dim"] == 64
    r = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "sd3.5_large_tiny-Q4_K_M"})
    assert r.status_code == 200, r.text
    mine = next(m for m in client.get("/easel/v1/system").json()["models"] if "Q4_K_M" in json.dumps(m))
    assert "Q4_K" in json.dumps(mine)
    k = _image(client, "sd3.5_large_tiny-Q4_K_M")
    assert k.shape == (48, 64, 3) and np.array_equal(k, _image(client, "sd3.5_large_tiny-Q4_K_M"))
    full, other = _image(client, "sd3.5_large_tiny-k32"), _image(client, "sd3.5_large_tiny-k32", seed=8)
    d_k, d_seed = np.abs(k - full).mean(), np.abs(other - full).mean()
    assert 0 < d_k < d_seed / 3, (d_k, d_seed)  # the K-quant blocks map onto the same layers
