"""Memory for the flow families: switching between an SD 1.x and a FLUX.1 checkpoint with one checkpoint kept in RAM
doesn't leak, and /easel/v1/system reports what each cached model holds."""

from __future__ import annotations

import ctypes
import gc

import pytest

from tests.families.conftest import merge_models

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def data_dir(tmp_path, tiny_models, flux_models):
    merge_models(tmp_path / "models", tiny_models, flux_models)
    return tmp_path


def _rss() -> int:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed blocks back to the OS, so RSS shows what is still held
    except OSError:
        pass
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def test_switching_sd1_and_flux_does_not_leak(app):
    app.options.set({"sd_checkpoints_limit": 1})  # every switch loads from disk and drops the other model
    names = ["tiny-a", "flux1-dev-tiny"]
    loads = app.models.file_loads
    after_two = None
    for i in range(20):
        model = app.models.load(names[i % 2])
        assert model.info.path.stem == names[i % 2]
        del model
        if i == 1:
            after_two = _rss()
    after_twenty = _rss()
    assert app.models.file_loads - loads >= 19 and len(app.models.cached_titles()) == 1
    assert after_twenty <= after_two * 1.05, (after_two, after_twenty)


def test_system_reports_each_cached_model(app, client):
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny-a"}).status_code == 200
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "flux1-dev-tiny"}).status_code == 200
    report = client.get("/easel/v1/system").json()
    by_family = {m["family"]: m for m in report["models"]}
    flux, sd = by_family["flux"], by_family["sd1"]
    assert flux["active"] and not sd["active"] and report["model"] == flux["title"]
    assert flux["variant"] == "flux-dev" and flux["label"] == "FLUX.1 dev" and flux["quantization"] is None
    flow = "bf16" if app.models.policy.cpu_bf16 else "fp32"  # DevicePolicy.flow_dtype on this CPU
    assert flux["dtypes"]["transformer"] == flow and flux["dtypes"]["text_encoder_2"] == flow
    assert flux["dtypes"]["vae"] == "fp32" and set(flux["dtypes"]) >= {"text_encoder", "text_encoder_2", "vae"}
    assert flux["modules"] == ["ae", "clip_l", "t5xxl_fp16"] and flux["offload"] == "none"
    assert flux["bytes_ram"] > 4_000_000 and flux["bytes_device"] == 0  # the T5 alone is 32128 × 32 × 4 bytes
    assert sd["dtypes"].get("unet") and sd["bytes_ram"] > 0 and sd["variant"] is None


@pytest.mark.parametrize("no_half", [False, True])
def test_flow_weights_stay_bf16_in_ram_on_a_bf16_cpu(make_app, data_dir, no_half):
    """Issue #18: bf16 files stay bf16 in RAM, the compute dtype follows the device policy: on a CPU with native
    bf16 the FLUX transformer and its text encoders load in bf16 (fp32 doubled the RAM), the VAE stays fp32;
    --no-half, or a CPU without native bf16, loads them in fp32. Same seed, same pixels in either."""
    import torch
    from fastapi.testclient import TestClient
    from safetensors.torch import load_file

    from webui.api.server import build_fastapi
    from webui.models.device import cpu_has_native_bf16

    app = make_app("--nowebui", *(["--no-half"] if no_half else []))
    want = torch.bfloat16 if cpu_has_native_bf16() and not no_half else torch.float32
    assert app.models.policy.flow_dtype == want
    body = {"prompt": "a red circle", "steps": 2, "width": 64, "height": 64, "seed": 5, "cfg_scale": 1}
    body["override_settings"] = {"sd_model_checkpoint": "flux1-dev-tiny"}
    with TestClient(build_fastapi(app)) as c:
        images = [c.post("/sdapi/v1/txt2img", json=body).json()["images"][0] for _ in range(2)]
    assert images[0] == images[1]
    pipe = app.models.active.pipeline
    assert {p.dtype for p in pipe.transformer.parameters()} == {want}
    assert pipe.text_encoder.dtype == want and pipe.text_encoder_2.dtype == want and pipe.vae.dtype == torch.float32
    stored = load_file(str(data_dir / "models" / "Stable-diffusion" / "flux1-dev-tiny.safetensors"))
    stored_bytes = sum(t.numel() * 2 for t in stored.values())  # as bf16, as BFL ships FLUX
    ram = sum(p.numel() * p.element_size() for p in pipe.transformer.parameters())
    assert ram <= stored_bytes * (1.05 if want == torch.bfloat16 else 2.1), (ram, stored_bytes)
