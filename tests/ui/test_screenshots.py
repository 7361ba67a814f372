"""Screenshots of every tab in light and dark mode and 400 px wide (#19), kept in test-artifacts/screenshots/
(gitignored) for a person to look at: tools/screenshots.py run against a live server with a LoRA, an embedding,
two jobs in the History and an error on the page. The test checks that every tab was shot in every mode and that
the shots differ between light and dark (a dark shot that is light means the theme did not apply)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image, ImageStat

from tests.lora.factory import write_kohya
from tests.ui.browser import browser  # noqa: F401  (pytest fixture)
from tools.screenshots import MODES, TABS, take_screenshots
from webui.generation.requests import Txt2ImgRequest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def brightness(path: Path) -> float:
    with Image.open(path) as im:
        return ImageStat.Stat(im.convert("L")).mean[0]


def test_screenshots_of_every_tab(data_dir, live_server, browser):  # noqa: F811
    lora_dir = data_dir / "models" / "Lora"
    write_kohya(
        lora_dir / "catstyle.safetensors",
        seed=1,
        metadata={
            "ss_network_dim": 4,
            "ss_network_alpha": 4,
            "ss_base_model_version": "sd_v1",
            "ss_tag_frequency": json.dumps({"1_cat": {"easelcat": 12, "red hat": 5}}),
        },
    )
    Image.new("RGB", (96, 128), (40, 160, 90)).save(lora_dir / "catstyle.preview.png")
    (data_dir / "embeddings").mkdir(exist_ok=True)
    torch.save({"string_to_param": {"*": torch.randn(2, 32)}, "step": 5}, data_dir / "embeddings" / "zorbo.pt")
    srv = live_server()
    for prompt in ("a red circle", "a long prompt: a yellow square on a white background, seen from above"):
        job = srv.app.submit_txt2img(Txt2ImgRequest(prompt=prompt, steps=1, width=64, height=64), from_api=False)
        srv.app.jobs.wait(job, timeout=120)  # History shows rows (cards at 400 px), not an empty table
    saved = take_screenshots(browser, srv.url, ARTIFACTS)
    names = {p.name for p in saved}
    missing = [f"{t}-{m}.png" for t in TABS for m in MODES if f"{t}-{m}.png" not in names]
    assert not missing, f"tabs not shot: {missing}"
    for tab in TABS:
        assert brightness(ARTIFACTS / f"{tab}-dark.png") < 100 < brightness(ARTIFACTS / f"{tab}-light.png"), tab
