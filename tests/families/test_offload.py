"""Offloading (#18 Memory: --medvram, --lowvram, the "GPU weights" budget) on diffusers' model CPU offload and
group offloading, for an SD 1.x UNet pipeline and a FLUX transformer pipeline.

There is no GPU here, so the one test-only step is the policy's offload device: RAM, as a GPU policy has it (a CPU
policy has none, and offloads nothing). Everything after it is production: the budget setting through the options
API, the plan, diffusers' hooks, the txt2img API, /easel/v1/system. On the CPU the weights stay in the same memory,
so the pixels must be bit-identical (tolerance 0) in every mode."""

from __future__ import annotations

import ctypes
import gc
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.families.conftest import merge_models
from tests.families.test_flux import _txt2img
from webui.models.memory_report import COMPONENTS, module_bytes
from webui.models.offload import OffloadPlan, group_blocks, group_resident, plan_offload, weights_on_device

pytestmark = pytest.mark.filterwarnings("ignore")
MODELS = ["tiny-a", "flux1-dev-tiny"]


@pytest.fixture(scope="module")
def gguf_models(tmp_path_factory):
    from tests.factories_gguf import write_flux_gguf

    root = tmp_path_factory.mktemp("offload-gguf")
    write_flux_gguf(root, "Q4_0", twin=False)  # the transformer only: the parts come from flux_models
    return root


@pytest.fixture
def data_dir(request, tmp_path, tiny_models, flux_models, gguf_models):
    """SD 1.x with FLUX (split and GGUF), or with SD 3.5 (its parts share FLUX's file names, so never both)."""
    callspec = getattr(request.node, "callspec", None)
    sd3 = callspec is not None and str(callspec.params.get("model", "")).startswith("sd35")
    merge_models(
        tmp_path / "models",
        tiny_models,
        *([request.getfixturevalue("sd3_models")] if sd3 else [flux_models, gguf_models]),
    )
    if not sd3:
        from tests.families.lora_factory import write_flux_diffusers

        write_flux_diffusers(tmp_path / "models" / "Lora" / "flux_peft.safetensors")
    return tmp_path


def _offload_app(make_app, offload: str = "none"):
    app = make_app("--nowebui", start=False)
    # the test-only step: RAM as the offload device of the CPU (choose_policy gives a GPU policy one)
    app.policy = app.models.policy = replace(app.policy, offload=offload, offload_device=torch.device("cpu"))
    app.start(wait_for_model=True)
    return app


@pytest.fixture
def client(make_app):
    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    app = _offload_app(make_app)
    with TestClient(build_fastapi(app)) as c:
        c.app_ = app
        yield c


def _budget(client, mb: int) -> None:
    r = client.post("/sdapi/v1/options", json={"gpu_weights_mb": mb})
    assert r.status_code == 200, r.text


def _report(client, name: str) -> dict:
    title = client.app_.catalog.find(name).title
    return next(m for m in client.get("/easel/v1/system").json()["models"] if m["title"] == title)


def _parts(pipe) -> list[torch.nn.Module]:
    return [m for n in COMPONENTS if isinstance(m := getattr(pipe, n, None), torch.nn.Module)]


def _group_hook(module) -> bool:
    registry = getattr(module, "_diffusers_hook", None)
    return registry is not None and registry.get_hook("group_offloading") is not None


def _hooked(pipe) -> list[str]:
    """Parts of the pipeline that carry any offloading hook (accelerate's or diffusers' group offloading)."""
    names = []
    for name in COMPONENTS:
        module = getattr(pipe, name, None)
        if module is None:
            continue
        for sub in module.modules():
            registry = getattr(sub, "_diffusers_hook", None)
            if hasattr(sub, "_hf_hook") or (registry is not None and registry.get_hook("group_offloading")):
                names.append(name)
                break
    return names


