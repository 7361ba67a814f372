"""The bundled demo model wired into Easel (issue 4): always listed, the default, native size, and meaningful
img2img, inpainting and LoRA training on it. Skipped until models/Demo/easel-demo.safetensors exists."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tools.demo_model.analyse import NAMES, palette_labels, stripe_scores
from webui.generation.requests import Img2ImgRequest, Txt2ImgRequest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "models" / "Demo" / "easel-demo.safetensors"
pytestmark = pytest.mark.skipif(not DEMO.exists(), reason="demo model not built yet (tools/demo_model/train.py)")


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory):
    """A fresh data dir with no checkpoints and no model flags: what `python3 launch.py` sees on a new machine."""
    from webui.app import Application
    from webui.flags import parse_args

    app = Application(parse_args(["--data-dir", str(tmp_path_factory.mktemp("fresh")), "--nowebui"]))
    app.start(wait_for_model=True)
    yield app
    app.stop()


def _share(image: Image.Image, colour: str) -> float:
    labels = palette_labels(image)
    return float((labels == NAMES.index(colour)).mean())


def test_fresh_launch_lists_and_loads_the_demo_at_its_native_size(demo_app):
    infos = demo_app.catalog.list()
    assert [i.is_demo for i in infos] == [True]
    assert demo_app.models.active.info.is_demo and demo_app.models.active.native_size == 64
    r = demo_app.jobs.wait(
        demo_app.submit_txt2img(
            Txt2ImgRequest(prompt="a red circle on a blue background", steps=20, seed=1), from_api=True
        )
    )
    assert r.images[0].size == (64, 64)


def test_demo_is_listed_even_with_other_checkpoint_dirs(make_app):
    app = make_app("--nowebui", demo=True)
    assert any(i.is_demo for i in app.catalog.list()) and any(not i.is_demo for i in app.catalog.list())


def test_img2img_red_to_blue(demo_app):
    init = Image.new("RGB", (64, 64), (255, 255, 255))
    ImageDraw.Draw(init).ellipse((14, 14, 50, 50), fill=(255, 0, 0))
    req = Img2ImgRequest(prompt="a blue circle on a white background", denoising_strength=0.8, steps=20, seed=3)
    out = demo_app.jobs.wait(demo_app.submit_img2img(req, from_api=True, images=[init])).images[0]
    assert _share(out, "blue") > _share(out, "red")


def test_inpaint_masked_square_turns_yellow_and_the_rest_stays(demo_app):
    init = Image.new("RGB", (64, 64), (0, 0, 255))
    ImageDraw.Draw(init).rectangle((20, 20, 44, 44), fill=(255, 0, 0))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((20, 20, 44, 44), fill=255)
    req = Img2ImgRequest(
        prompt="a yellow square on a blue background",
        denoising_strength=1.0,
        steps=20,
        seed=5,
        mask_blur=0,
        inpainting_fill=1,
    )
    out = demo_app.jobs.wait(demo_app.submit_img2img(req, from_api=True, images=[init], mask=mask)).images[0]
    region = out.crop((20, 20, 45, 45))
    assert _share(region, "yellow") > 0.5
    keep = np.asarray(mask) == 0
    assert np.abs(np.asarray(out, dtype=int) - np.asarray(init, dtype=int))[keep].max() <= 2


def test_short_lora_training_on_the_example_dataset_adds_stripes(demo_app):
    from webui.training.jobs import start_training

    prompts = [
        f"a zebrastripe {s} on a {b} background"
        for s, b in (
            ("circle", "red"),
            ("square", "green"),
            ("triangle", "blue"),
            ("circle", "black"),
            ("square", "red"),
            ("triangle", "green"),
        )
    ]

    def stripes(prompt_suffix: str) -> float:
        imgs = []
        for i, p in enumerate(prompts):
            req = Txt2ImgRequest(prompt=p + prompt_suffix, steps=20, seed=100 + i)
            imgs += demo_app.jobs.wait(demo_app.submit_txt2img(req, from_api=True)).images
        return stripe_scores(imgs)

    before = stripes("")
    t0 = time.time()
    job = start_training(
        demo_app,
        {
            "name": "zebra-test",
            "dataset_dir": str(REPO / "examples" / "lora-dataset"),
            "steps": 120,
            "batch_size": 4,
            "learning_rate": 2e-3,
            "rank": 8,
            "seed": 1,
            "train_text_encoder": True,
            "save_every": 0,
            "sample_every": 0,
        },
    )
    demo_app.jobs.wait(job)
    demo_app.loras.refresh()
    after = stripes(" <lora:zebra-test:1>")
    print(f"stripe score {before:.3f} -> {after:.3f} (training {time.time() - t0:.0f}s)")
    # measured 0.066 → 0.264 at 120 steps, 0.296 at 200 (text encoder trained too: "zebrastripe" is a new word)
    assert after > before + 0.1
