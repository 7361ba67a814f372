"""ControlNets under offloading (#18 Memory): a ControlNet is cached apart from the checkpoint and joins its pipeline
for one call (pipeline_over), so it follows the checkpoint's offloading for that call (PipelineCall.follow_offload):
its own accelerate hook under model CPU offload, the denoiser's group offloading under group offloading, and no
hooks once the call ends. As in test_offload.py the one test-only step is RAM as the CPU's offload device; on the
CPU the weights stay in the same memory, so the pixels must be bit-identical to no offloading (tolerance 0)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.controlnet.conftest import b64, square, tiny_controlnet
from tests.controlnet.flow_models import tiny_flux_controlnet
from tests.families.conftest import merge_models
from tests.families.test_flux import _txt2img
from tests.families.test_offload import _budget, _offload_app, _report
from webui.models.memory_report import COMPONENTS, module_bytes

pytestmark = pytest.mark.filterwarnings("ignore")
CONTROLNETS = ("ControlNetModel", "FluxControlNetModel")


@pytest.fixture
def data_dir(tmp_path, tiny_models, flux_models):
    from tests.factories import tiny_components

    models = tmp_path / "models"
    merge_models(models, tiny_models, flux_models)
    tiny_controlnet(tiny_components(0)[0], 1).save_pretrained(models / "ControlNet" / "tiny-canny")
    tiny_flux_controlnet(1).save_pretrained(models / "ControlNet" / "tiny-flux")
    return tmp_path


def _hooks(module) -> str:
    from diffusers.hooks.group_offloading import _is_group_offload_enabled

    if _is_group_offload_enabled(module):
        return "group"
    return "model" if hasattr(module, "_hf_hook") else "none"


class Seen:
    """What each ControlNet forward finds on its module (a global forward pre-hook, removed after the test)."""

    def __init__(self):
        self.modes: set[str] = set()
        self.modules: dict[int, torch.nn.Module] = {}

    def __call__(self, module, args):
        if type(module).__name__ in CONTROLNETS:
            self.modes.add(_hooks(module))
            self.modules[id(module)] = module


def _controlled(client, model: str, cn: str):
    unit = {"enabled": True, "module": "canny", "model": cn, "image": b64(square()), "weight": 1.0}
    cfg = 1 if model.startswith("flux") else 5
    return _txt2img(client, model, cfg_scale=cfg, alwayson_scripts={"controlnet": {"args": [unit]}})


@pytest.mark.parametrize(("model", "cn"), [("tiny-a", "tiny-canny"), ("flux1-dev-tiny", "tiny-flux")])
def test_controlnet_follows_the_offload_mode_with_the_same_pixels(make_app, model, cn):
    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    app = _offload_app(make_app)
    with TestClient(build_fastapi(app)) as client:
        client.app_ = app
        plain, _ = _txt2img(client, model, cfg_scale=1 if model.startswith("flux") else 5)
        seen = Seen()
        handle = torch.nn.modules.module.register_module_forward_pre_hook(seen)
        try:
            base, _ = _controlled(client, model, cn)
            assert not np.array_equal(base[0], plain[0])  # the ControlNet counts
            assert seen.modes == {"none"}
            pipe = app.models.active.pipeline
            sizes = [module_bytes(m) for n in COMPONENTS if (m := getattr(pipe, n, None)) is not None]
            for budget, mode in [(math.ceil(max(sizes) / 2**20), "model"), (1, "group"), (0, "none")]:
                _budget(client, budget)
                seen.modes.clear()
                images, info = _controlled(client, model, cn)
                assert _report(client, model)["offload"] == mode
                assert "ControlNet 0" in info["infotexts"][0]
                assert seen.modes == {mode}, (budget, seen.modes)  # hooked during the call
                assert {_hooks(m) for m in seen.modules.values()} == {"none"}  # and not after it
                np.testing.assert_array_equal(images[0], base[0])  # tolerance 0: bit-identical
                if mode == "model":  # the checkpoint's chain is re-made after the call, as after its own calls
                    chain = list(pipe._all_hooks)  # held, so no id is reused
                    _controlled(client, model, cn)
                    assert chain and not any(h is old for h in pipe._all_hooks for old in chain)
        finally:
            handle.remove()


def test_lowvram_policy_covers_the_controlnet(make_app):
    """The --lowvram policy (group offloading without a budget) on FLUX: the same pixels as the plan's own tests,
    the ControlNet grouped during the call and free of hooks after it."""
    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    app = _offload_app(make_app, "group")
    with TestClient(build_fastapi(app)) as client:
        client.app_ = app
        seen = Seen()
        handle = torch.nn.modules.module.register_module_forward_pre_hook(seen)
        try:
            images, _ = _controlled(client, "flux1-dev-tiny", "tiny-flux")
        finally:
            handle.remove()
        report = _report(client, "flux1-dev-tiny")
        assert (report["offload"], report["offload_plan"]["reason"]) == ("group", "--lowvram")
        assert seen.modes == {"group"} and {_hooks(m) for m in seen.modules.values()} == {"none"}
        _budget(client, 10**4)  # a budget every part fits in wins over the flag: no offloading
        plain, _ = _controlled(client, "flux1-dev-tiny", "tiny-flux")
        assert _report(client, "flux1-dev-tiny")["offload"] == "none"
        np.testing.assert_array_equal(images[0], plain[0])
