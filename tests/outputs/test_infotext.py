"""Infotext: build, parse, A1111 compatibility, embedding in PNG/JPEG/WEBP."""

from __future__ import annotations

import io
import json
import re

import pytest
from PIL import Image

from webui import VERSION_TAG
from webui.infotext import (
    FIELD_ORDER,
    build_infotext,
    exif_bytes_for,
    format_value,
    infotext_to_request_fields,
    parse_infotext,
    pnginfo_for,
    read_image_infotext,
    split_legacy_sampler,
)

A1111_TEXT = (
    "a cat, (masterpiece:1.2)\nNegative prompt: blurry\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x512, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.7, Clip skip: 2, "
    'Hires upscale: 2, Hires steps: 10, Hires upscaler: Latent, Lora hashes: "x: 0123456789ab", Version: v1.10.1'
)

# A1111's own pair regex, used here as an independent check that A1111 can read what Easel writes.
A1111_RE = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def a1111_pairs(line: str) -> dict[str, str]:
    return {k: (json.loads(v) if v[:1] == '"' and v[-1:] == '"' else v) for k, v in A1111_RE.findall(line)}


def test_parse_literal_a1111_string() -> None:
    p = parse_infotext(A1111_TEXT)
    assert p["Prompt"] == "a cat, (masterpiece:1.2)"
    assert p["Negative prompt"] == "blurry"
    assert p["Steps"] == "20" and p["Sampler"] == "DPM++ 2M" and p["Schedule type"] == "Karras"
    assert p["CFG scale"] == "7" and p["Seed"] == "1234"
    assert p["Size"] == "512x512" and p["Size-1"] == "512" and p["Size-2"] == "512"
    assert p["Model hash"] == "6ce0161689" and p["Model"] == "v1-5-pruned-emaonly"
    assert p["Lora hashes"] == "x: 0123456789ab"
    assert p["Hires upscaler"] == "Latent" and p["Version"] == "v1.10.1"


def test_easel_precision_fields_paste_back_as_overrides() -> None:
    """The CPU precision of the UNet and the VAE decode change pixels, so a pasted infotext asks for them again;
    a GPU's "fp16" is not a setting and is left alone."""
    base = "cat\nSteps: 9, Sampler: Euler a, CFG scale: 4, Seed: 5, Size: 64x64"
    f = infotext_to_request_fields(parse_infotext(base + ", Precision: bf16, VAE precision: bf16"))
    assert f["override_settings"] == {"cpu_vae_precision": "bf16", "cpu_precision": "bf16"}
    f = infotext_to_request_fields(parse_infotext(base + ", Precision: fp32"))
    assert f["override_settings"] == {"cpu_precision": "fp32"}
    assert "override_settings" not in infotext_to_request_fields(parse_infotext(base + ", Precision: fp16"))


def test_request_fields_from_a1111_string() -> None:
    f = infotext_to_request_fields(parse_infotext(A1111_TEXT))
    assert f["prompt"] == "a cat, (masterpiece:1.2)" and f["negative_prompt"] == "blurry"
    assert f["steps"] == 20 and isinstance(f["steps"], int)
    assert f["sampler_name"] == "DPM++ 2M" and f["scheduler"] == "Karras"
    assert f["cfg_scale"] == 7.0 and isinstance(f["cfg_scale"], float)
    assert f["seed"] == 1234 and f["width"] == 512 and f["height"] == 512
    assert f["denoising_strength"] == 0.7
    assert f["override_settings"] == {"CLIP_stop_at_last_layers": 2}
    assert f["sd_model_hash"] == "6ce0161689" and f["sd_model_name"] == "v1-5-pruned-emaonly"
    assert f["enable_hr"] is True and f["hr_scale"] == 2.0 and f["hr_second_pass_steps"] == 10


