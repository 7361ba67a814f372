"""A1111's merge metadata, bake-in VAE, discard weights and config copy, through the API."""

from __future__ import annotations

import json

import torch
from safetensors.torch import save_file

from tests.factories import tiny_components
from tests.merge.conftest import A, B, merge, merged, read_all
from webui.models.hashing import legacy_model_hash, sha256_file
from webui.models.ldm_keys import VAE_PREFIX, to_ldm_state_dict

RECIPE_FIELDS = {
    "type",
    "primary_model_hash",
    "secondary_model_hash",
    "tertiary_model_hash",
    "interp_method",
    "multiplier",
    "save_as_half",
    "custom_name",
    "config_source",
    "bake_in_vae",
    "discard_weights",
    "is_inpainting",
    "is_instruct_pix2pix",
}


def test_metadata_is_a1111s(client, app, ckpt):
    folder, _, _ = ckpt
    _, meta, _ = merged(client, app, primary=A, secondary=B, multiplier=0.25, name="meta")
    _, meta_a = read_all(folder / A)
    assert meta["format"] == "pt"
    assert meta["easel.config"] == meta_a["easel.config"]  # A's hyperparameters travel with the merge
    recipe = json.loads(meta["sd_merge_recipe"])
    assert set(recipe) == RECIPE_FIELDS
    sha_a, sha_b = sha256_file(folder / A), sha256_file(folder / B)
    assert recipe == {
        "type": "webui",
        "primary_model_hash": sha_a,
        "secondary_model_hash": sha_b,
        "tertiary_model_hash": None,
        "interp_method": "Weighted sum",
        "multiplier": 0.25,
        "save_as_half": False,
        "custom_name": "meta",
        "config_source": 0,
        "bake_in_vae": "None",
        "discard_weights": "",
        "is_inpainting": False,
        "is_instruct_pix2pix": False,
    }
    models = json.loads(meta["sd_merge_models"])
    assert models == {
        sha_a: {"name": "tiny-a.safetensors", "legacy_hash": legacy_model_hash(folder / A), "sd_merge_recipe": None},
        sha_b: {
            "name": "sub/tiny-b.safetensors",
            "legacy_hash": legacy_model_hash(folder / B),
            "sd_merge_recipe": None,
        },
    }


def test_metadata_keeps_the_merge_history(client, app, ckpt):
    """Merging a merge: its entry carries its recipe, and the models it came from are listed too (as A1111)."""
    folder, _, _ = ckpt
    _, first, _ = merged(client, app, primary=A, secondary=B, name="first")
    _, meta, _ = merged(client, app, primary="first", method="no_interpolation", name="second")
    models = json.loads(meta["sd_merge_models"])
    sha_first = sha256_file(folder / "first.safetensors")
    assert set(models) == {sha_first, sha256_file(folder / A), sha256_file(folder / B)}
    assert models[sha_first]["sd_merge_recipe"] == json.loads(first["sd_merge_recipe"])
    assert json.loads(meta["sd_merge_recipe"])["interp_method"] == "No interpolation"


def test_discard_weights_drops_matching_tensors(client, app, ckpt):
    _, ta, _ = ckpt
    pattern = r"^first_stage_model\.decoder\.|attn2"
    out, meta, _ = merged(client, app, primary=A, secondary=B, name="pruned", discard_weights=pattern)
    import re

    dropped = {k for k in ta if re.search(pattern, k)}
    assert dropped and set(out) == set(ta) - dropped
    assert json.loads(meta["sd_merge_recipe"])["discard_weights"] == pattern


def test_bad_discard_patterns_are_refused_before_queueing(client, app, ckpt):
    folder, _, _ = ckpt
    for pattern, words in (
        ("(unclosed", "not a valid regular expression"),
        (r"^(\w|\w\w|\.)*\d\d\d$", "takes too long"),  # catastrophic backtracking
        (".", "matches every tensor"),
        ("x" * 257, ""),
    ):
        r = client.post(
            "/easel/v1/merge", json={"primary": A, "secondary": B, "name": "bad", "discard_weights": pattern}
        )
        assert r.status_code == 422, (pattern, r.text)
        assert words in r.json()["detail"] or words in json.dumps(r.json()), r.json()
    assert not (folder / "bad.safetensors").exists()
    assert app.jobs.completed == 1  # only the initial model load ran: nothing was queued


def _vae_state(seed: int, **kw) -> dict[str, torch.Tensor]:
    """A standalone VAE file's tensors, in the LDM names A1111's VAE files use (no first_stage_model. prefix)."""
    unet, vae, te = tiny_components(seed, **kw)
    sd = to_ldm_state_dict(unet, vae, te)
    return {k[len(VAE_PREFIX) :]: v for k, v in sd.items() if k.startswith(VAE_PREFIX)}


def test_bake_in_vae_replaces_first_stage_model(client, app, ckpt):
    _, ta, tb = ckpt
    vae = _vae_state(seed=7)
    save_file(vae, str(app.paths.vae_dir / "baked.safetensors"))
    torch.save({"state_dict": _vae_state(seed=8)}, str(app.paths.vae_dir / "legacy.pt"))
    m = 0.5
    out, meta, _ = merged(
        client, app, primary=A, secondary=B, multiplier=m, name="vae1", bake_in_vae="baked.safetensors"
    )
    for key, a in ta.items():
        if key.startswith(VAE_PREFIX):
            assert torch.equal(out[key], vae[key[len(VAE_PREFIX) :]]), key
        elif key.startswith("model.diffusion_model."):
            assert torch.equal(out[key], (1 - m) * a + m * tb[key]), key
    assert json.loads(meta["sd_merge_recipe"])["bake_in_vae"] == "baked.safetensors"
    out2, _, _ = merged(
        client, app, primary=A, method="no_interpolation", name="vae2", bake_in_vae="legacy.pt", save_as_half=True
    )  # a .pt VAE, read by the weights-only loader
    legacy = _vae_state(seed=8)
    assert all(torch.equal(out2[VAE_PREFIX + k], v.half()) for k, v in legacy.items())


def test_a_vae_that_does_not_fit_is_refused(client, app, ckpt):
    save_file(_vae_state(seed=1, vae_channels=(32, 64, 64, 64)), str(app.paths.vae_dir / "other.safetensors"))
    r = client.post("/easel/v1/merge", json={"primary": A, "secondary": B, "name": "x", "bake_in_vae": "other"})
    assert r.status_code == 422 and "does not fit" in r.json()["detail"], r.text
    r = client.post("/easel/v1/merge", json={"primary": A, "secondary": B, "name": "x", "bake_in_vae": "nope.pt"})
    assert r.status_code == 404 and "VAE not found" in r.json()["detail"]


def test_config_beside_a_checkpoint_is_copied(client, app, ckpt):
    folder, _, _ = ckpt
    (folder / "sub" / "tiny-b.yaml").write_text("model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n")
    view = merge(client, primary=A, secondary=B, name="with-config")  # A has none, B has one: "A, B or C"
    assert (folder / "with-config.yaml").read_text() == (folder / "sub" / "tiny-b.yaml").read_text()
    merge(client, primary=A, secondary=B, name="no-config", config_source=3)  # "Don't"
    assert not (folder / "no-config.yaml").exists()
    merge(client, primary=A, secondary=B, name="from-c", config_source=2)  # "C": weighted sum has no C
    assert not (folder / "from-c.yaml").exists()
    assert view["status"] == "done"
