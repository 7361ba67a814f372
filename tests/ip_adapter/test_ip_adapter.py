"""IP-Adapter (built-in extension ip_adapter): a tiny adapter in the released file layout, written for the tiny SD
UNet, and a tiny CLIP image encoder folder; weight 0 is the plain image bit for bit, weight 1 changes it, a mask
confines it, the UNet is restored after the job, files missing or hostile values are 4xx."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

ENC_DIM = 16


def write_tiny_adapter(path, seed: int = 0):
    """image_proj.proj/norm and ip_adapter.<1,3,5…>.to_k_ip/to_v_ip for every cross-attention of the tiny UNet, in
    the order diffusers walks them."""
    from safetensors.torch import save_file

    from tests.factories import tiny_components

    unet = tiny_components(0)[0]
    cross, blocks = unet.config.cross_attention_dim, list(unet.config.block_out_channels)
    g = torch.Generator().manual_seed(seed)
    state = {
        "image_proj.proj.weight": torch.randn(cross * 4, ENC_DIM, generator=g),
        "image_proj.proj.bias": torch.zeros(cross * 4),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    key = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = blocks[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(blocks))[int(name[len("up_blocks.")])]
        else:
            hidden = blocks[int(name[len("down_blocks.")])]
        for kv in ("k", "v"):
            state[f"ip_adapter.{key}.to_{kv}_ip.weight"] = torch.randn(hidden, cross, generator=g) * 2
        key += 2
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


def write_tiny_encoder(folder):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=1,
            num_attention_heads=2,
            projection_dim=ENC_DIM,
        )
    ).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def ip_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ipa")
    write_tiny_adapter(root / "ipadapter" / "ip-adapter_tiny.safetensors")
    write_tiny_encoder(root / "clip_vision" / "tiny-vision")
    return root


@pytest.fixture
def ip_client(make_app, data_dir, ip_files):
    import shutil

    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    for sub in ("ipadapter", "clip_vision"):
        shutil.copytree(ip_files / sub, data_dir / "models" / sub)
    app = make_app("--nowebui")
    with TestClient(build_fastapi(app)) as c:
        c.easel_app = app
        yield c


def _b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _prompt_image() -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))


BASE = {"prompt": "a house", "steps": 3, "seed": 5, "width": 64, "height": 64, "sampler_name": "Euler"}


def _gen(client, **units) -> np.ndarray:
    body = dict(BASE)
    if units:
        body["alwayson_scripts"] = {"IP-Adapter": {"args": list(units.values())}}
    r = client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    return np.asarray(
        Image.open(io.BytesIO(base64.b64decode(data["images"][0]))).convert("RGB"), dtype=np.int16
    ), json.loads(data["info"])["infotexts"][0]


def _unit(**kw):
    return {"enabled": True, "image": _b64(_prompt_image()), "model": "ip-adapter_tiny", "weight": 1.0, **kw}


def test_weight_zero_is_the_plain_image_weight_one_changes_it_and_the_unet_is_restored(ip_client):
    plain, plain_info = _gen(ip_client)
    zero, _ = _gen(ip_client, u=_unit(weight=0))
    assert np.array_equal(plain, zero)
    one, info = _gen(ip_client, u=_unit())
    assert np.abs(one - plain).mean() > 2
    assert 'IP-Adapter 0: "model: ip-adapter_tiny, weight: 1, mask: False"' in info
    assert "IP-Adapter" not in plain_info
    again, _ = _gen(ip_client)  # the adapter was unloaded after its call: the UNet is as before
    assert np.array_equal(plain, again)
    unet = ip_client.easel_app.models.active.pipeline.unet
    assert unet.encoder_hid_proj is None
    assert not any("IPAdapter" in type(p).__name__ for p in unet.attn_processors.values())


def test_a_mask_confines_the_image_prompt(ip_client):
    """The adapter's attention output is multiplied by the mask: black everywhere is the plain image bit for bit,
    white everywhere is the unmasked one, half a mask is neither. (Pixels can't show locality on the tiny UNet: its
    8×8 latent and self-attention mix everything within one step.)"""
    plain, _ = _gen(ip_client)
    full, _ = _gen(ip_client, u=_unit())
    black, white = Image.new("L", (64, 64), 0), Image.new("L", (64, 64), 255)
    left = Image.new("L", (64, 64), 0)
    left.paste(255, (0, 0, 32, 64))
    assert np.array_equal(_gen(ip_client, u=_unit(mask=_b64(black)))[0], plain)
    assert np.array_equal(_gen(ip_client, u=_unit(mask=_b64(white)))[0], full)
    half, info = _gen(ip_client, u=_unit(mask=_b64(left)))
    assert not np.array_equal(half, plain) and not np.array_equal(half, full)
    assert "mask: True" in info


def test_guidance_start_end_window(ip_client):
    """3 steps at fractions 0, 1/3, 2/3: a [0.9, 1) window covers none (the plain image, bit for bit), [0, 0.5) the
    first two (neither plain nor the full-time image)."""
    plain, _ = _gen(ip_client)
    full, _ = _gen(ip_client, u=_unit())
    assert np.array_equal(_gen(ip_client, u=_unit(guidance_start=0.9, guidance_end=1.0))[0], plain)
    early, info = _gen(ip_client, u=_unit(guidance_start=0.0, guidance_end=0.5))
    assert not np.array_equal(early, plain) and not np.array_equal(early, full)
    assert "start: 0, end: 0.5" in info
    again, _ = _gen(ip_client, u=_unit())  # the scale is set again at the start of every call
    assert np.array_equal(again, full)


def test_sd_webui_controlnet_unit_route(ip_client):
    """sd-webui-controlnet clients send IP-Adapter as a ControlNet unit: the same pixels as the IP-Adapter script;
    a ControlNet unit of another module beside it is still ControlNet's (here: disabled, so no effect)."""
    full, _ = _gen(ip_client, u=_unit())
    cn_unit = {
        "enabled": True,
        "module": "ip-adapter_clip_sd15",
        "model": "ip-adapter_tiny [0123abcd]",
        "weight": 1.0,
        "image": _b64(_prompt_image()),
    }
    body = {**BASE, "alwayson_scripts": {"controlnet": {"args": [{"enabled": False, "module": "none"}, cn_unit]}}}
    r = ip_client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 200, r.text
    got = np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0]))).convert("RGB"), dtype=np.int16)
    assert np.array_equal(got, full)
    bad = {**body, "alwayson_scripts": {"controlnet": {"args": [{**cn_unit, "model": "ip-adapter_sd15"}]}}}
    r = ip_client.post("/sdapi/v1/txt2img", json=bad)
    assert r.status_code == 422 and "models/ipadapter" in r.text
    plain, _ = _gen(ip_client)  # the next job without units runs without the adapter
    off = {**body, "alwayson_scripts": {"controlnet": {"args": [{**cn_unit, "enabled": False}]}}}
    r = ip_client.post("/sdapi/v1/txt2img", json=off)
    got = np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0]))).convert("RGB"), dtype=np.int16)
    assert np.array_equal(got, plain)