def test_request_fields_variation_and_seed_resize() -> None:
    text = build_infotext(
        "p",
        "",
        {"Steps": 5, "Seed": 1, "Variation seed": 99, "Variation seed strength": 0.25, "Seed resize from": "640x384"},
    )
    f = infotext_to_request_fields(parse_infotext(text))
    assert (f["subseed"], f["subseed_strength"]) == (99, 0.25)
    assert (f["seed_resize_from_w"], f["seed_resize_from_h"]) == (640, 384)
    assert "override_settings" not in f and "scheduler" not in f


@pytest.mark.parametrize(
    "legacy,sampler,scheduler",
    [
        ("DPM++ 2M Karras", "DPM++ 2M", "Karras"),
        ("DPM++ 2M SDE Exponential", "DPM++ 2M SDE", "Exponential"),
        ("Euler a SGM Uniform", "Euler a", "SGM Uniform"),
        ("DDIM Uniform", "DDIM", "Uniform"),
        ("Euler a", "Euler a", None),
        ("UniPC", "UniPC", None),
        ("Karras", "Karras", None),
    ],
)
def test_legacy_sampler_split(legacy: str, sampler: str, scheduler: str | None) -> None:
    assert split_legacy_sampler(legacy) == (sampler, scheduler)
    f = infotext_to_request_fields(parse_infotext(f"x\nSteps: 1, Sampler: {legacy}, Seed: 2"))
    assert f["sampler_name"] == sampler and f.get("scheduler") == scheduler


def test_schedule_type_wins_over_legacy_split() -> None:
    f = infotext_to_request_fields(parse_infotext("x\nSteps: 1, Sampler: DPM++ 2M Karras, Schedule type: Beta"))
    assert f["sampler_name"] == "DPM++ 2M Karras" and f["scheduler"] == "Beta"


AWKWARD = {
    "Steps": 20,
    "Sampler": "Euler a",
    "CFG scale": 7.5,
    "Seed": 42,
    "Size": "512x768",
    "Model": "my, model: v2",
    "Lora hashes": 'a: 0123, b: "quoted"',
    "Note": "ünïcødé 🐱 日本語",
    "Line": "one\ntwo",
    "Padded": " spaced ",
    "Empty": "",
}


@pytest.mark.parametrize(
    "prompt,negative",
    [
        ("a cat, (masterpiece:1.2)", "blurry, lowres"),
        ("line one\nline two: with colon\n  indented line", "neg one\nneg two"),
        ('ünïcødé prompt 🐱, "quotes"', ""),
        ("", "only negative"),
        ("", ""),
    ],
)
def test_round_trip(prompt: str, negative: str) -> None:
    text = build_infotext(prompt, negative, AWKWARD)
    p = parse_infotext(text)
    assert p["Prompt"] == prompt and p["Negative prompt"] == negative
    for key, value in AWKWARD.items():
        assert p[key] == format_value(value), key
    assert p["Size-1"] == "512" and p["Size-2"] == "768" and p["Version"] == VERSION_TAG
    # A1111's regex reads the same pairs from the last line.
    assert a1111_pairs(text.split("\n")[-1]) == {k: format_value(v) for k, v in AWKWARD.items()} | {
        "Version": VERSION_TAG
    }


def test_negative_prompt_line_omitted_when_empty() -> None:
    text = build_infotext("p", "", {"Steps": 1, "Seed": 2})
    assert "Negative prompt" not in text
    assert text == f"p\nSteps: 1, Seed: 2, Version: {VERSION_TAG}"


def test_field_order_extras_and_version_last() -> None:
    params = {
        "Hires upscale": 2,
        "Version": "custom",
        "Seed": 1,
        "Lora hashes": "x",
        "Steps": 20,
        "Clip skip": 2,
        "CFG scale": 7.0,
        "Sampler": "Euler",
        "Tiling": None,
    }
    last = build_infotext("p", "n", params).split("\n")[-1]
    keys = [k for k, _ in A1111_RE.findall(last)]
    assert keys == ["Steps", "Sampler", "CFG scale", "Seed", "Clip skip", "Hires upscale", "Lora hashes", "Version"]
    assert "CFG scale: 7," in last and last.endswith("Version: custom")
    assert FIELD_ORDER[:3] == ["Steps", "Sampler", "Schedule type"] and FIELD_ORDER[-1] == "Tiling"
    assert len(FIELD_ORDER) == 27 and "Distilled CFG Scale" in FIELD_ORDER  # Forge's FLUX field
    # A1111 writes the hires pass's token merging ratio right after the first pass's
    assert FIELD_ORDER.index("Token merging ratio hr") == FIELD_ORDER.index("Token merging ratio") + 1


