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


def test_system_reports_each_cached_model(client):
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny-a"}).status_code == 200
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "flux1-dev-tiny"}).status_code == 200
    report = client.get("/easel/v1/system").json()
    by_family = {m["family"]: m for m in report["models"]}
    flux, sd = by_family["flux"], by_family["sd1"]
    assert flux["active"] and not sd["active"] and report["model"] == flux["title"]
    assert flux["variant"] == "flux-dev" and flux["label"] == "FLUX.1 dev" and flux["quantization"] is None
    assert flux["dtypes"]["transformer"] == "fp32" and set(flux["dtypes"]) >= {"text_encoder", "text_encoder_2", "vae"}
    assert flux["modules"] == ["ae", "clip_l", "t5xxl_fp16"] and flux["offload"] == "none"
    assert flux["bytes_ram"] > 4_000_000 and flux["bytes_device"] == 0  # the T5 alone is 32128 × 32 × 4 bytes
    assert sd["dtypes"].get("unet") and sd["bytes_ram"] > 0 and sd["variant"] is None
