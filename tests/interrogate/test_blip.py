"""BLIP captioning for Interrogate CLIP: a tiny random BlipForConditionalGeneration with a BERT tokenizer built
offline, saved with save_pretrained in models/BLIP/<name>/ and loaded through the production path; the caption
leads A1111's "<caption>, <medium>, <movement>, <flavours>"; BLIP alone gives the caption; messages name the
folders; the BLIP options are bounded."""

from __future__ import annotations

import base64
import io
import shutil

import pytest
import torch
from PIL import Image

from webui.interrogate.blip import BlipCaptioner, CaptionError, find_blip
from webui.interrogate.clip_rank import word_list

WORDS = (
    "a the cat dog red blue green square circle on of in picture photo painting with and sitting table "
    "small large man woman tree house sky"
).split()


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory):
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessorPil,
        BlipProcessor,
    )

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    tok = BertTokenizer(vocab=vocab, do_lower_case=True)
    tok.add_special_tokens({"bos_token": "[DEC]"})  # BLIP's decoder start token, as in Salesforce's tokenizer
    text = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=64,
        bos_token_id=tok.bos_token_id,
        sep_token_id=tok.sep_token_id,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.sep_token_id,
    )
    vision = dict(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2
    )
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(
        BlipConfig(text_config=text, vision_config=vision, projection_dim=16, image_text_hidden_size=32)
    )
    folder = tmp_path_factory.mktemp("blip") / "tiny-blip"
    model.save_pretrained(str(folder), safe_serialization=True)
    BlipProcessor(
        image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tok
    ).save_pretrained(str(folder))
    return folder


def _image(color=(200, 30, 30)) -> Image.Image:
    img = Image.new("RGB", (48, 40), color)
    img.paste((20, 20, 220), (10, 10, 30, 30))
    return img


def _b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _greedy(cap: BlipCaptioner, image: Image.Image, min_length: int, max_length: int) -> str:
    """Greedy decoding written out: start from [DEC], append the arg-max token, [SEP] barred until min_length."""
    model, tok = cap.model, cap.tokenizer
    px = cap.image_processor(images=[image], return_tensors="pt").pixel_values
    ids = torch.tensor([[model.config.text_config.bos_token_id]])
    eos = model.config.text_config.sep_token_id
    with torch.no_grad():
        while ids.shape[1] < max_length:
            logits = model(pixel_values=px, input_ids=ids).logits[0, -1]
            if ids.shape[1] < min_length:
                logits[eos] = -float("inf")
            nxt = int(logits.argmax())
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
            if nxt == eos:
                break
    return tok.decode(ids[0], skip_special_tokens=True).strip()


@pytest.fixture
def blip_app(make_app, data_dir, tiny_blip):
    shutil.copytree(tiny_blip, data_dir / "models" / "BLIP" / "tiny-blip")
    return make_app("--nowebui")


def _client(app):
    from fastapi.testclient import TestClient

    from webui.api.server import build_fastapi

    return TestClient(build_fastapi(app))


def test_caption_is_blips_greedy_decode(tiny_blip):
    cap = BlipCaptioner.load(tiny_blip)
    text = cap.caption(_image(), num_beams=1, min_length=6, max_length=12)
    assert text and text == _greedy(cap, _image(), 6, 12)
    assert all(w in WORDS for w in text.split())
    assert len(text.split()) >= 5  # [DEC] + at least 5 tokens before [SEP] may end it
    beams = cap.caption(_image(), num_beams=3, min_length=6, max_length=12)
    assert beams and all(w in WORDS for w in beams.split())