def test_none_version_is_left_out() -> None:
    assert "Version" not in build_infotext("p", "", {"Steps": 1, "Version": None})


def test_format_value() -> None:
    assert [format_value(v) for v in (7.0, 7.5, 0.7, 20, True, "x")] == ["7", "7.5", "0.7", "20", "True", "x"]


def test_bad_key_is_refused() -> None:
    with pytest.raises(ValueError):
        build_infotext("p", "", {"a, b": 1})


def test_short_last_line_belongs_to_prompt() -> None:
    p = parse_infotext("first line\nnot: params, here")
    assert p["Prompt"] == "first line\nnot: params, here" and "not" not in p


def test_crlf_is_tolerated() -> None:
    p = parse_infotext("a\r\nNegative prompt: b\r\nSteps: 1, Seed: 2, Size: 64x64")
    assert (p["Prompt"], p["Negative prompt"], p["Size-2"]) == ("a", "b", "64")


TEXT = build_infotext("a cat, 日本語\nline 2", 'neg: "x"', {"Steps": 3, "Seed": 4, "Size": "8x8"})


def test_png_chunk_round_trip() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG", pnginfo=pnginfo_for(TEXT))
    assert read_image_infotext(Image.open(io.BytesIO(buf.getvalue()))) == TEXT


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_exif_round_trip(fmt: str) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format=fmt, exif=exif_bytes_for(TEXT))
    image = Image.open(io.BytesIO(buf.getvalue()))
    raw = image.getexif().get_ifd(0x8769)[0x9286]
    assert raw.startswith(b"UNICODE\0") and raw[8:] == TEXT.encode("utf-16-be")
    assert read_image_infotext(image) == TEXT


def _jpeg_with_comment(comment: bytes) -> Image.Image:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = comment
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="JPEG", exif=exif.tobytes())
    return Image.open(io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize(
    "comment",
    [
        b"UNICODE\0" + TEXT.encode("utf-16-le"),
        b"UNICODE\0" + TEXT.encode("utf-16"),  # with a BOM
        b"UNICODE\0" + TEXT.encode("utf-16-be"),
    ],
)
def test_exif_unicode_either_byte_order(comment: bytes) -> None:
    assert read_image_infotext(_jpeg_with_comment(comment)) == TEXT


def test_exif_ascii_prefix() -> None:
    assert read_image_infotext(_jpeg_with_comment(b"ASCII\0\0\0hello\nSteps: 1")) == "hello\nSteps: 1"


def test_image_without_infotext() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    assert read_image_infotext(Image.open(io.BytesIO(buf.getvalue()))) is None


def test_param_pairs_is_a1111s_regex_in_linear_time():
    """The parameter line is read with A1111's regex semantics, but a long line without pairs (a 1 MB prompt in an
    `infotext` field) no longer ties a request thread up for hours (the regex is quadratic: 16 KB took 2.8 s)."""
    import random
    import time

    from webui.infotext import PARAM_RE, param_pairs

    rng = random.Random(0)
    alphabet = 'ab1_ -/:,"\\\t\nx'
    for _ in range(20000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        assert param_pairs(s) == PARAM_RE.findall(s), repr(s)
    real = (
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x768, "
        'Lora hashes: "a: 1, b: 2", Version: v1.9'
    )
    assert param_pairs(real) == PARAM_RE.findall(real)
    n = 1 << 20
    for line in ("x" * n, "word " * (n // 5), "a-" * (n // 2), "a: " + "x" * n, "," * n):
        start = time.perf_counter()
        param_pairs(line)
        assert time.perf_counter() - start < 5, line[:10]
