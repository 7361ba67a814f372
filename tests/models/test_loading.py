"""Probe and load checkpoints through the real single-file path; catalog names and hashes; safety; the RAM cache."""

from __future__ import annotations

import hashlib
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from tests.factories import tiny_components
from webui.errors import ModelLoadError, ModelNotFound, UnsafeCheckpoint
from webui.models import loader
from webui.models.families import Family
from webui.models.ldm_keys import to_ldm_state_dict


def test_single_file_round_trip_is_exact(tiny_models, tmp_path):
    """What the LDM export writes, diffusers' single-file loader reads back tensor for tensor."""
    unet, vae, te = tiny_components(seed=0)
    lc = loader.build_from_single_file(tiny_models / "Stable-diffusion" / "tiny-a.safetensors", tmp_path)
    for ours, loaded in ((unet, lc.pipeline.unet), (vae, lc.pipeline.vae), (te, lc.pipeline.text_encoder)):
        a, b = ours.state_dict(), loaded.state_dict()
        assert set(a) == set(b)
        for k in a:
            assert torch.equal(a[k], b[k]), k
    assert lc.probe.family == Family.SD1 and not lc.probe.inpainting
    assert lc.probe.native_size == 64
    assert lc.pipeline.text_encoder.config.num_attention_heads == 4  # from the file's easel.config metadata


