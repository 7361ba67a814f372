"""examples/lora-dataset/ (the ready LoRA example) is what its generator writes, and the analyser measures its style."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tools.demo_model.analyse import analyse, stripe_score
from tools.demo_model.dataset import make_sample
from tools.demo_model.make_lora_dataset import TRIGGER, write

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "lora-dataset"


def test_shipped_examples_have_captions_with_the_trigger_word():
    pngs = sorted(EXAMPLES.glob("*.png"))
    assert 6 <= len(pngs) <= 12
    for p in pngs:
        img = Image.open(p)
        assert img.size == (64, 64)
        cap = p.with_suffix(".txt").read_text().strip()
        assert TRIGGER in cap.split() and cap.endswith("background")
        assert stripe_score(img) > 0.2, p.name
        assert set(analyse(img)["colours"]) == {"white", cap.split(" on a ")[1].split()[0]}


def test_generator_reproduces_the_shipped_files(tmp_path):
    for p in write(tmp_path):
        shipped = EXAMPLES / p.name
        assert shipped.exists(), p.name
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(shipped)))
        assert p.with_suffix(".txt").read_text() == shipped.with_suffix(".txt").read_text()


def test_plain_dataset_images_are_not_striped():
    scores = [stripe_score(make_sample(11, i)[0]) for i in range(40)]
    assert max(scores) < 0.05