def test_missing_files_name_their_folders(client, ip_client):
    r = ip_client.post(
        "/sdapi/v1/txt2img",
        json={**BASE, "alwayson_scripts": {"IP-Adapter": {"args": [_unit(model="ip-adapter_sd15")]}}},
    )
    assert r.status_code == 422 and "models/ipadapter" in r.text
    ip_client.post("/sdapi/v1/options", json={"ip_adapter_image_encoder": "nope"})
    r = ip_client.post("/sdapi/v1/txt2img", json={**BASE, "alwayson_scripts": {"IP-Adapter": {"args": [_unit()]}}})
    assert r.status_code == 422 and "models/clip_vision" in r.text
    assert ip_client.get("/ext/ip_adapter/models").json() == {
        "models": ["ip-adapter_tiny.safetensors"],
        "image_encoders": ["tiny-vision"],
    }
    ip_client.post("/sdapi/v1/options", json={"ip_adapter_image_encoder": ""})
    from safetensors.torch import save_file

    folder = ip_client.easel_app.paths.models_dir / "ipadapter"
    save_file(
        {"image_proj.proj.weight": torch.zeros(128, ENC_DIM), "ip_adapter.1.to_k_ip.weight": torch.zeros(32, 32)},
        str(folder / "other-family.safetensors"),
    )
    (folder / "junk.safetensors").write_bytes(b"not safetensors")
    for name, why in (("other-family", "attention layers"), ("junk", "not a readable safetensors")):
        r = ip_client.post(
            "/sdapi/v1/txt2img", json={**BASE, "alwayson_scripts": {"IP-Adapter": {"args": [_unit(model=name)]}}}
        )
        assert r.status_code == 422 and why in r.text, r.text