def test_probe_builds_full_size_sd15_config_from_shapes():
    """The same probe, fed SD 1.5's real shapes (a meta-device model: no weights), reproduces the published config."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from webui.models.probe import CONFIGS_DIR, load_template, probe

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(load_template("sd15", "unet"))
        vae = AutoencoderKL.from_config(load_template("sd15", "vae"))
        te = CLIPTextModel(CLIPTextConfig.from_dict(load_template("sd15", "text_encoder")))
    sd = to_ldm_state_dict(unet, vae, te)
    result = probe({k: tuple(v.shape) for k, v in sd.items()})
    assert result.family == Family.SD1 and result.native_size == 512
    for component in ("unet", "vae", "text_encoder"):
        template = load_template("sd15", component)
        for key, value in template.items():
            if key.startswith("_") or key in ("sample_size", "architectures"):
                continue
            assert result.configs[component].get(key) == value, (component, key)
    assert CONFIGS_DIR.exists()


def test_nine_channel_unet_is_inpainting(tmp_path):
    from webui.models.ldm_keys import save_a1111_checkpoint
    from tests.factories import TINY_EASEL_CONFIG

    unet, vae, te = tiny_components(seed=3, in_channels=9)
    path = save_a1111_checkpoint(tmp_path / "inp.safetensors", unet, vae, te, easel_config=TINY_EASEL_CONFIG)
    assert loader.probe_file(path).inpainting


def test_hostile_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {"x": Evil()}}, f)
    with pytest.raises(UnsafeCheckpoint, match="evil.ckpt"):
        loader.build_from_single_file(path, tmp_path / "cfg")
    assert not marker.exists()


def test_ckpt_with_plain_tensors_loads(tiny_models, tmp_path):
    from safetensors.torch import load_file

    state = load_file(str(tiny_models / "Stable-diffusion" / "tiny-a.safetensors"))
    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": state}, path)
    (tmp_path / "plain.easel.json").write_text('{"text_encoder": {"num_attention_heads": 4}, "native_size": 64}')
    lc = loader.build_from_single_file(path, tmp_path / "cfg")
    assert tuple(lc.pipeline.unet.config.block_out_channels) == (32, 64)


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}"])
def test_corrupt_files_raise_typed_errors_naming_the_file(tmp_path, content):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match="broken.safetensors"):
        loader.build_from_single_file(path, tmp_path / "cfg")


def test_catalog_titles_hashes_and_names(app, data_dir):
    items = {i.name: i for i in app.catalog.list()}
    assert set(items) == {"tiny-a.safetensors", "sub/tiny-b.safetensors"}
    b = items["sub/tiny-b.safetensors"]
    digest = hashlib.sha256(b.path.read_bytes()).hexdigest()
    assert b.sha256 == digest and b.title == f"sub/tiny-b.safetensors [{digest[:10]}]"
    assert b.model_name == "sub_tiny-b" and b.infotext_name == "tiny-b"
    assert app.catalog.find(digest[:10]) == b and app.catalog.find("sub/tiny-b") == b
    cache = (data_dir / "cache.json").read_text()
    assert digest in cache and "checkpoint/sub/tiny-b.safetensors" in cache


def test_hash_cache_is_used_until_mtime_changes(app, data_dir, monkeypatch):
    from webui.models import catalog as catalog_mod

    calls = []
    monkeypatch.setattr(catalog_mod, "sha256_file", lambda p: calls.append(p) or "0" * 64)
    app.catalog.refresh()
    assert calls == []  # cached by mtime
    p = data_dir / "models" / "Stable-diffusion" / "tiny-a.safetensors"
    import os

    os.utime(p, (p.stat().st_atime, p.stat().st_mtime + 10))
    app.catalog.refresh()
    assert calls == [p]


def test_switching_back_to_a_cached_checkpoint_reads_no_file(app, monkeypatch):
    reads = []
    real = loader.read_state_dict
    monkeypatch.setattr(loader, "read_state_dict", lambda path, *a, **k: reads.append(path) or real(path, *a, **k))
    first = app.models.active.info.title
    other = next(i.title for i in app.catalog.list() if i.title != first)
    app.switch_checkpoint(other)
    assert len(reads) == 1
    app.switch_checkpoint(first)
    app.switch_checkpoint(other)
    assert len(reads) == 1, "a cached checkpoint was read from disk again"
    assert app.options.get("sd_model_checkpoint") == other


def test_cache_limit_evicts_least_recently_used(app):
    app.set_options({"sd_checkpoints_limit": 1})
    titles = [i.title for i in app.catalog.list()]
    app.switch_checkpoint(titles[0])
    app.switch_checkpoint(titles[1])
    assert app.models.cached_titles() == [titles[1]]


def test_corrupt_checkpoint_keeps_previous_model_working(app, data_dir, client):
    bad = data_dir / "models" / "Stable-diffusion" / "zz-broken.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    client.post("/sdapi/v1/refresh-checkpoints")
    before = app.models.active.info.title
    title = next(m["title"] for m in client.get("/sdapi/v1/sd-models").json() if "zz-broken" in m["title"])
    r = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": title})
    assert r.status_code == 400 and "zz-broken.safetensors" in r.json()["detail"]
    assert app.models.active.info.title == before
    ok = client.post("/sdapi/v1/txt2img", json={"prompt": "still works", "steps": 2})
    assert ok.status_code == 200 and len(ok.json()["images"]) == 1


def test_unknown_checkpoint_title_is_404(client):
    r = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "nope.safetensors [0000000000]"})
    assert r.status_code == 404 and r.json()["error"] == "ModelNotFound"


def test_diffusers_folder_is_listed_and_loads(app, data_dir, tmp_path):
    lc = loader.build_from_single_file(data_dir / "models" / "Stable-diffusion" / "tiny-a.safetensors", tmp_path)
    folder = data_dir / "models" / "Stable-diffusion" / "tiny-folder"
    lc.pipeline.save_pretrained(str(folder))
    app.models.refresh()
    info = app.catalog.find("tiny-folder")
    assert info.is_folder and info.title.startswith("tiny-folder [")
    model = app.switch_checkpoint(info.title)
    assert torch.equal(model.pipeline.unet.conv_in.weight, lc.pipeline.unet.conv_in.weight)


def test_missing_checkpoint_dir_is_not_an_error(make_app, data_dir):
    shutil.rmtree(data_dir / "models" / "Stable-diffusion")
    app = make_app("--nowebui", start=False)
    assert app.models.refresh() == []
    with pytest.raises(ModelNotFound):
        app.models.load(None)


def test_ckpt_flag_accepts_a_title_or_a_path_anywhere(make_app, data_dir, tiny_models, tmp_path):
    outside = tmp_path / "elsewhere" / "mine.safetensors"
    outside.parent.mkdir()
    shutil.copy(tiny_models / "Stable-diffusion" / "tiny-a.safetensors", outside)
    app = make_app("--nowebui", "--ckpt", str(outside))
    assert app.models.active.info.path == outside.resolve()
    assert app.options.get("sd_model_checkpoint").startswith("mine.safetensors [")
    app2 = make_app("--nowebui", "--ckpt", "sub/tiny-b")
    assert app2.models.active.info.name == "sub/tiny-b.safetensors"


def test_startup_skips_a_corrupt_first_checkpoint(make_app, data_dir):
    (data_dir / "models" / "Stable-diffusion" / "aaa-broken.safetensors").write_bytes(b"junk")
    app = make_app("--nowebui")
    assert app.models.active is not None and app.models.active.info.name != "aaa-broken.safetensors"