def test_api_with_blip_alone_answers_its_caption_at_the_length_options(blip_app, tiny_blip):
    with _client(blip_app) as c:
        r = c.post("/sdapi/v1/interrogate", json={"image": _b64(_image()), "model": "clip"})
        assert r.status_code == 200, r.text
        alone = r.json()["caption"]
        expected = _greedy(BlipCaptioner.load(tiny_blip), _image(), 24, 48)
        assert alone == expected  # A1111's defaults: min 24, max 48 tokens, 1 beam
        c.post("/sdapi/v1/options", json={"interrogate_clip_min_length": 3, "interrogate_clip_max_length": 5})
        short = c.post("/sdapi/v1/interrogate", json={"image": _b64(_image())}).json()["caption"]
        assert short == _greedy(BlipCaptioner.load(tiny_blip), _image(), 3, 5) and len(short.split()) <= 4


def test_blip_caption_leads_the_clip_ranks(blip_app, tiny_blip, data_dir):
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
    CLIPModel(config).save_pretrained(str(data_dir / "models" / "interrogate" / "tiny-clip"), safe_serialization=True)
    with _client(blip_app) as c:
        c.post("/sdapi/v1/options", json={"interrogate_clip_min_length": 4, "interrogate_clip_max_length": 8})
        text = c.post("/sdapi/v1/interrogate", json={"image": _b64(_image()), "model": "clip"}).json()["caption"]
        blip_caption = _greedy(BlipCaptioner.load(tiny_blip), _image(), 4, 8)
        assert text.startswith(blip_caption + ", ")
        medium, movement, *flavors = text[len(blip_caption) + 2 :].split(", ")
        assert medium in word_list("mediums", 9999) and movement in word_list("movements", 9999)
        assert len(flavors) == 3 and all(f in word_list("flavors", 9999) for f in flavors)
        c.post("/sdapi/v1/options", json={"interrogate_return_ranks": True})
        ranked = c.post("/sdapi/v1/interrogate", json={"image": _b64(_image())}).json()["caption"]
        assert ranked.startswith(f"{blip_caption}, ({medium}:")


def test_messages_name_the_folders(client, make_app, data_dir, tmp_path):
    r = client.post("/sdapi/v1/interrogate", json={"image": _b64(_image())})
    assert r.status_code == 422
    assert "models/BLIP" in r.json()["detail"] and "models/interrogate" in r.json()["detail"]
    broken = data_dir / "models" / "BLIP" / "broken"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text('{"model_type": "blip"}')  # no weights, no tokenizer
    r = client.post("/sdapi/v1/interrogate", json={"image": _b64(_image())})
    assert r.status_code == 422 and "models/BLIP/broken" in r.json()["detail"], r.text
    client.post("/sdapi/v1/options", json={"interrogate_blip_model": "../../etc"})
    r = client.post("/sdapi/v1/interrogate", json={"image": _b64(_image())})
    assert r.status_code == 422 and "no BLIP model '../../etc' in models/BLIP" in r.json()["detail"]
    with pytest.raises(CaptionError):
        find_blip(data_dir / "models", "/etc")
    assert find_blip(tmp_path, "") is None


@pytest.mark.parametrize(
    "key", ["interrogate_clip_num_beams", "interrogate_clip_min_length", "interrogate_clip_max_length"]
)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e9, -1, 0, "../x", None])
def test_blip_options_refuse_hostile_values(client, key, value):
    before = client.get("/sdapi/v1/options").json()[key]
    body = '{"%s": %s}' % (
        key,
        {float("nan"): "NaN", float("inf"): "Infinity"}.get(value, None)
        or ('"../x"' if value == "../x" else "null" if value is None else repr(value)),
    )
    r = client.post("/sdapi/v1/options", content=body, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500 and r.headers["content-type"].startswith("application/json"), r.text
    assert client.get("/sdapi/v1/options").json()[key] == before


def test_img2img_button_uses_blip(blip_app, tiny_blip):
    import gradio as gr

    from webui.ui.img2img_tab import Img2ImgTab

    with gr.Blocks():
        tab = Img2ImgTab(blip_app)
    assert tab.on_interrogate(_image(), "old") == _greedy(BlipCaptioner.load(tiny_blip), _image(), 24, 48)
