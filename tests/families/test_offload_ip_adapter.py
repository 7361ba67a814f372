"""IP-Adapter under group offloading (#18 Memory, --lowvram or the GPU weights budget): diffusers' loader adds the
image projection and the IP attention layers to the offloaded denoiser (SD 1.x UNet, FLUX.1 transformer) in place,
and group offloading is made over the layers present, so they are added to its groups for the call
(PipelineCall.refresh_offload) and taken out after it. As in test_offload.py the one test-only step is RAM as the
CPU's offload device; on the CPU the weights stay in the same memory, so the pixels must be bit-identical to no
offloading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.families.test_flux_ip_adapter import _image, _run, data_dir  # noqa: F401 (data_dir: a fixture)
from tests.families.test_offload import _budget, _offload_app
from tests.ip_adapter.test_ip_adapter import _b64, _prompt_image

pytestmark = pytest.mark.filterwarnings("ignore")


def _grouped(denoiser) -> set[int]:
    """ids of the modules in the denoiser's group offloading groups (the top-level group holds its loose children)."""
    from diffusers.hooks.group_offloading import _GROUP_OFFLOADING

    found: set[int] = set()
    for sub in denoiser.modules():
        registry = getattr(sub, "_diffusers_hook", None)
        hook = registry.get_hook(_GROUP_OFFLOADING) if registry is not None else None
        if hook is not None:
            found |= {id(m) for group_module in hook.group.modules for m in group_module.modules()}
    return found


@pytest.mark.parametrize(("model", "adapter"), [("tiny-a", "ip-adapter_tiny"), ("flux1-dev-tiny", "flux-ip-adapter")])
def test_ip_adapter_layers_join_the_groups_for_the_call(make_app, model, adapter):
    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    unit = {"enabled": True, "image": _b64(_prompt_image()), "model": adapter, "weight": 1.0}
    app = _offload_app(make_app)
    with TestClient(build_fastapi(app)) as client:
        base, _ = _image(_run(client, unit, model=model))
        _budget(client, 1)
        pipe = app.models.active.pipeline
        denoiser = getattr(pipe, "unet", None) or pipe.transformer
        seen: list[bool] = []

        def check(module, args):  # the adapter's image projection, when the denoiser runs it
            if type(module).__name__ == "MultiIPAdapterImageProjection":
                seen.append(id(module) in _grouped(denoiser))

        handle = torch.nn.modules.module.register_module_forward_pre_hook(check)
        try:
            grouped, _ = _image(_run(client, unit, model=model))
        finally:
            handle.remove()
        active = next(m for m in client.get("/easel/v1/system").json()["models"] if m["active"])
        assert active["offload"] == "group"
        assert seen and all(seen)
        np.testing.assert_array_equal(grouped, base)
        # after the call: the adapter is gone, and so are its layers from the groups
        assert denoiser.encoder_hid_proj is None and _grouped(denoiser)
        assert not any("IPAdapter" in type(p).__name__ for p in denoiser.attn_processors.values())
        plain_group, _ = _image(_run(client, model=model))
        _budget(client, 0)
        np.testing.assert_array_equal(_image(_run(client, model=model))[0], plain_group)
