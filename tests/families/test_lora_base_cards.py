"""Extra networks: each LoRA card names its base model (user metadata, ss_base_model_version, key names) and a LoRA
that does not fit the loaded checkpoint is greyed out (CSS class easel-card-unfit) with the reason as its title."""

from __future__ import annotations

import html
import re

import gradio as gr
import pytest

from tests.families.conftest import merge_models
from tests.families.lora_factory import write_flux_diffusers
from tests.lora.factory import write_kohya
from webui.lora.base_family import lora_base, unfit_reason
from webui.ui.extra_networks import ExtraNetworksPanel

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def data_dir(tmp_path, tiny_models, flux_models):
    merge_models(tmp_path / "models", tiny_models, flux_models)
    lora = tmp_path / "models" / "Lora"
    write_flux_diffusers(lora / "flux_style.safetensors")
    write_kohya(lora / "sd1_style.safetensors", seed=1, metadata={"ss_base_model_version": "sd_v1"})
    write_kohya(lora / "xl_style.safetensors", seed=2, metadata={"ss_base_model_version": "sdxl_base_v1-0"})
    write_kohya(lora / "unet_any.safetensors", seed=3)  # UNet keys, no metadata: fits any UNet family
    return tmp_path


def _cards(app) -> dict[str, tuple[str, str, str]]:
    """name → (class, title, inner html) of each LoRA card."""
    with gr.Blocks():
        panel = ExtraNetworksPanel(app, "txt2img", gr.Textbox())
    out = {}
    for m in re.finditer(
        r'<div class="([^"]*)" data-kind="lora" data-name="([^"]*)" title="([^"]*)">(.*?)</div></div>',
        panel.render("")[0]["lora"],
    ):
        out[m.group(2)] = (m.group(1), html.unescape(m.group(3)), m.group(4))
    return out


def test_cards_show_base_and_grey_out_what_does_not_fit(app):
    app.switch_checkpoint(next(i.title for i in app.catalog.list() if i.name == "tiny-a.safetensors"))
    cards = _cards(app)
    assert "FLUX.1" in cards["flux_style"][2] and "SD 1.x" in cards["sd1_style"][2] and "SDXL" in cards["xl_style"][2]
    assert "easel-card-unfit" in cards["flux_style"][0] and "easel-card-unfit" in cards["xl_style"][0]
    assert cards["flux_style"][1] == "Made for FLUX.1; the loaded checkpoint is SD 1.x"
    assert "easel-card-unfit" not in cards["sd1_style"][0] and "easel-card-unfit" not in cards["unet_any"][0]
    app.switch_checkpoint(next(i.title for i in app.catalog.list() if i.name == "flux1-dev-tiny.safetensors"))
    cards = _cards(app)
    assert "easel-card-unfit" not in cards["flux_style"][0]
    for name in ("sd1_style", "xl_style", "unet_any"):
        assert "easel-card-unfit" in cards[name][0] and cards[name][1].endswith("the loaded checkpoint is FLUX.1 dev")


@pytest.mark.parametrize(
    "keys,meta,user,base",
    [
        ("flux", {}, {}, "flux"),
        ("sd", {"ss_base_model_version": "sd_v2_768_v"}, {}, "sd2"),
        ("sd", {"ss_base_model_version": "sdxl_base_v1-0"}, {"sd version": "SD1"}, "sd1"),  # the user's word wins
        ("sd3", {"ss_base_model_version": "sd3"}, {}, "sd3"),
        (None, {"ss_base_model_version": "flux1"}, {}, "flux"),
        (None, {"ss_base_model_version": "<script>"}, {"sd version": "Unknown"}, None),
    ],
)
def test_lora_base_sources(keys, meta, user, base):
    assert lora_base(keys, meta, user) == base


def test_unknown_sides_fit():
    assert unfit_reason(None, "flux") is None and unfit_reason("flux", None) is None
    assert unfit_reason("sd", "sdxl") is None and unfit_reason("sd", "sd3") is not None
