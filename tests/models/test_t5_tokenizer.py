"""The T5 tokenizer Easel ships for FLUX.1 and SD 3/3.5 (webui/models/configs/t5-tokenizer/): a pinned table of
prompts → ids (Google's T5 vocabulary: "▁"=3, "a"=9, "▁cat"=1712, </s>=1, <pad>=0), so a changed or truncated data
file, or a transformers change in how it is read, fails here and not as silently different images."""

from __future__ import annotations

import hashlib

import pytest

from webui.models.parts import T5_TOKENIZER_DIR, t5_tokenizer

TABLE = [
    ("a photo of a cat", [3, 9, 1202, 13, 3, 9, 1712, 1, 0, 0, 0, 0]),
    ("Ein Foto, (blue:1.2) square!", [890, 9703, 6, 41, 7060, 15, 10, 10917, 61, 2812, 55, 1]),
    ("<extra_id_0> café 12345", [32099, 11949, 3, 14574, 2128, 1, 0, 0, 0, 0, 0, 0]),
    ("FLUX.1 schnell", [377, 9138, 4, 5, 536, 3942, 1, 0, 0, 0, 0, 0]),
    ("", [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
]


@pytest.fixture(scope="module")
def tok():
    return t5_tokenizer(512)


@pytest.mark.parametrize("prompt,ids", TABLE)
def test_tokenization_table(tok, prompt, ids):
    assert tok(prompt, padding="max_length", max_length=12, truncation=True).input_ids == ids


def test_special_ids_and_size(tok):
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert len(tok) == 32100 and tok.model_max_length == 512


def test_truncation_keeps_eos():
    short = t5_tokenizer(8)
    ids = short("a photo of a cat on a red square", padding="max_length", truncation=True).input_ids
    assert len(ids) == 8 and ids[-1] == 1 and ids[:7] == [3, 9, 1202, 13, 3, 9, 1712]


def test_vendored_file_is_the_noticed_one():
    data = (T5_TOKENIZER_DIR / "tokenizer.json").read_bytes()
    assert hashlib.sha256(data).hexdigest() in (T5_TOKENIZER_DIR / "NOTICE").read_text()
    assert len(data) < 3_000_000
