"""Procedural dataset for Easel's demo model: one coloured shape on a plain background, 64×64, with a caption.

Everything is drawn from a seeded `random.Random`, so `make_sample(seed, i)` is the same image on every machine.
Caption grammar (always understood by the model): ``a {color} {shape} on a {background} background``.
A minority of captions add a size word ("a small red circle on a blue background"); the plain grammar is the default.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
SUPERSAMPLE = 4  # shapes are drawn at 4× and box-filtered down: smooth, deterministic edges

# The single palette table: names → exact RGB. The analyser classifies pixels against these same values.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (30, 60, 220),
    "yellow": (245, 215, 30),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLOURS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle")
MIN_SIZE, MAX_SIZE = 16, 40
SMALL_MAX, LARGE_MIN = 22, 34  # sizes that may be called "small" / "large" in a caption
SIZE_WORD_PROB = 0.2


@dataclass(frozen=True)
class Spec:
    colour: str
    shape: str
    background: str
    size: int  # bounding-box side in pixels
    x: int  # top-left corner of the bounding box
    y: int
    size_word: str = ""  # "", "small" or "large"

    @property
    def caption(self) -> str:
        return caption(self.colour, self.shape, self.background, self.size_word)


def caption(colour: str, shape: str, background: str, size_word: str = "") -> str:
    adj = f"{size_word} " if size_word else ""
    return f"a {adj}{colour} {shape} on a {background} background"


def random_spec(rng: random.Random, *, size_words: bool = True) -> Spec:
    colour = rng.choice(COLOURS)
    background = rng.choice([c for c in COLOURS if c != colour])
    shape = rng.choice(SHAPES)
    size = rng.randint(MIN_SIZE, MAX_SIZE)
    x = rng.randint(0, SIZE - size)
    y = rng.randint(0, SIZE - size)
    word = ""
    if size_words and rng.random() < SIZE_WORD_PROB:
        word = "small" if size <= SMALL_MAX else "large" if size >= LARGE_MIN else ""
    return Spec(colour, shape, background, size, x, y, word)


def shape_mask(shape: str, size: int, x: int, y: int, *, canvas: int = SIZE) -> np.ndarray:
    """Anti-aliased coverage (0..1 float32, canvas×canvas) of one shape whose bounding box is (x, y, size, size).
    The triangle is isosceles and upright: base along the bottom of the box, apex at the top centre."""
    s = SUPERSAMPLE
    img = Image.new("L", (canvas * s, canvas * s), 0)
    d = ImageDraw.Draw(img)
    x0, y0, x1, y1 = x * s, y * s, (x + size) * s - 1, (y + size) * s - 1
    if shape == "circle":
        d.ellipse([x0, y0, x1, y1], fill=255)
    elif shape == "square":
        d.rectangle([x0, y0, x1, y1], fill=255)
    elif shape == "triangle":
        d.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    small = img.resize((canvas, canvas), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def render(spec: Spec) -> Image.Image:
    cov = shape_mask(spec.shape, spec.size, spec.x, spec.y)[..., None]
    fg = np.array(PALETTE[spec.colour], dtype=np.float32)
    bg = np.array(PALETTE[spec.background], dtype=np.float32)
    arr = cov * fg + (1.0 - cov) * bg
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")


def make_sample(seed: int, index: int, *, size_words: bool = True) -> tuple[Image.Image, Spec]:
    """Sample number `index` of the dataset with this seed (independent of every other index)."""
    rng = random.Random(seed * 1_000_003 + index)
    spec = random_spec(rng, size_words=size_words)
    return render(spec), spec


def make_batch(seed: int, start: int, count: int, *, size_words: bool = True) -> tuple[np.ndarray, list[Spec]]:
    """`count` samples as a uint8 array (count, 64, 64, 3) plus their specs."""
    imgs, specs = [], []
    for i in range(start, start + count):
        img, spec = make_sample(seed, i, size_words=size_words)
        imgs.append(np.asarray(img))
        specs.append(spec)
    return np.stack(imgs), specs


def random_prompts(n: int, seed: int) -> list[tuple[str, str, str]]:
    """`n` (colour, shape, background) triples from the plain grammar, as evenly spread over the shapes as `n`
    allows."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        shape = SHAPES[i % len(SHAPES)]
        colour = rng.choice(COLOURS)
        background = rng.choice([c for c in COLOURS if c != colour])
        out.append((colour, shape, background))
    rng.shuffle(out)
    return out


if __name__ == "__main__":  # write a contact sheet: python tools/demo_model/dataset.py out.png
    import sys

    sheet = Image.new("RGB", (SIZE * 8, SIZE * 4))
    for i in range(32):
        img, spec = make_sample(0, i)
        sheet.paste(img, ((i % 8) * SIZE, (i // 8) * SIZE))
        print(i, spec.caption)
    sheet.save(sys.argv[1] if len(sys.argv) > 1 else "dataset_sheet.png")
