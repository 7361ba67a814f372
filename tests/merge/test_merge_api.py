"""The merge as an outside client sees it: a job with progress, the new checkpoint listed without a restart and
usable for generation, and every hostile or impossible request refused with a 4xx JSON body before anything runs."""

from __future__ import annotations

import base64
import io
import os

import pytest

from tests.factories import write_tiny_checkpoint, write_tiny_sd2_checkpoint, write_tiny_sdxl_checkpoint
from tests.merge.conftest import A, B, add_checkpoint, merge, read_all


def test_job_flow_lists_the_new_checkpoint_and_it_generates(client, app, ckpt):
    folder, _, _ = ckpt
    before = {m["title"] for m in client.get("/sdapi/v1/sd-models").json()}
    r = client.post(
        "/easel/v1/merge",
        json={
            "primary": A,
            "secondary": B,
            "method": "weighted_sum",
            "multiplier": 0.5,
            "name": "blend",
            "save_as_half": True,
        },
    )
    assert r.status_code == 202 and r.json()["status"] in ("queued", "running")
    job_id = r.json()["id"]
    from tests.merge.conftest import wait_job

    view = wait_job(client, job_id)
    assert view["kind"] == "merge" and view["status"] == "done" and view["progress"] == 1.0
    assert view["params"]["primary"] == A and view["params"]["multiplier"] == 0.5
    assert view["result"]["name"] == "blend.safetensors"
    assert view["result"]["path"] == str(folder / "blend.safetensors")
    job = app.jobs.get(job_id)
    assert job.control.sampling_steps == len(read_all(folder / "blend.safetensors")[0])  # progress = tensors
    models = client.get("/sdapi/v1/sd-models").json()
    new = [m for m in models if m["title"] not in before]
    assert [m["model_name"] for m in new] == ["blend"]  # listed without a restart or a refresh call
    assert not [p for p in os.listdir(folder) if p.endswith(".tmp")]  # no temp file left behind
    # the merged file loads through the production loader and generates
    r = client.post(
        "/sdapi/v1/txt2img",
        json={
            "prompt": "a red square",
            "steps": 2,
            "width": 64,
            "height": 64,
            "override_settings": {"sd_model_checkpoint": new[0]["title"]},
        },
    )
    assert r.status_code == 200, r.text
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))
    assert image.size == (64, 64)
    assert "Model: blend" in r.json()["info"]


def test_history_keeps_the_result(client, app, ckpt):
    view = merge(client, primary=A, secondary=B, name="kept")
    row = app.history.get(view["id"])
    assert row["status"] == "done" and row["result"]["name"] == "kept.safetensors"


@pytest.mark.parametrize("writer,label", [(write_tiny_sdxl_checkpoint, "SDXL"), (write_tiny_sd2_checkpoint, "SD 2.x")])
def test_mixed_families_are_refused(client, app, ckpt, writer, label):
    folder, _, _ = ckpt
    add_checkpoint(app, "other.safetensors", writer, seed=3)
    for body in (
        {"primary": A, "secondary": "other"},
        {"primary": A, "secondary": B, "tertiary": "other", "method": "add_difference"},
    ):
        r = client.post("/easel/v1/merge", json={**body, "name": "mixed"})
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert "different families" in detail and "SD 1.x" in detail and label in detail, detail
    assert not (folder / "mixed.safetensors").exists()


@pytest.mark.parametrize(
    "writer,key",
    [
        (write_tiny_sdxl_checkpoint, "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"),
        (write_tiny_sd2_checkpoint, "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"),
    ],
)
def test_other_families_merge_too(client, app, ckpt, writer, key):
    """Every family the model manager knows merges through the same code, text towers included."""
    add_checkpoint(app, "f-a.safetensors", writer, seed=1)
    add_checkpoint(app, "f-b.safetensors", writer, seed=2)
    ta, tb = (read_all(app.paths.ckpt_dir / f"f-{s}.safetensors")[0] for s in "ab")
    view = merge(client, primary="f-a", secondary="f-b", multiplier=0.5, name="f-mix")
    assert view["status"] == "done", view
    out = read_all(app.paths.ckpt_dir / "f-mix.safetensors")[0]
    assert set(out) == set(ta) and key in out and out[key].equal(0.5 * ta[key] + 0.5 * tb[key])
    unet = "model.diffusion_model.out.2.weight"
    assert out[unet].equal(0.5 * ta[unet] + 0.5 * tb[unet])


