from __future__ import annotations

from pathlib import Path

import pytest

COLORS = [(220, 30, 30), (30, 200, 40), (40, 60, 220), (230, 220, 40)]


def make_dataset(folder: Path, n: int = 4, *, size=(64, 64), captions: bool = True) -> Path:
    """n small images: a coloured square on a plain background, with a .txt caption each."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        color = COLORS[i % len(COLORS)]
        im = Image.new("RGB", size, (245, 245, 245))
        d = ImageDraw.Draw(im)
        o = 8 + 4 * i
        d.rectangle([o, o, o + 28, o + 28], fill=color)
        im.save(folder / f"img{i}.png")
        if captions:
            (folder / f"img{i}.txt").write_text(f"sks square, color {i % len(COLORS)}")
    return folder


@pytest.fixture
def dataset(tmp_path) -> Path:
    return make_dataset(tmp_path / "dataset")