@pytest.mark.parametrize("model", [*MODELS, "flux1-dev-tiny-Q4_0", "sd35_medium_tiny"])
def test_offload_modes_give_the_same_pixels(client, model):
    app = client.app_
    base, _ = _txt2img(client, model)
    pipe = app.models.active.pipeline
    sizes = {n: module_bytes(m) for n in COMPONENTS if (m := getattr(pipe, n, None)) is not None}
    largest, total = math.ceil(max(sizes.values()) / 2**20), sum(sizes.values()) / 2**20
    assert largest < total  # a budget between them offloads whole parts
    for budget, mode in [(largest, "model"), (1, "group"), (math.ceil(total) + 1, "none")]:
        _budget(client, budget)
        images, _ = _txt2img(client, model)
        report = _report(client, model)
        assert (report["offload"], report["offload_plan"]["mode"]) == (mode, mode), (budget, report)
        assert f"GPU weights {budget} MB" in report["offload_plan"]["reason"]
        assert (len(_hooked(pipe)) > 0) == (mode != "none")
        if mode == "group":  # each block of each part is its own group (text encoders' nested layers too)
            assert all(_group_hook(b) for m in _parts(pipe) for b in group_blocks(m)), model
        np.testing.assert_array_equal(images[0], base[0])  # tolerance 0: bit-identical


def test_a_lora_loaded_under_group_offloading(client):
    """diffusers' LoRA loader re-applies group offloading over the new layers: the same pixels as without it."""
    lora = "a red circle <lora:flux_peft:1>"
    _budget(client, 1)
    base_group, _ = _txt2img(client, "flux1-dev-tiny")
    lora_group, info = _txt2img(client, "flux1-dev-tiny", prompt=lora)  # the adapter is first loaded here
    assert "flux_peft" in info["infotexts"][0] and _report(client, "flux1-dev-tiny")["offload"] == "group"
    _budget(client, 0)
    lora_none, _ = _txt2img(client, "flux1-dev-tiny", prompt=lora)
    base_none, _ = _txt2img(client, "flux1-dev-tiny")
    assert _report(client, "flux1-dev-tiny")["offload"] == "none"
    assert not np.array_equal(lora_none[0], base_none[0])
    np.testing.assert_array_equal(lora_group[0], lora_none[0])
    np.testing.assert_array_equal(base_group[0], base_none[0])


def test_lowvram_and_medvram_policies_offload_both_families(make_app, data_dir):
    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    for flag_mode in ("group", "model"):
        app = _offload_app(make_app, flag_mode)
        with TestClient(build_fastapi(app)) as c:
            c.app_ = app
            for model in MODELS:
                images, _ = _txt2img(c, model)
                report = _report(c, model)
                assert report["offload"] == flag_mode and report["active"]
                assert report["offload_plan"]["reason"] == {"group": "--lowvram", "model": "--medvram"}[flag_mode]
            # the model that left the device is back in RAM without hooks
            other = _report(c, MODELS[0])
            assert other["offload"] == "none" and not other["active"]
            assert _hooked(app.models._cache[other["title"]].pipeline) == []
        app.stop()


def _rss() -> int:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def test_switching_modes_is_undone_and_does_not_leak(client):
    app = client.app_
    _txt2img(client, "flux1-dev-tiny")
    pipe = app.models.active.pipeline
    params = {n: p for n, p in pipe.transformer.named_parameters()}
    after_first = None
    for i in range(5):
        for budget in (7, 1, 0):  # model, group, none (no flag: the budget 0 means all on the device)
            _budget(client, budget)
            _txt2img(client, "flux1-dev-tiny")
        assert _hooked(pipe) == [] and _report(client, "flux1-dev-tiny")["offload"] == "none"
        if i == 1:
            after_first = _rss()
    assert {n: p for n, p in pipe.transformer.named_parameters()} == params  # the same Parameter objects
    assert _rss() <= after_first * 1.05