@pytest.mark.parametrize(
    "unit",
    [
        {"weight": 1e9},
        {"weight": -1},
        {"weight": "1"},
        {"image": "not base64"},
        {"image": ""},
        {"model": "../../etc/passwd"},
        {"model": "/etc/passwd"},
        {"mask": "AAAA"},
        {"model": None},
        {"guidance_start": 0.6, "guidance_end": 0.5},
        {"guidance_end": 1e9},
        {"guidance_start": -0.1},
    ],
    ids=[
        "huge",
        "negative",
        "str",
        "junk-image",
        "no-image",
        "dotdot",
        "abs",
        "bad-mask",
        "no-model",
        "window",
        "end-huge",
        "start-negative",
    ],
)
def test_hostile_units_are_4xx_json(ip_client, unit):
    r = ip_client.post(
        "/sdapi/v1/txt2img", json={**BASE, "steps": 1, "alwayson_scripts": {"IP-Adapter": {"args": [_unit(**unit)]}}}
    )
    assert 400 <= r.status_code < 500 and r.headers["content-type"].startswith("application/json"), r.text
    body = '{"prompt": "x", "alwayson_scripts": {"IP-Adapter": {"args": [{"enabled": true, "weight": NaN}]}}}'
    r = ip_client.post("/sdapi/v1/txt2img", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500
    assert ip_client.get("/ext/ip_adapter/models").status_code == 200


def test_accordion_units_combine_to_the_api_dict_and_generate(ip_client):
    import gradio as gr

    from webui.ui.scripts_ui import build_scripts_ui

    app = ip_client.easel_app
    with gr.Blocks():
        scripts = build_scripts_ui(app, "txt2img")
    slot = next(s for s in scripts.slots if s.title == "IP-Adapter")
    group = slot.args[0].components
    assert [c.elem_id for c in group] == [
        f"txt2img_ip_adapter_unit_0_{k}"
        for k in ("enabled", "image", "model", "weight", "mask", "guidance_start", "guidance_end")
    ]
    unit = slot.args[0].combine(True, _prompt_image(), "ip-adapter_tiny.safetensors", 1.0, None, 0.0, 1.0)
    json.dumps(unit)  # stored in the history as JSON
    assert unit["enabled"] and unit["image"] and unit["mask"] is None
    via_ui, _ = _gen(ip_client, u=unit)
    via_api, _ = _gen(ip_client, u=_unit(model="ip-adapter_tiny.safetensors"))
    assert np.array_equal(via_ui, via_api)


def test_a_mask_confines_the_adapter_to_its_region_of_the_latent(ip_client):
    """Locality where it can be seen: the first cross-attention of the first step gets the same input with and
    without the adapter (nothing before it differs), so its output's difference is the adapter's part alone. With a
    left-half mask that part is exactly zero on the right half of the 8×8 latent and not on the left half."""
    unet = ip_client.easel_app.models.active.pipeline.unet
    attn = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2
    seen: list[torch.Tensor] = []
    handle = attn.register_forward_hook(lambda module, args, out: seen.append(out.detach().clone()))
    left = Image.new("L", (64, 64), 0)
    left.paste(255, (0, 0, 32, 64))
    try:
        _gen(ip_client)
        plain = seen[0]
        seen.clear()
        _gen(ip_client, u=_unit(mask=_b64(left)))
        masked = seen[0]
    finally:
        handle.remove()
    side = int(plain.shape[1] ** 0.5)  # tokens of the latent at this block, row by row
    diff = (masked - plain).abs().reshape(plain.shape[0], side, side, -1)
    assert side == 8 and diff[:, :, side // 2 :].max() == 0  # right half: untouched, bit for bit
    assert diff[:, :, : side // 2].mean() > 1e-3  # left half: the image prompt acts


def test_a_single_file_image_encoder_as_comfyui_keeps_it(make_app, data_dir, ip_files, tmp_path):
    """models/clip_vision/<name>.safetensors in transformers' key layout (ComfyUI's and Forge's files): its config is
    read from the shapes and it gives the same embeddings as the same weights loaded as a folder; the same pixels
    as with the folder; a file of another layout is refused with the reason."""
    import shutil

    from fastapi.testclient import TestClient
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(1)  # 128 wide: heads of 64 (2) and gelu, what the shapes imply for an unknown width
    model = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            image_size=32,
            patch_size=8,
            hidden_size=128,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=2,
            projection_dim=ENC_DIM,
            hidden_act="gelu",
        )
    ).eval()
    folder = tmp_path / "folder-encoder"
    model.save_pretrained(str(folder))
    vision = data_dir / "models" / "clip_vision"
    vision.mkdir(parents=True)
    shutil.copy(folder / "model.safetensors", vision / "CLIP-tiny.safetensors")
    save_file({"visual.proj": torch.zeros(2, 2)}, str(vision / "open_clip_layout.safetensors"))
    adapter = _adapter_lib()
    assert [p.name for p in adapter.encoder_paths(data_dir / "models")] == [
        "CLIP-tiny.safetensors",
        "open_clip_layout.safetensors",
    ]
    single = adapter.Encoder.load(vision / "CLIP-tiny.safetensors")
    assert single.model.config.num_hidden_layers == 2 and single.model.config.image_size == 32
    image = _prompt_image()
    assert torch.equal(single.embed(image), adapter.Encoder.load(folder).embed(image))
    from webui.extensions.api import ScriptError

    with pytest.raises(ScriptError, match="not a CLIP vision encoder in transformers' layout"):
        adapter.Encoder.load(vision / "open_clip_layout.safetensors")
    # through a generation, picked by the setting
    shutil.copytree(ip_files / "ipadapter", data_dir / "models" / "ipadapter")
    from webui.api.server import build_fastapi

    app = make_app("--nowebui")
    with TestClient(build_fastapi(app)) as c:
        r = c.post("/sdapi/v1/options", json={"ip_adapter_image_encoder": "CLIP-tiny.safetensors"})
        assert r.status_code == 200, r.text
        plain, _ = _gen(c)
        one, info = _gen(c, u=_unit())
        assert np.abs(one - plain).mean() > 2 and "ip-adapter_tiny" in info


def _adapter_lib():
    """The extension's lib/adapter.py, loaded by file as the extension loads it."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "extensions" / "ip_adapter" / "lib" / "adapter.py"
    name = "ip_adapter_lib_adapter_test"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclasses look their module up while being defined
        spec.loader.exec_module(module)
    return sys.modules[name]
