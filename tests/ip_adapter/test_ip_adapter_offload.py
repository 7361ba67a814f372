"""IP-Adapter under group offloading (#18 Memory, --lowvram or the GPU weights budget): diffusers' loader adds the
image projection and the IP attention layers to the offloaded UNet in place, and group offloading is made over the
layers present, so they are added to its groups for the call (PipelineCall.refresh_offload) and taken out after it.
As in tests/families/test_offload.py the one test-only step is RAM as the CPU's offload device; on the CPU the
weights stay in the same memory, so the pixels must be bit-identical to no offloading."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from tests.families.test_offload import _budget, _offload_app
from tests.ip_adapter.test_ip_adapter import _gen, _unit, ip_files  # noqa: F401 (a fixture)

pytestmark = pytest.mark.filterwarnings("ignore")


def _grouped(unet) -> set[int]:
    """ids of the modules in the UNet's group offloading groups (the top-level group holds its loose children)."""
    from diffusers.hooks.group_offloading import _GROUP_OFFLOADING

    found: set[int] = set()
    for sub in unet.modules():
        registry = getattr(sub, "_diffusers_hook", None)
        hook = registry.get_hook(_GROUP_OFFLOADING) if registry is not None else None
        if hook is not None:
            found |= {id(m) for group_module in hook.group.modules for m in group_module.modules()}
    return found


def test_ip_adapter_layers_join_the_groups_for_the_call(make_app, data_dir, ip_files):  # noqa: F811
    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    for sub in ("ipadapter", "clip_vision"):
        shutil.copytree(ip_files / sub, data_dir / "models" / sub)
    app = _offload_app(make_app)
    with TestClient(build_fastapi(app)) as client:
        client.app_ = app
        base, _ = _gen(client, u=_unit())
        _budget(client, 1)
        unet = app.models.active.pipeline.unet
        seen: list[bool] = []

        def check(module, args):  # the adapter's image projection, when the UNet runs it
            if type(module).__name__ == "MultiIPAdapterImageProjection":
                seen.append(id(module) in _grouped(unet))

        handle = torch.nn.modules.module.register_module_forward_pre_hook(check)
        try:
            grouped, _ = _gen(client, u=_unit())
        finally:
            handle.remove()
        active = next(m for m in client.get("/easel/v1/system").json()["models"] if m["active"])
        assert active["offload"] == "group"
        assert seen and all(seen)
        np.testing.assert_array_equal(grouped, base)
        # after the call: the adapter is gone, and so are its layers from the groups
        assert unet.encoder_hid_proj is None and _grouped(unet)
        assert not any("IPAdapter" in type(p).__name__ for p in unet.attn_processors.values())
        plain_group, _ = _gen(client)
        _budget(client, 0)
        np.testing.assert_array_equal(_gen(client)[0], plain_group)
