"""Textual-inversion embeddings: files made here in every supported format, through the catalog into the tiny
model's conditioning and denoise loop; incompatible and hostile files skipped with a reason; TI hashes; the API."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest
import torch

from webui.prompts.chunks import build_chunks, token_count
from webui.prompts.conditioning import build_schedule
from webui.prompts.embeddings import EmbeddingCatalog

WIDTH = 32  # the tiny text encoder's hidden size


@pytest.fixture(scope="module")
def pipe():
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from tests.factories import tiny_components
    from webui.models.tokenizer import load_clip_tokenizer

    unet, vae, te = tiny_components(seed=3)
    with torch.no_grad():  # a trained CLIP's final norm has a bias (see test_conditioning.py)
        te.final_layer_norm.bias.normal_(0.5, 0.1)
    p = StableDiffusionPipeline(
        vae=vae,
        text_encoder=te,
        tokenizer=load_clip_tokenizer(),
        unet=unet,
        scheduler=EulerDiscreteScheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    p.set_progress_bar_config(disable=True)
    return p


class Hostile:
    """Unpickling this runs code that creates `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.fixture
def emb_dir(tmp_path):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    d = tmp_path / "embeddings"
    (d / "sub" / "cat-toy").mkdir(parents=True)
    torch.save(
        {
            "string_to_param": {"*": torch.randn(1, WIDTH, generator=g) * 3},
            "name": "other",
            "step": 7,
            "sd_checkpoint": "0123abcd",
            "sd_checkpoint_name": "tiny",
        },
        d / "zorbo.pt",
    )
    save_file({"emb_params": torch.randn(3, WIDTH, generator=g) * 3}, str(d / "sub" / "triple.safetensors"))
    torch.save({"<cat-toy>": torch.randn(WIDTH, generator=g)}, d / "sub" / "cat-toy" / "learned_embeds.bin")
    old = torch.nn.ParameterDict({"*": torch.nn.Parameter(torch.randn(2, WIDTH, generator=g))})
    torch.save({"string_to_param": old, "step": 1}, d / "oldstyle.pt")  # saved from a ParameterDict (torch 1.11)
    torch.save({"string_to_param": {"*": torch.randn(1, 768)}}, d / "wide.pt")  # an SD 1.x embedding
    save_file({"clip_l": torch.randn(2, 768), "clip_g": torch.randn(2, 1280)}, str(d / "xl.safetensors"))
    torch.save({"string_to_param": {"*": Hostile(tmp_path / "pwned")}}, d / "evil.pt")
    (d / "notes.txt").write_text("not an embedding")
    return d


def encode(pipe, prompt, embeddings=None, steps=4):
    return build_schedule(pipe, [prompt], steps, embeddings=embeddings).at(0)[0]


def test_every_format_is_found_recursively_and_named_by_its_file(pipe, emb_dir):
    loaded, skipped = EmbeddingCatalog(emb_dir).load_for(pipe)
    assert set(loaded) == {"zorbo", "triple", "<cat-toy>", "oldstyle"}
    assert {n: v.shape for n, v in loaded.items()} == {
        "zorbo": (1, WIDTH),
        "triple": (3, WIDTH),
        "<cat-toy>": (1, WIDTH),
        "oldstyle": (2, WIDTH),
    }
    assert set(skipped) == {"wide", "xl", "evil"}


def test_the_word_changes_the_conditioning_and_nothing_else_does(pipe, emb_dir):
    loaded, _ = EmbeddingCatalog(emb_dir).load_for(pipe)
    with_word = encode(pipe, "a photo of zorbo", loaded)
    assert not torch.equal(with_word, encode(pipe, "a photo of zorbo"))
    assert torch.equal(encode(pipe, "a photo of a cat", loaded), encode(pipe, "a photo of a cat"))
    # the word is one position (one vector) in place of its two BPE tokens: "of" is at 3, zorbo at 4, EOS at 5
    chunk = build_chunks(pipe.tokenizer, "a photo of zorbo", words=_words(pipe, loaded))[0][0]
    assert chunk.fixes == [(4, "zorbo", 1)] and chunk.tokens[5] == pipe.tokenizer.eos_token_id
    # its weight applies like any token's
    assert not torch.equal(encode(pipe, "a photo of (zorbo:1.3)", loaded), with_word)


def _words(pipe, loaded):
    from webui.prompts.chunks import EmbeddingWords

    return EmbeddingWords(pipe.tokenizer, {w: v.shape[0] for w, v in loaded.items()})


def test_multi_vector_takes_as_many_positions(pipe, emb_dir):
    catalog = EmbeddingCatalog(emb_dir)
    loaded, _ = catalog.load_for(pipe)
    chunk = build_chunks(pipe.tokenizer, "triple cat", words=_words(pipe, loaded))[0][0]
    assert chunk.fixes == [(1, "triple", 3)]
    counts = catalog.vector_counts(pipe)
    assert token_count(pipe.tokenizer, "triple cat", embeddings=counts) == (4, 75)
    c = encode(pipe, "triple cat", loaded)
    assert c.shape == (77, WIDTH) and not torch.equal(c, encode(pipe, "triple cat"))
    assert not torch.equal(encode(pipe, "<cat-toy> on a table", loaded), encode(pipe, "<cat-toy> on a table"))


def test_the_word_changes_the_generated_output(pipe, emb_dir):
    from webui.generation.conditioning import prepare

    opts = SimpleNamespace(get={"emphasis": "Original", "comma_padding_backtrack": 20, "use_old_scheduling": False}.get)
    loaded, _ = EmbeddingCatalog(emb_dir).load_for(pipe)

    def run(prompt, embeddings):
        cond = prepare(pipe, prompt, "", 2, 1, opts, embeddings=embeddings)
        latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
        out = cond.run(
            pipe,
            1,
            lambda p, i, t, kw: kw,
            num_inference_steps=2,
            guidance_scale=7.0,
            height=64,
            width=64,
            latents=latents,
            output_type="latent",
        ).images
        return out, cond.conditioner.used_embeddings

    plain, used_none = run("a zorbo", None)
    with_emb, used = run("a zorbo", loaded)
    assert not torch.allclose(plain, with_emb) and used == {"zorbo"} and used_none == set()
    other_plain, _ = run("a cat", None)
    other, used_other = run("a cat", loaded)
    assert torch.equal(other_plain, other) and used_other == set()


def test_wrong_width_is_skipped_with_the_reason(pipe, emb_dir):
    catalog = EmbeddingCatalog(emb_dir)
    _, skipped = catalog.load_for(pipe)
    assert "768" in skipped["wide"] and "SD 1.x" in skipped["wide"] and "another model family" in skipped["wide"]
    assert "2048" in skipped["xl"] and "SDXL" in skipped["xl"]
    api = catalog.api(pipe)
    assert api["loaded"]["zorbo"] == {
        "step": 7,
        "sd_checkpoint": "0123abcd",
        "sd_checkpoint_name": "tiny",
        "shape": WIDTH,
        "vectors": 1,
    }
    assert api["loaded"]["triple"]["vectors"] == 3
    assert api["skipped"]["wide"]["shape"] == 768 and api["skipped"]["wide"]["reason"] == skipped["wide"]
    assert api["skipped"]["xl"]["shape"] == 2048 and api["skipped"]["xl"]["vectors"] == 2


def test_sdxl_pipeline_takes_the_pair_and_skips_single_vectors(emb_dir):
    def te(width):
        return SimpleNamespace(get_input_embeddings=lambda: torch.nn.Embedding(4, width))

    xl = SimpleNamespace(text_encoder=te(768), text_encoder_2=te(1280))
    loaded, skipped = EmbeddingCatalog(emb_dir).load_for(xl)
    assert set(loaded) == {"xl"} and loaded["xl"]["clip_g"].shape == (2, 1280)
    assert "SD 1.x" in skipped["wide"] and "2048" in skipped["wide"]


def test_hostile_pickle_is_refused_and_never_runs(pipe, emb_dir, tmp_path):
    # the payload is live: an ordinary unpickler runs it
    control = tmp_path / "control.pt"
    torch.save({"x": Hostile(tmp_path / "control-ran")}, control)
    with open(control, "rb") as f:
        torch.load(f, weights_only=False)
    assert (tmp_path / "control-ran").exists()
    catalog = EmbeddingCatalog(emb_dir)
    loaded, skipped = catalog.load_for(pipe)
    assert not (tmp_path / "pwned").exists()
    assert "evil" not in loaded and skipped["evil"].startswith("refused")
    assert catalog.api(pipe)["skipped"]["evil"]["reason"].startswith("refused")
    assert "zorbo" in loaded  # the rest still loads


def test_ti_hashes_are_the_files_sha256_shorthash(pipe, emb_dir, tmp_path):
    from webui.infotext import build_infotext, parse_infotext
    from webui.models.hashing import HashCache

    hashes = HashCache(tmp_path / "cache.json")
    catalog = EmbeddingCatalog(emb_dir, hashes)
    sha = hashlib.sha256((emb_dir / "zorbo.pt").read_bytes()).hexdigest()
    tri = hashlib.sha256((emb_dir / "sub" / "triple.safetensors").read_bytes()).hexdigest()
    assert catalog.ti_hashes({"zorbo"}) == f"zorbo: {sha[:12]}"
    assert catalog.ti_hashes(["zorbo", "triple"]) == f"triple: {tri[:12]}, zorbo: {sha[:12]}"
    assert catalog.ti_hashes(set()) == "" and catalog.ti_hashes({"unknown"}) == ""
    assert hashes._data["hashes"]["textual_inversion/zorbo"]["sha256"] == sha
    text = build_infotext("a zorbo", "", {"Steps": 2, "TI hashes": catalog.ti_hashes({"zorbo"})})
    assert f'TI hashes: "zorbo: {sha[:12]}"' in text
    assert parse_infotext(text)["TI hashes"] == f"zorbo: {sha[:12]}"


def test_new_and_removed_files_are_noticed(pipe, emb_dir):
    catalog = EmbeddingCatalog(emb_dir)
    assert "late" not in catalog.load_for(pipe)[0]
    torch.save({"string_to_param": {"*": torch.randn(1, WIDTH)}}, emb_dir / "late.pt")
    assert "late" in catalog.load_for(pipe)[0]
    (emb_dir / "late.pt").unlink()
    assert "late" not in catalog.load_for(pipe)[0]
    assert EmbeddingCatalog(emb_dir / "missing").load_for(pipe) == ({}, {})


def test_api_routes(pipe, emb_dir, tmp_path):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from webui.api.prompts import build_prompts_router
    from webui.prompts.styles import StyleStore

    app = SimpleNamespace(
        embeddings=EmbeddingCatalog(emb_dir),
        styles=StyleStore([tmp_path / "styles.csv"]),
        models=SimpleNamespace(active=SimpleNamespace(pipeline=pipe)),
    )
    api = FastAPI()
    api.include_router(build_prompts_router(app))
    client = TestClient(api)
    body = client.get("/sdapi/v1/embeddings").json()
    assert set(body) == {"loaded", "skipped"} and body["loaded"]["triple"]["shape"] == WIDTH
    assert set(body["skipped"]["wide"]) == {"step", "sd_checkpoint", "sd_checkpoint_name", "shape", "vectors", "reason"}
    torch.save({"string_to_param": {"*": torch.randn(2, WIDTH)}}, emb_dir / "fresh.pt")
    r = client.post("/sdapi/v1/refresh-embeddings")
    assert r.status_code == 200 and r.json() is None
    assert client.get("/sdapi/v1/embeddings").json()["loaded"]["fresh"]["vectors"] == 2
    app.models.active = None  # no checkpoint: every readable embedding is listed as loaded (A1111)
    body = client.get("/sdapi/v1/embeddings").json()
    assert "wide" in body["loaded"] and set(body["skipped"]) == {"evil"}
