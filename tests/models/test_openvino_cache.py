"""The OpenVINO backend's disk cache (#21; webui/models/openvino_cache.py, setting `openvino_cache_mb`), on the tiny
SD 1.x checkpoints through the Application: least recently used IRs go when the folder is over its budget, never the
one in use; interrupted conversions are cleaned at start; a checkpoint without a hash replaced under the same name is
converted again; hostile budgets are 422."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.factories import write_tiny_checkpoint
from webui.generation.requests import Txt2ImgRequest
from webui.models import openvino_backend as ovb
from webui.models import openvino_cache as cache

pytest.importorskip("openvino", reason="openvino is not installed (pip install --no-deps -r requirements-openvino.txt)")


def _job(app, prompt: str = "a red circle", **overrides):
    req = Txt2ImgRequest(prompt=prompt, steps=2, seed=5, override_settings={"cpu_backend": "openvino", **overrides})
    res = app.jobs.wait(app.submit_txt2img(req, from_api=True))
    return np.asarray(res.images[0]).astype(np.int16), res.infotexts[0]


def _key(app) -> str:
    hook = ovb.hook_of(app.models.active.pipeline.unet)
    assert hook is not None
    return hook.model_key


def _sizes(folder) -> dict[str, int]:
    return {e.key: e.size for e in cache.entries(folder)}


def test_least_recently_used_irs_go_never_the_one_in_use(make_app):
    from tests.lora.factory import write_kohya

    app = make_app("--nowebui")
    folder = app.models.cache_root.parent / "openvino"
    app.paths.lora_dir.mkdir(parents=True, exist_ok=True)
    write_kohya(app.paths.lora_dir / "tiny_style.safetensors", seed=7, text_encoder=False)
    app.loras.refresh()
    _job(app, sd_model_checkpoint="tiny-a")  # A (tiny-b is the default checkpoint: first in the sorted list)
    a = _key(app)
    assert any(cache.compiled_dir(folder, a).iterdir())  # OpenVINO's compiled blob sits with its IR
    _job(app, sd_model_checkpoint="tiny-b")  # B
    b = _key(app)
    _job(app, sd_model_checkpoint="tiny-a")  # A again: used after B (touched), though converted before it
    assert _key(app) == a and set(_sizes(folder)) == {a, b}
    size = _sizes(folder)[a]
    assert size > 2 * cache.MB  # 0.8M parameters in f32, plus the compiled blob
    budget = math.ceil(2.3 * size / cache.MB)  # two entries fit (the LoRA's IR is a little larger), three don't
    _, info = _job(app, "a red circle <lora:tiny_style:1>", sd_model_checkpoint="tiny-a", openvino_cache_mb=budget)
    c = _key(app)  # C: tiny-a + a LoRA set
    sizes = _sizes(folder)
    assert "CPU backend: openvino" in info
    assert set(sizes) == {a, c}, (budget, sizes)  # B, the least recently used, is gone with its compiled blobs
    assert not (folder / f"{b}.xml").exists() and not (folder / f"{b}.bin").exists()
    assert not cache.compiled_dir(folder, b).exists()
    assert sum(sizes.values()) <= budget * cache.MB
    # a budget smaller than one entry: everything else goes, the entry in use stays (A read back, not converted; a
    # new size compiles, and the compile's blob is checked against the budget too)
    hook = ovb.hook_of(app.models.active.pipeline.unet)
    assert hook is not None
    conversions = hook.conversions
    _job(app, sd_model_checkpoint="tiny-a", openvino_cache_mb=1, width=96, height=96)
    assert set(_sizes(folder)) == {a} and hook.conversions == conversions
    _job(app, sd_model_checkpoint="tiny-a", openvino_cache_mb=1)
    assert set(_sizes(folder)) == {a} and hook.conversions == conversions


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_interrupted_conversions_are_cleaned_at_start(make_app, data_dir):
    folder = data_dir / "cache" / "openvino"
    folder.mkdir(parents=True)
    dead, live = _dead_pid(), os.getppid()  # pytest's parent (the shell) is alive for the whole test
    for pid in (dead, live):
        for ext in ("xml", "bin"):
            (folder / f"0123abcd.{pid}.tmp.{ext}").write_bytes(b"half written")
    (folder / "kept.xml").write_text("<net/>")  # a finished IR (its .bin would be beside it) is no temporary file
    make_app("--nowebui")
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(["kept.xml", f"0123abcd.{live}.tmp.xml", f"0123abcd.{live}.tmp.bin"]), names


def test_a_checkpoint_without_a_hash_replaced_under_its_name_is_converted_again(make_app, data_dir, monkeypatch):
    """The IR key of a checkpoint without a sha256 (the catalog's hashing gave none) is its path with the size and
    mtime_ns it had when it was read: another file under the same name is another IR, not the stale one."""
    from webui.models.hashing import HashCache

    monkeypatch.setattr(HashCache, "get", lambda self, section, key, path, compute: "")  # no hash known
    app = make_app("--nowebui")
    assert app.models.active.info.sha256 == ""
    first, _ = _job(app, cpu_precision="fp32")
    hook = ovb.hook_of(app.models.active.pipeline.unet)
    assert hook is not None and hook.conversions == 1
    path = app.models.active.info.path
    replacement = data_dir / "replacement.safetensors"
    write_tiny_checkpoint(replacement, seed=3)  # other weights, same architecture
    shutil.move(replacement, path)  # same name, same size (same layout): only the mtime tells them apart
    app.models.reload()  # what /sdapi/v1/reload-checkpoint does
    second, info = _job(app, cpu_precision="fp32")
    new_hook = ovb.hook_of(app.models.active.pipeline.unet)
    assert new_hook is not None and new_hook.conversions == 1  # converted, not the first file's IR read back
    assert "CPU backend: openvino" in info and not np.array_equal(first, second)
    torch_img = np.asarray(
        app.jobs.wait(
            app.submit_txt2img(
                Txt2ImgRequest(prompt="a red circle", steps=2, seed=5, override_settings={"cpu_precision": "fp32"}),
                from_api=True,
            )
        ).images[0]
    ).astype(np.int16)
    assert np.abs(second - torch_img).max() <= 1  # the new weights' pixels
    assert len(list((app.models.cache_root.parent / "openvino").glob("*.xml"))) == 2


HOSTILE = [float("nan"), float("inf"), -1, 0, 1e12, 2**22 + 1, "abc", "", None, [20000], {"mb": 1}, "1e400"]


def test_hostile_cache_budgets_are_422_and_nothing_is_saved(client, app):
    for bad in HOSTILE:
        body = json.dumps({"openvino_cache_mb": bad}, allow_nan=True)
        r = client.post("/sdapi/v1/options", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and "detail" in r.json(), (bad, r.text[:300])
        job = {"prompt": "x", "steps": 1, "override_settings": {"openvino_cache_mb": bad}}
        r = client.post(
            "/sdapi/v1/txt2img", content=json.dumps(job, allow_nan=True), headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 422, (bad, r.text[:300])
    f = app.paths.config_file
    assert "openvino_cache_mb" not in (json.loads(f.read_text()) if f.exists() else {})
    assert client.get("/sdapi/v1/options").json()["openvino_cache_mb"] == 20000
    assert client.post("/sdapi/v1/options", json={"openvino_cache_mb": 5000}).status_code == 200
    assert client.get("/sdapi/v1/options").json()["openvino_cache_mb"] == 5000
    assert app.options.defs["openvino_cache_mb"].section == "Optimizations"
