"""Units applied to a real (tiny) diffusers pipeline through the `pipeline_call` hook function: control changes the
output, weight 0 and an empty guidance window give exactly the uncontrolled output, two units differ from one,
img2img uses its input image. The hook is called directly here: the core does not emit it yet (README.md)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.controlnet.conftest import b64, load_script, square
from tests.controlnet.test_units import unit


@pytest.fixture(scope="module")
def pipe(tiny_models, tmp_path_factory):
    from webui.models.loader import build_from_single_file

    return build_from_single_file(tiny_models / "Stable-diffusion" / "tiny-a.safetensors",
                                  tmp_path_factory.mktemp("cache")).pipeline


def generate(state, pipe, kind="txt2img", **extra):
    kwargs = dict(prompt="a square", num_inference_steps=2, guidance_scale=5.0, height=64, width=64,
                  output_type="np", generator=torch.Generator().manual_seed(3), **extra)
    changed = state.on_pipeline_call(SimpleNamespace(kind=kind, pipeline=pipe, kwargs=kwargs))
    run_pipe, run_kwargs = changed if changed is not None else (pipe, kwargs)
    return run_pipe(**run_kwargs).images[0], run_pipe


def test_control_changes_the_output_and_weight_zero_does_not(installed, pipe):
    state, _ = installed
    plain, used = generate(state, pipe)
    assert used is pipe
    state.units = state.parse([unit(processor_res=64)], "txt2img")
    controlled, used = generate(state, pipe)
    assert type(used).__name__ == "StableDiffusionControlNetPipeline" and used.unet is pipe.unet
    assert np.abs(controlled - plain).max() > 1e-3
    for off in (unit(weight=0), unit(guidance_end=0)):
        state.units = state.parse([off], "txt2img")
        same, used = generate(state, pipe)
        assert used is pipe and np.array_equal(same, plain)


def test_two_units_differ_from_one(installed, pipe):
    state, _ = installed
    state.units = state.parse([unit(processor_res=64)], "txt2img")
    one, _ = generate(state, pipe)
    state.units = state.parse([unit(processor_res=64), unit(model="tiny-other", module="none",
                                                            image=b64(square(box=(0, 0, 20, 63))))], "txt2img")
    two, used = generate(state, pipe)
    assert type(used.controlnet).__name__ == "MultiControlNetModel" and len(used.controlnet.nets) == 2
    assert np.abs(two - one).max() > 1e-3


def test_img2img_uses_its_input_when_the_unit_has_no_image(installed, pipe):
    state, _ = installed
    state.units = state.parse([unit(image=None, processor_res=64)], "img2img")
    out, used = generate(state, pipe, kind="img2img", image=square(), strength=0.75)
    assert type(used).__name__ == "StableDiffusionControlNetImg2ImgPipeline" and out.shape == (64, 64, 3)


def test_unsupported_control_mode_is_refused(installed, pipe):
    from webui.extensions.api import ScriptError

    state, _ = installed
    state.units = state.parse([unit(control_mode="My prompt is more important")], "txt2img")
    with pytest.raises(ScriptError, match="not supported yet"):
        generate(state, pipe)


def test_resize_modes_and_pixel_perfect():
    apply = load_script().lib("apply")
    wide = square(size=(128, 64), box=(0, 0, 127, 63))  # all white
    just = np.asarray(apply.fit(wide, 64, 64, 0))
    crop = np.asarray(apply.fit(wide, 64, 64, 1))
    fill = np.asarray(apply.fit(wide, 64, 64, 2))
    assert just.shape == crop.shape == fill.shape == (64, 64, 3)
    assert just.min() > 200 and crop.min() > 200  # stretched / cropped: still all white
    assert fill[:14].max() == 0 and fill[18:46].min() > 200  # fitted: black bars above and below
    assert apply.pixel_perfect_resolution(wide, 512, 512, 1) == 512  # cover: short side 64 → 512
    assert apply.pixel_perfect_resolution(wide, 512, 512, 2) == 256  # fit: long side 128 → 512
