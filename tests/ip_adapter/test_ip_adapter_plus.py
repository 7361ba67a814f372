"""IP-Adapter Plus (ip-adapter-plus_sd15 and kin): a tiny adapter in the released file layout (the Resampler as
`image_proj.latents/proj_in/layers.<i>.0.*/layers.<i>.1.*/proj_out/norm_out`, `ip_adapter.<n>.to_k_ip/to_v_ip`) for
the tiny SD UNet, fed the tiny CLIP image encoder's penultimate hidden states through the production path."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.ip_adapter.test_ip_adapter import BASE, _b64, _prompt_image, write_tiny_adapter, write_tiny_encoder

HIDDEN = 32  # the tiny encoder's hidden width (write_tiny_encoder): what the Resampler's proj_in takes
QUERIES = 6


def write_tiny_plus_adapter(path, seed: int = 0, latents_seed: int | None = None):
    """The Resampler of IP-Adapter Plus in the original key layout (4 layers, heads of 64 as diffusers reads them),
    and the same to_k_ip/to_v_ip as the base tiny adapter. `latents_seed` draws other learned queries only."""
    from safetensors.torch import load_file, save_file

    from tests.factories import tiny_components

    cross = tiny_components(0)[0].config.cross_attention_dim
    dim, inner, mult = 64, 64, 4  # heads of 64 and a 4× feed-forward: what diffusers builds
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    proj = {
        "latents": rnd(1, QUERIES, dim, scale=1.0),
        "proj_in.weight": rnd(dim, HIDDEN),
        "proj_in.bias": torch.zeros(dim),
        "proj_out.weight": rnd(cross, dim),
        "proj_out.bias": torch.zeros(cross),
        "norm_out.weight": torch.ones(cross),
        "norm_out.bias": torch.zeros(cross),
    }
    for i in range(4):
        p = f"layers.{i}."
        proj |= {
            p + "0.norm1.weight": torch.ones(dim),
            p + "0.norm1.bias": torch.zeros(dim),
            p + "0.norm2.weight": torch.ones(dim),
            p + "0.norm2.bias": torch.zeros(dim),
            p + "0.to_q.weight": rnd(inner, dim),
            p + "0.to_kv.weight": rnd(inner * 2, dim),
            p + "0.to_out.weight": rnd(dim, inner),
            p + "1.0.weight": torch.ones(dim),
            p + "1.0.bias": torch.zeros(dim),
            p + "1.1.weight": rnd(dim * mult, dim),
            p + "1.3.weight": rnd(dim, dim * mult),
        }
    if latents_seed is not None:
        proj["latents"] = torch.randn(1, QUERIES, dim, generator=torch.Generator().manual_seed(latents_seed))
    base = load_file(str(write_tiny_adapter(path.with_name("base-for-plus.safetensors"), seed=seed)))
    path.with_name("base-for-plus.safetensors").unlink()
    state = {k: v for k, v in base.items() if k.startswith("ip_adapter.")}
    state |= {f"image_proj.{k}": v for k, v in proj.items()}
    save_file(state, str(path))
    return path


@pytest.fixture(scope="module")
def plus_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ipa-plus")
    write_tiny_plus_adapter(root / "ipadapter" / "ip-adapter-plus_tiny.safetensors")
    write_tiny_plus_adapter(root / "ipadapter" / "ip-adapter-plus_other-queries.safetensors", latents_seed=9)
    write_tiny_adapter(root / "ipadapter" / "ip-adapter_tiny.safetensors")
    write_tiny_encoder(root / "clip_vision" / "tiny-vision")
    return root


@pytest.fixture
def plus_client(make_app, data_dir, plus_files):
    import shutil

    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    for sub in ("ipadapter", "clip_vision"):
        shutil.copytree(plus_files / sub, data_dir / "models" / sub)
    app = make_app("--nowebui")
    with TestClient(build_fastapi(app)) as c:
        c.easel_app = app
        yield c


def _gen(client, *units, route="IP-Adapter"):
    body = dict(BASE)
    if units:
        body["alwayson_scripts"] = {route: {"args": list(units)}}
    r = client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    image = Image.open(io.BytesIO(base64.b64decode(data["images"][0]))).convert("RGB")
    return np.asarray(image, dtype=np.int16), json.loads(data["info"])["infotexts"][0]


def _unit(**kw):
    return {"enabled": True, "image": _b64(_prompt_image()), "model": "ip-adapter-plus_tiny", "weight": 1.0, **kw}


def test_plus_weight_zero_is_plain_weight_one_changes_it_through_the_resampler(plus_client):
    """Weight 0: the plain image bit for bit; weight 1 changes it; another set of learned queries (`latents`, a
    Resampler weight only) gives another image, so the Resampler is what projects the image (the plain projection
    has no latents); during the call the UNet holds diffusers' IPAdapterPlusImageProjection fed [n, 1, tokens,
    hidden] penultimate hidden states; the UNet is restored after the job."""
    from diffusers.models.embeddings import IPAdapterPlusImageProjection

    unet = plus_client.easel_app.models.active.pipeline.unet
    seen: list = []
    plain, plain_info = _gen(plus_client)
    assert np.array_equal(_gen(plus_client, _unit(weight=0))[0], plain)
    original_forward = IPAdapterPlusImageProjection.forward

    def forward(self, x):
        seen.append(tuple(x.shape))
        return original_forward(self, x)

    IPAdapterPlusImageProjection.forward = forward  # type: ignore[method-assign]
    try:
        one, info = _gen(plus_client, _unit())
    finally:
        IPAdapterPlusImageProjection.forward = original_forward  # type: ignore[method-assign]
    assert np.abs(one - plain).mean() > 2
    tokens = (32 // 8) ** 2 + 1  # the tiny encoder's patches + CLS
    assert seen and seen[0] == (2, tokens, HIDDEN)  # [negative, positive] hidden states, all tokens, hidden width
    other, _ = _gen(plus_client, _unit(model="ip-adapter-plus_other-queries"))
    assert not np.array_equal(other, one) and not np.array_equal(other, plain)
    assert 'IP-Adapter 0: "model: ip-adapter-plus_tiny, weight: 1, mask: False"' in info
    assert "IP-Adapter" not in plain_info
    assert np.array_equal(_gen(plus_client)[0], plain)  # unloaded after its call
    assert unet.encoder_hid_proj is None
    assert not any("IPAdapter" in type(p).__name__ for p in unet.attn_processors.values())


def test_plus_and_base_together_and_the_controlnet_module_route(plus_client):
    """A Plus and a base adapter in one call (diffusers' MultiIPAdapterImageProjection with both kinds); the
    sd-webui-controlnet route with its Plus module name gives the same pixels as the script's unit."""
    plain, _ = _gen(plus_client)
    plus, _ = _gen(plus_client, _unit())
    both, info = _gen(plus_client, _unit(), _unit(model="ip-adapter_tiny"))
    assert not np.array_equal(both, plus) and not np.array_equal(both, plain)
    assert "IP-Adapter 1: " in info
    cn = {"module": "ip-adapter_clip_sd15", "model": "ip-adapter-plus_tiny [0123abcd]"}
    via_cn, _ = _gen(plus_client, _unit(**cn), route="controlnet")
    assert np.array_equal(via_cn, plus)


def test_plus_needs_the_hidden_width_of_its_encoder(plus_client, plus_files):
    """A Plus adapter whose proj_in takes another width than the encoder's hidden states is refused with both
    widths named (not a size mismatch inside diffusers)."""
    from safetensors.torch import load_file, save_file

    folder = plus_client.easel_app.paths.models_dir / "ipadapter"
    state = load_file(str(folder / "ip-adapter-plus_tiny.safetensors"))
    state["image_proj.proj_in.weight"] = torch.zeros(64, HIDDEN * 2)
    save_file(state, str(folder / "ip-adapter-plus_wide.safetensors"))
    r = plus_client.post(
        "/sdapi/v1/txt2img",
        json={**BASE, "alwayson_scripts": {"IP-Adapter": {"args": [_unit(model="ip-adapter-plus_wide")]}}},
    )
    assert r.status_code == 422 and "64-wide hidden states" in r.text and f"gives {HIDDEN}" in r.text, r.text


def write_full_face_adapter(path, hidden: int, seed: int = 0):
    """ip-adapter-full-face_sd15's layout: image_proj.proj.0 (hidden → hidden), proj.2 (→ cross), proj.3 (LayerNorm)."""
    from safetensors.torch import load_file, save_file

    from tests.factories import tiny_components

    cross = tiny_components(0)[0].config.cross_attention_dim
    g = torch.Generator().manual_seed(seed)
    tmp = write_tiny_adapter(path.with_name("base-for-full.safetensors"), seed=seed)
    state = {k: v for k, v in load_file(str(tmp)).items() if k.startswith("ip_adapter.")}
    tmp.unlink()
    state |= {
        "image_proj.proj.0.weight": torch.randn(hidden, hidden, generator=g) * 0.2,
        "image_proj.proj.0.bias": torch.zeros(hidden),
        "image_proj.proj.2.weight": torch.randn(cross, hidden, generator=g) * 0.2,
        "image_proj.proj.2.bias": torch.zeros(cross),
        "image_proj.proj.3.weight": torch.ones(cross),
        "image_proj.proj.3.bias": torch.zeros(cross),
    }
    save_file(state, str(path))
    return path


def test_full_face_takes_257_hidden_state_tokens(plus_client):
    """Full Face with an encoder of 16² patches + CLS (as ViT-H/14 at 224 px) and 48-wide hidden states (picked
    among the encoders by that width): weight 0 bit for bit, weight 1 changes; an encoder of another token count is
    refused (diffusers would take the wrong tokens as the image's)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    models = plus_client.easel_app.paths.models_dir
    torch.manual_seed(2)
    CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            image_size=32,
            patch_size=2,
            hidden_size=48,
            intermediate_size=37,
            num_hidden_layers=1,
            num_attention_heads=2,
            projection_dim=16,
        )
    ).save_pretrained(str(models / "clip_vision" / "vision-257"))
    write_full_face_adapter(models / "ipadapter" / "ip-adapter-full-face_tiny.safetensors", hidden=48)
    write_full_face_adapter(models / "ipadapter" / "ip-adapter-full-face_narrow.safetensors", hidden=HIDDEN)
    plain, _ = _gen(plus_client)
    assert np.array_equal(_gen(plus_client, _unit(model="ip-adapter-full-face_tiny", weight=0))[0], plain)
    one, info = _gen(plus_client, _unit(model="ip-adapter-full-face_tiny"))
    assert np.abs(one - plain).mean() > 2 and "ip-adapter-full-face_tiny" in info
    r = plus_client.post(
        "/sdapi/v1/txt2img",
        json={**BASE, "alwayson_scripts": {"IP-Adapter": {"args": [_unit(model="ip-adapter-full-face_narrow")]}}},
    )
    assert r.status_code == 422 and "takes 257 image tokens" in r.text and "gives 17" in r.text, r.text


def test_the_infotext_pastes_back_to_the_same_image(plus_client):
    """Round trip: the infotext's `IP-Adapter 0` (model, weight, start/end) pasted back (PNG Info, Send-to) gives
    the unit's fields; with the image prompt given again (an infotext holds no image) the unit the UI combines makes
    the same pixels. The other units are disabled; an infotext without IP-Adapter changes nothing."""
    import importlib

    from webui.infotext import parse_infotext

    first, info = _gen(plus_client, _unit(weight=0.75, guidance_end=0.5))
    assert 'IP-Adapter 0: "model: ip-adapter-plus_tiny, weight: 0.75, mask: False, start: 0, end: 0.5"' in info
    _, script = plus_client.easel_app.extensions.find_script("IP-Adapter", "txt2img")
    pasted = script.paste(parse_infotext(info), False)
    assert pasted["unit_0"] == [True, None, "ip-adapter-plus_tiny.safetensors", 0.75, None, 0.0, 0.5]
    assert pasted["unit_1"][0] is False
    assert script.paste(parse_infotext("p\nSteps: 3, Seed: 1"), False) == {}
    ui = importlib.import_module(type(script).__module__.rsplit(".", 2)[0] + ".lib.ui")
    values = list(pasted["unit_0"])
    values[1] = _prompt_image()
    again, _ = _gen(plus_client, ui.combine(*values))
    assert np.array_equal(again, first)


def test_a_pickled_adapter_is_named_as_such(plus_client):
    """h94's .bin / sd-webui-controlnet's .pth downloads are pickles: a unit naming one is told why it isn't used
    (nothing is unpickled: the file here isn't even a valid pickle)."""
    models = plus_client.easel_app.paths.models_dir
    (models / "ipadapter" / "ip-adapter-faceid_sd15.bin").write_bytes(b"not read")
    (models / "ControlNet").mkdir(exist_ok=True)
    (models / "ControlNet" / "ip-adapter_sd15_plus.pth").write_bytes(b"not read")
    for name in ("ip-adapter-faceid_sd15", "ip-adapter_sd15_plus.pth [abcd]"):
        r = plus_client.post(
            "/sdapi/v1/txt2img", json={**BASE, "alwayson_scripts": {"IP-Adapter": {"args": [_unit(model=name)]}}}
        )
        assert r.status_code == 422 and "is a pickle, which Easel does not load" in r.text, r.text
