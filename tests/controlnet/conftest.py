"""ControlNet test helpers: tiny ControlNets made with `ControlNetModel.from_unet` from the tiny UNets (their zero
convolutions given small random weights, so control visibly changes the output), and the extension's modules
loaded as Easel's host loads them."""

from __future__ import annotations

import base64
import importlib
import io
import logging
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[2]
EXT = REPO / "extensions" / "controlnet"


def load_script():
    """The extension's script module as Easel's host imports it (the folder as a package, webui/extensions/host.py):
    the one an Application loaded last, else loaded here."""
    from webui.extensions.host import extension_package

    name = "easel_ext_controlnet.scripts.controlnet"
    if name not in sys.modules:
        importlib.import_module(f"{extension_package('controlnet', EXT)}.scripts.controlnet")
    return sys.modules[name]


def tiny_controlnet(unet, seed: int):
    from diffusers import ControlNetModel

    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 32, 32))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in [*net.controlnet_down_blocks, net.controlnet_mid_block]:
            block.weight.copy_(torch.randn(block.weight.shape, generator=gen) * 0.5)
    return net.eval()


@pytest.fixture(scope="session")
def controlnet_dir(tmp_path_factory) -> Path:
    """models/ControlNet/ with tiny-canny and tiny-other (SD 1.x, diffusers folders) and tiny-xl (SDXL layout)."""
    from tests.factories import tiny_components, tiny_sdxl_components

    root = tmp_path_factory.mktemp("ControlNet")
    unet = tiny_components(0)[0]
    tiny_controlnet(unet, 1).save_pretrained(root / "tiny-canny")
    tiny_controlnet(unet, 2).save_pretrained(root / "tiny-other")
    tiny_controlnet(tiny_sdxl_components(0)[0], 3).save_pretrained(root / "tiny-xl")
    return root


class FakeSettings:
    def __init__(self, **values):
        self.values = values

    def get(self, key):
        return self.values[key]

    def define(self, *, key, default, **_):
        self.values.setdefault(key, default)


@pytest.fixture
def installed(controlnet_dir, tmp_path):
    """(state, handle): the extension installed on a bare handle whose models path is `controlnet_dir`."""
    from webui.extensions.api import ExtensionHandle

    settings = FakeSettings(control_net_models_path=str(controlnet_dir))
    ext = ExtensionHandle(name="controlnet", path=EXT, settings=settings, log=logging.getLogger("test.controlnet"))
    state = load_script().install(ext)
    state.family = "sd1"
    return state, ext


def square(size=(64, 64), box=(16, 16, 48, 48)) -> Image.Image:
    image = Image.new("RGB", size, (0, 0, 0))
    ImageDraw.Draw(image).rectangle(box, fill=(255, 255, 255))
    return image


def b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def unb64(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")
