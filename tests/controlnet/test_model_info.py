"""The line under a unit's Model dropdown (lib/model_info.py through the accordion's handler): the picked model's
family and layout, why it can't be used, and a warning when it is for another family than the loaded checkpoint."""

from __future__ import annotations

import logging

import pytest

from tests.controlnet.conftest import EXT, FakeSettings, load_script
from tests.controlnet.flow_models import tiny_flux_controlnet


@pytest.fixture(scope="module")
def models_dir(controlnet_dir, tmp_path_factory):
    import shutil

    root = tmp_path_factory.mktemp("cn-info")
    for name in ("tiny-canny", "tiny-xl"):
        shutil.copytree(controlnet_dir / name, root / name)
    tiny_flux_controlnet(1).save_pretrained(root / "tiny-flux")
    tiny_flux_controlnet(4, num_mode=3).save_pretrained(root / "tiny-flux-union")
    return root


def test_the_model_line_says_the_family_why_not_and_warns_of_another_family(models_dir):
    from webui.extensions.api import ExtensionHandle

    settings = FakeSettings(control_net_models_path=str(models_dir))
    ext = ExtensionHandle(name="controlnet", path=EXT, settings=settings, log=logging.getLogger("test.cn"))
    script = load_script()
    state = script.install(ext)
    choices = script.ControlNetScript(state, 1).ui_choices()
    ui = script.lib("ui")
    titles = {t.split(" [")[0]: t for t in choices.model_titles()}

    def line(name: str) -> str:
        return ui.model_info(choices, titles.get(name, name))

    state.family = "sd1"
    assert line("None") == "" and line("not-here [00000000]") == ""
    assert "For <b>an unknown family</b> · diffusers folder" in line("tiny-canny")  # the 32-wide test UNet's
    assert "easel-warn" not in line("tiny-canny")  # left to the exact width check at generation
    xl = line("tiny-xl")
    assert "For <b>SDXL</b>" in xl and 'class="easel-warn"' in xl and "The loaded checkpoint is SD 1.x" in xl
    flux = line("tiny-flux")
    assert "For <b>FLUX.1</b>" in flux and "a generation with this unit is refused" in flux
    union = line("tiny-flux-union")
    assert 'class="easel-error"' in union and "union ControlNets" in union and "easel-warn" not in union
    state.family = "flux"  # the loaded checkpoint changed: the same model is now the right one
    assert "easel-warn" not in line("tiny-flux") and "The loaded checkpoint is FLUX.1" in line("tiny-canny")
    state.family = "sdxl"
    assert "easel-warn" not in line("tiny-xl")
    # a title with markup is escaped, never rendered
    assert "<script" not in ui.model_info_html("<script>", {"family": "<script>", "layout": "<b>"}, "sd1")
