"""The demo model's analyser must be right on ground truth: dataset images are scored ~100%."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tools.demo_model.analyse import analyse, parse_prompt, score, stripe_score
from tools.demo_model.dataset import COLOURS, PALETTE, SHAPES, Spec, caption, make_sample, random_prompts, render


def test_palette_is_one_table_of_six_distinct_colours():
    assert set(COLOURS) >= {"red", "green", "blue", "yellow", "white", "black"}
    assert len(set(PALETTE.values())) == len(PALETTE)


def test_dataset_is_deterministic_and_follows_the_grammar():
    a, sa = make_sample(7, 3)
    b, sb = make_sample(7, 3)
    assert sa == sb and np.array_equal(np.asarray(a), np.asarray(b))
    assert a.size == (64, 64) and a.mode == "RGB"
    for i in range(50):
        _, s = make_sample(1, i, size_words=False)
        assert s.caption == f"a {s.colour} {s.shape} on a {s.background} background"
        assert s.colour != s.background and 16 <= s.size <= 40
        assert 0 <= s.x <= 64 - s.size and 0 <= s.y <= 64 - s.size


def test_analyser_is_right_on_ground_truth():
    prompts, images = [], []
    for i in range(300):
        img, spec = make_sample(2024, i)
        prompts.append(spec.caption)
        images.append(img)
    result = score(prompts, images)
    assert result["n"] == 300
    assert result["colour"] == 1.0
    assert result["shape"] >= 0.99


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size", [16, 28, 40])
def test_every_shape_and_extreme_size(shape, size):
    img = render(Spec("red", shape, "white", size, 64 - size, 0))
    a = analyse(img)
    assert a["shape"] == shape, a
    assert set(a["colours"]) == {"red", "white"} and a["background"] == "white"
    expected_fill = {"circle": 0.785, "square": 1.0, "triangle": 0.5}[shape]
    assert abs(a["fill"] - expected_fill) < 0.08


def test_analyser_rejects_wrong_answers():
    img = render(Spec("blue", "circle", "yellow", 30, 10, 10))
    assert score(["a red circle on a yellow background"], [img])["colour"] == 0.0
    assert score(["a blue square on a yellow background"], [img])["shape"] == 0.0
    flat = Image.new("RGB", (64, 64), PALETTE["green"])
    assert analyse(flat)["shape"] == "none"
    blob = np.full((64, 64, 3), PALETTE["black"], np.uint8)
    blob[10:20, 5:60] = PALETTE["white"]  # a long bar: not one of the shapes
    assert analyse(blob)["shape"] == "other"


def test_prompt_parsing():
    assert parse_prompt("a red circle on a blue background") == ("red", "circle", "blue")
    assert parse_prompt("a small white triangle on a black background") == ("white", "triangle", "black")
    with pytest.raises(ValueError):
        parse_prompt("a cat")
    triples = random_prompts(60, seed=5)
    assert len(triples) == 60 and all(c != b for c, _, b in triples)
    assert {s for _, s, _ in triples} == set(SHAPES)
    assert caption(*triples[0]).startswith("a ")


def test_stripe_score_separates_flat_from_striped():
    for shape in SHAPES:
        flat = np.asarray(render(Spec("white", shape, "blue", 36, 14, 14))).copy()
        striped = flat.copy()
        for x in range(14, 50):
            if (x // 4) % 2:
                striped[:, x] = PALETTE["blue"]
        assert stripe_score(flat) < 0.05
        assert stripe_score(striped) > 0.15