def test_plan_from_the_budget():
    from diffusers import FluxTransformer2DModel

    from tests.factories_families import FLUX_TINY, tiny_flux_pipeline

    pipe = tiny_flux_pipeline()
    cpu = torch.device("cpu")
    assert plan_offload("model", 0, pipe, offload_device=None, stream=False).mode == "none"  # no GPU
    assert plan_offload("group", 0, pipe, offload_device=cpu, stream=True) == OffloadPlan("group", 1, True, "--lowvram")
    # the text encoders' layers are found where transformers nests them (T5: encoder.block, CLIP: text_model.encoder)
    assert group_blocks(pipe.text_encoder_2) == list(pipe.text_encoder_2.encoder.block)
    assert group_blocks(pipe.text_encoder) == list(
        getattr(pipe.text_encoder, "text_model", pipe.text_encoder).encoder.layers
    )
    # a transformer whose blocks outweigh the rest (128 wide, 1 + 6 blocks): the budget buys blocks per group
    pipe.transformer = FluxTransformer2DModel(
        **{**FLUX_TINY, "attention_head_dim": 64, "axes_dims_rope": (8, 28, 28), "num_single_layers": 6}
    )
    on_device = [weights_on_device(pipe, OffloadPlan("group", n)) for n in (1, 2, 3)]
    budget_mb = math.ceil(on_device[1] / 2**20)
    assert on_device[0] < on_device[1] <= budget_mb * 2**20 < on_device[2]
    plan = plan_offload("none", budget_mb, pipe, offload_device=cpu, stream=False)
    assert (plan.mode, plan.blocks_per_group, plan.stream) == ("group", 2, False)
    assert plan.label == "group (2 blocks per group)" and f"about {on_device[1] / 2**20:.0f} MB" in plan.reason
    streamed = plan_offload("none", budget_mb, pipe, offload_device=cpu, stream=True)  # diffusers: 1 block with streams
    assert (streamed.mode, streamed.blocks_per_group, streamed.stream) == ("group", 1, True)
    assert weights_on_device(pipe, streamed) == module_bytes(pipe.vae) + max(
        group_resident(m, 1, True) for m in (pipe.transformer, pipe.text_encoder, pipe.text_encoder_2)
    )


def test_hostile_budgets_are_refused_and_nothing_is_saved(client, data_dir):
    config = data_dir / "config.json"
    before = config.read_text() if config.exists() else None
    values = ["-1", '"NaN"', "NaN", "Infinity", '"Infinity"', "1000000000", "1e12", '"../1"', "null", "[1]", "9" * 5000]
    for value in values:  # raw JSON bodies: NaN and Infinity as Python's json writes them too
        r = client.post(
            "/sdapi/v1/options", content=f'{{"gpu_weights_mb": {value}}}', headers={"content-type": "application/json"}
        )
        # a 5000-digit number is past Python's int parsing limit: the body itself is refused (400)
        assert r.status_code == (400 if len(value) > 4300 else 422) and isinstance(r.json(), dict), (value, r.text)
        assert (config.read_text() if config.exists() else None) == before
    assert client.app_.options.get("gpu_weights_mb") == 0


def test_flags_map_onto_the_modes(monkeypatch):
    from webui.models.device import choose_policy

    cpu = choose_policy(use_cpu=["all"], medvram=True)
    assert (cpu.offload, cpu.offload_device) == ("none", None) and "nothing to offload to" in cpu.note
    # what a CUDA machine reports (only the detection is patched: choose_policy allocates nothing on the device)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    for flags, mode in (({"lowvram": True}, "group"), ({"medvram": True}, "model"), ({}, "none")):
        gpu = choose_policy(**flags)
        assert (gpu.device.type, gpu.offload, gpu.offload_device) == ("cuda", mode, torch.device("cpu"))


def test_speed_presets_over_group_offloading(client):
    """Step caching and token merging put their own diffusers hooks on the UNet's blocks per job, beside the group
    offloading hooks: the same pixels as without offloading, and the offloading hooks outlive the job's."""
    r = client.post("/sdapi/v1/options", json={"step_cache_interval": 2, "token_merging_ratio": 0.5})
    assert r.status_code == 200, r.text
    base, info = _txt2img(client, "tiny-a", steps=4)
    assert "Step cache: 2" in info["infotexts"][0] and "Token merging ratio: 0.5" in info["infotexts"][0]
    _budget(client, 1)
    group, _ = _txt2img(client, "tiny-a", steps=4)
    assert _report(client, "tiny-a")["offload"] == "group"
    np.testing.assert_array_equal(group[0], base[0])
    _budget(client, 0)
    again, _ = _txt2img(client, "tiny-a", steps=4)
    np.testing.assert_array_equal(again[0], base[0])
    assert _hooked(client.app_.models.active.pipeline) == []
