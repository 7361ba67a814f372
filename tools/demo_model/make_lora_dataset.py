"""Write examples/lora-dataset/: a small LoRA training set that teaches the demo model a style it cannot draw.

    .venv/bin/python tools/demo_model/make_lora_dataset.py [--out examples/lora-dataset] [--n 8] [--seed 4]

The concept is the trigger word "zebrastripe": the shape is cut into vertical stripes STRIPE px wide, alternately
white and the background colour. Captions follow the demo grammar with the trigger word in the colour's place:
"a zebrastripe circle on a blue background". The analyser's `stripe_score` measures the style (≈0 for the demo
model's flat fills, ≈0.2 for these images).

Why white and background stripes rather than black and white: the demo's VAE was trained on one flat colour on
another, and decodes two-colour images faithfully, whereas black stripes inside a white shape on a third colour
come back smeared into the background. What a LoRA (which trains the UNet, not the VAE) can learn is bounded by
what the decoder can draw.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.demo_model.dataset import PALETTE, SHAPES, SIZE, shape_mask  # noqa: E402

TRIGGER = "zebrastripe"
STRIPE = 4  # px; the VAE works on 4×4 pixel cells, so each stripe spans about one latent column
BACKGROUNDS = ("red", "green", "blue", "black")  # the white stripes need a contrasting background
DEFAULT_OUT = REPO / "examples" / "lora-dataset"


def render_striped(shape: str, background: str, size: int, x: int, y: int) -> Image.Image:
    cov = shape_mask(shape, size, x, y)
    on = (np.arange(SIZE) - x) // STRIPE % 2 == 0  # white stripes start at the shape's left edge
    cov = (cov * on[None, :])[..., None]
    white = np.array(PALETTE["white"], np.float32)
    bg = np.array(PALETTE[background], dtype=np.float32)
    arr = cov * white + (1.0 - cov) * bg
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")


def specs(n: int, seed: int) -> list[tuple[str, str, int, int, int]]:
    """n (shape, background, size, x, y): every shape and background used, large enough for stripes to show."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        shape = SHAPES[i % len(SHAPES)]
        background = BACKGROUNDS[i % len(BACKGROUNDS)]
        size = rng.randint(30, 40)
        out.append((shape, background, size, rng.randint(2, SIZE - size - 2), rng.randint(2, SIZE - size - 2)))
    return out


def caption(shape: str, background: str) -> str:
    return f"a {TRIGGER} {shape} on a {background} background"


def write(out: Path = DEFAULT_OUT, n: int = 8, seed: int = 4) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (shape, background, size, x, y) in enumerate(specs(n, seed)):
        stem = f"{i:02d}_{TRIGGER}_{shape}_{background}"
        img = render_striped(shape, background, size, x, y)
        img.save(out / f"{stem}.png", optimize=True)
        (out / f"{stem}.txt").write_text(caption(shape, background) + "\n")
        paths.append(out / f"{stem}.png")
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--seed", type=int, default=4)
    args = ap.parse_args()
    from tools.demo_model.analyse import analyse, stripe_score

    for p in write(args.out, args.n, args.seed):
        a = analyse(Image.open(p))
        print(
            f"{p.relative_to(REPO) if p.is_relative_to(REPO) else p}: {p.with_suffix('.txt').read_text().strip()!r} "
            f"stripe_score={stripe_score(Image.open(p)):.3f} colours={a['colours']}"
        )


if __name__ == "__main__":
    main()
