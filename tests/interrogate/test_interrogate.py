"""Interrogate CLIP: a tiny random CLIPModel folder in models/interrogate ranks the shipped word lists; A1111's
/sdapi/v1/interrogate; clear messages without a model; hostile inputs; the img2img button."""

from __future__ import annotations

import base64
import io

import pytest
import torch
from PIL import Image

from webui.interrogate.clip_rank import CATEGORIES, ClipRanker, word_list


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=49408,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
        ),
        vision_config=dict(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=2,
        ),
        projection_dim=16,
    )
    folder = tmp_path_factory.mktemp("interrogate") / "tiny-clip"
    CLIPModel(config).save_pretrained(str(folder), safe_serialization=True)
    return folder


@pytest.fixture
def clip_client(make_app, data_dir, tiny_clip):
    import shutil

    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    shutil.copytree(tiny_clip, data_dir / "models" / "interrogate" / "tiny-clip")
    app = make_app("--nowebui")
    with TestClient(build_fastapi(app)) as c:
        c.easel_app = app
        yield c


def _b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _image(color=(200, 30, 30)) -> Image.Image:
    img = Image.new("RGB", (48, 40), color)
    img.paste((20, 20, 220), (10, 10, 30, 30))
    return img


def test_ranking_is_clip_cosine_over_the_word_lists(tiny_clip):
    ranker = ClipRanker.load(tiny_clip)
    image = _image()
    ranks = ranker.rank(image, 1500)
    assert set(ranks) == set(CATEGORIES)
    for category in CATEGORIES:
        assert sorted(w for w, _ in ranks[category]) == sorted(word_list(category, 1500))
        scores = [s for _, s in ranks[category]]
        assert scores == sorted(scores, reverse=True) and all(-1.0001 <= s <= 1.0001 for s in scores)
    # the best medium is the one whose CLIP text embedding is nearest the image's, computed here independently
    model, tok = ranker.model, ranker.tokenizer
    words = word_list("mediums", 1500)
    with torch.no_grad():
        ids = tok(words, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
        t = model.get_text_features(input_ids=ids.input_ids, attention_mask=ids.attention_mask)
        t = t if isinstance(t, torch.Tensor) else t.pooler_output
        px = ranker.processor(images=[image], return_tensors="pt").pixel_values
        i = model.get_image_features(pixel_values=px)
        i = i if isinstance(i, torch.Tensor) else i.pooler_output
    sims = torch.nn.functional.normalize(t, dim=-1) @ torch.nn.functional.normalize(i, dim=-1)[0]
    assert ranks["mediums"][0][0] == words[int(sims.argmax())]
    assert ranker.rank(image, 5)["subjects"][0][0] in word_list("subjects", 5)  # the dictionary limit applies


def test_api_caption_has_a1111_shape_and_ranks_option(clip_client):
    r = clip_client.post("/sdapi/v1/interrogate", json={"image": _b64(_image()), "model": "clip"})
    assert r.status_code == 200, r.text
    text = r.json()["caption"]
    head, movement, *flavors = text.split(", ")
    medium, subject = head.split(" of ", 1)
    assert medium in word_list("mediums", 9999) and subject in word_list("subjects", 9999)
    assert movement in word_list("movements", 9999) and len(flavors) == 3
    assert clip_client.post("/sdapi/v1/interrogate", json={"image": _b64(_image())}).json()["caption"] == text
    clip_client.post("/sdapi/v1/options", json={"interrogate_return_ranks": True})
    ranked = clip_client.post("/sdapi/v1/interrogate", json={"image": _b64(_image())}).json()["caption"]
    assert ranked.startswith(f"({medium}:") and f"({movement}:" in ranked


def test_without_a_model_the_message_names_the_folder(client):
    r = client.post("/sdapi/v1/interrogate", json={"image": _b64(_image()), "model": "clip"})
    assert r.status_code == 422 and "models/interrogate" in r.json()["detail"]
    r = client.post("/sdapi/v1/interrogate", json={"image": _b64(_image()), "model": "deepdanbooru"})
    assert r.status_code == 422 and "deepdanbooru" in r.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"image": ""},
        {"image": "not base64!!"},
        {"image": base64.b64encode(b"\x89PNG garbage").decode()},
        {"image": "AAAA", "model": "../../etc/passwd"},
        {"image": "AAAA", "model": "x" * 1000},
        {"model": "clip"},
        {"image": 5},
        {"image": ["a"]},
        {"image": "/etc/passwd"},
    ],
    ids=["empty", "junk", "bad-png", "dotdot-model", "huge-model", "no-image", "int", "list", "abs-path"],
)
def test_hostile_bodies_are_4xx_json(clip_client, body):
    r = clip_client.post("/sdapi/v1/interrogate", json=body)
    assert 400 <= r.status_code < 500 and r.headers["content-type"].startswith("application/json"), r.text
    assert clip_client.get("/sdapi/v1/options").status_code == 200


def test_unknown_model_name_and_cross_site_origin(clip_client):
    r = clip_client.post("/sdapi/v1/interrogate", json={"image": _b64(_image()), "model": "../clip"})
    assert r.status_code == 422 and "unknown interrogate model" in r.json()["detail"]
    clip_client.post("/sdapi/v1/options", json={"interrogate_clip_model": "../../etc"})
    r = clip_client.post("/sdapi/v1/interrogate", json={"image": _b64(_image())})
    assert r.status_code == 422 and "models/interrogate" in r.json()["detail"]
    r = clip_client.post(
        "/sdapi/v1/interrogate", json={"image": _b64(_image())}, headers={"Origin": "https://evil.example"}
    )
    assert 400 <= r.status_code < 500


def test_img2img_interrogate_button_fills_the_prompt(clip_client):
    import warnings

    import gradio as gr

    from webui.ui.img2img_tab import Img2ImgTab

    app = clip_client.easel_app
    with gr.Blocks():
        tab = Img2ImgTab(app)
    assert tab.interrogate_clip.elem_id == "interrogate" and tab.interrogate_clip.value == "Interrogate CLIP"
    text = tab.on_interrogate(_image(), "old prompt")
    assert text == app.interrogate(_image(), "clip") and " of " in text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gr.Warning outside a request is a Python warning
        assert tab.on_interrogate(None, "old prompt") == "old prompt"
