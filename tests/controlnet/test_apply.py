"""Units applied to a real (tiny) diffusers pipeline through the `pipeline_call` hook function: control changes the
output, weight 0 and an empty guidance window give exactly the uncontrolled output, two units differ from one,
img2img uses its input image, control modes. The hook function is called directly here; tests/controlnet/
test_combinations.py runs units through the application."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.controlnet.conftest import b64, load_script, square
from tests.controlnet.test_units import unit
from webui.extensions.api import PipelineCall


@pytest.fixture(scope="module")
def pipe(tiny_models, tmp_path_factory):
    from webui.models.loader import build_from_single_file

    return build_from_single_file(
        tiny_models / "Stable-diffusion" / "tiny-a.safetensors", tmp_path_factory.mktemp("cache")
    ).pipeline


def generate(state, pipe, kind="txt2img", **extra):
    kwargs = dict(
        prompt="a square",
        num_inference_steps=2,
        guidance_scale=5.0,
        height=64,
        width=64,
        output_type="np",
        generator=torch.Generator().manual_seed(3),
        **extra,
    )
    changed = state.on_pipeline_call(PipelineCall(kind=kind, pipeline=pipe, kwargs=kwargs))
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
    state.units = state.parse(
        [unit(processor_res=64), unit(model="tiny-other", module="none", image=b64(square(box=(0, 0, 20, 63))))],
        "txt2img",
    )
    two, used = generate(state, pipe)
    assert type(used.controlnet).__name__ == "MultiControlNetModel" and len(used.controlnet.nets) == 2
    assert np.abs(two - one).max() > 1e-3


def test_img2img_uses_its_input_when_the_unit_has_no_image(installed, pipe):
    state, _ = installed
    state.units = state.parse([unit(image=None, processor_res=64)], "img2img")
    out, used = generate(state, pipe, kind="img2img", image=square(), strength=0.75)
    assert type(used).__name__ == "StableDiffusionControlNetImg2ImgPipeline" and out.shape == (64, 64, 3)


def test_control_modes(installed, pipe):
    """My prompt is more important (soft injection) steers less than Balanced; ControlNet is more important is
    diffusers' guess mode; mixed modes run each unit in its own mode."""
    state, _ = installed
    plain, _ = generate(state, pipe)
    out = {}
    for mode in ("Balanced", "My prompt is more important", "ControlNet is more important"):
        state.units = state.parse([unit(processor_res=64, control_mode=mode)], "txt2img")
        out[mode], used = generate(state, pipe)
        assert np.abs(out[mode] - plain).max() > 1e-3
    assert used.controlnet.__class__.__name__ == "ControlNetModel"  # all units in guess mode: diffusers' own
    assert np.abs(out["My prompt is more important"] - plain).mean() < np.abs(out["Balanced"] - plain).mean()
    state.units = state.parse(
        [unit(processor_res=64, control_mode=2), unit(processor_res=64, model="tiny-other")], "txt2img"
    )
    mixed, used = generate(state, pipe)
    assert [type(n).__name__ for n in used.controlnet.nets] == ["UnitControlNet", "ControlNetModel"]
    assert np.abs(mixed - out["ControlNet is more important"]).max() > 1e-3


def test_unit_view_matches_diffusers_guess_mode(installed):
    """The per-unit "ControlNet is more important" view gives the unconditional half no control and the
    conditional half exactly diffusers' guess-mode residuals."""
    state, _ = installed
    net = state.load_model(state.parse([unit()], "txt2img")[0])
    view = load_script().lib("apply")._unit_net_class()(net, control_mode=2, cfg=True)
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 77, 32, generator=g)
    cond = torch.rand(2, 3, 64, 64, generator=g)
    with torch.no_grad():
        down, mid = view(x, 500, encoder_hidden_states=ctx, controlnet_cond=cond, conditioning_scale=0.7)
        ref_down, ref_mid = net(
            x[1:],
            500,
            encoder_hidden_states=ctx[1:],
            controlnet_cond=cond[1:],
            conditioning_scale=0.7,
            guess_mode=True,
            return_dict=False,
        )
    for ours, ref in zip([*down, mid], [*ref_down, ref_mid]):
        assert ours[:1].abs().max() == 0
        torch.testing.assert_close(ours[1:], ref, rtol=1e-4, atol=1e-5)


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