def test_mismatched_shapes_are_refused(client, app, ckpt):
    add_checkpoint(app, "wide.safetensors", write_tiny_checkpoint, seed=3, unet_channels=(64, 64))
    r = client.post("/easel/v1/merge", json={"primary": A, "secondary": "wide", "name": "shapes"})
    assert r.status_code == 422 and "shapes differ" in r.json()["detail"], r.text
    add_checkpoint(app, "inp.safetensors", write_tiny_checkpoint, seed=4, in_channels=9)
    r = client.post("/easel/v1/merge", json={"primary": A, "secondary": "inp", "name": "shapes"})
    assert r.status_code == 422 and "must be the primary" in r.json()["detail"], r.text


def test_an_existing_file_is_never_replaced(client, app, ckpt):
    folder, ta, _ = ckpt
    before = (folder / A).read_bytes()
    for name in ("tiny-a", "tiny-a.safetensors"):
        r = client.post("/easel/v1/merge", json={"primary": A, "method": "no_interpolation", "name": name})
        assert r.status_code == 409 and "already exists" in r.json()["detail"], r.text
    # unnamed No interpolation is named after A by A1111, so it would overwrite A: refused too
    r = client.post("/easel/v1/merge", json={"primary": A, "method": "no_interpolation"})
    assert r.status_code == 409
    assert (folder / A).read_bytes() == before


def test_unnamed_merge_gets_a1111s_name(client, app, ckpt):
    view = merge(client, primary=A, secondary=B, multiplier=0.3)
    assert view["result"]["name"] == "0.7(tiny-a) + 0.3(sub_tiny-b).safetensors"


HOSTILE_NAMES = [
    "../evil",
    "..",
    "/tmp/evil",
    "sub/evil",
    "a\\b",
    ".hidden",
    "x" * 101,
    "nul\x00byte",
    "CON",
    "a..b",
    "tab\there",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_output_names_are_refused(client, app, ckpt, name):
    folder, _, _ = ckpt
    r = client.post("/easel/v1/merge", json={"primary": A, "secondary": B, "name": name})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/json") and r.json()["detail"]
    assert sorted(p.name for p in folder.iterdir()) == ["sub", "tiny-a.safetensors"]


@pytest.mark.parametrize(
    "body,status",
    [
        ({"primary": "../../../etc/passwd", "secondary": B}, 404),
        ({"primary": "/etc/passwd", "secondary": B}, 404),
        ({"primary": A, "secondary": "/proc/self/environ"}, 404),
        ({"primary": A, "secondary": B, "bake_in_vae": "../../models/Stable-diffusion/tiny-a.safetensors"}, 404),
        ({"primary": A}, 422),  # weighted sum needs B
        ({"primary": A, "secondary": B, "method": "add_difference"}, 422),  # needs C
        ({"primary": A, "secondary": B, "method": "Weighted sum"}, 422),
        ({"primary": A, "secondary": B, "multiplier": 1.5}, 422),
        ({"primary": A, "secondary": B, "multiplier": -0.1}, 422),
        ({"primary": A, "secondary": B, "multiplier": "1e309"}, 422),
        ({"primary": A, "secondary": B, "config_source": 7}, 422),
        ({"primary": A, "secondary": B, "unknown": 1}, 422),
        ({"primary": "", "secondary": B}, 422),
        ({"primary": "x" * 501, "secondary": B}, 422),
        ({"primary": ["a"], "secondary": B}, 422),
    ],
)
def test_hostile_requests_are_4xx_json(client, app, body, status):
    r = client.post("/easel/v1/merge", json={"name": "hostile", **body})
    assert r.status_code == status, r.text
    assert r.json()["detail"]
    assert not (app.paths.ckpt_dir / "hostile.safetensors").exists()


def test_nan_multiplier_is_refused(client):
    for raw in (
        b'{"primary": "tiny-a", "secondary": "tiny-b", "multiplier": NaN}',
        b'{"primary": "tiny-a", "secondary": "tiny-b", "multiplier": Infinity}',
    ):
        r = client.post("/easel/v1/merge", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
